"""Tests for digits.images: real-world pictures of a digit become the MNIST-like 28x28 input.

Fixtures are digits drawn here with Pillow (no MNIST data needed): each is drawn large, light on
dark, and rendered in the styles people's pictures come in; every style must give nearly the same
28x28 array as the clean digit.
"""

import io
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import png_bytes, slant
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from digits import images
from digits.deskew import deskew
from digits.images import (
    MAX_PIXELS,
    STROKE_RATIO,
    THICK_RATIO,
    THINNED_RATIO,
    ImageError,
    TooManyPixelsError,
    centre_by_mass,
    decode_grayscale,
    digit_box,
    dilate,
    fit_to_box,
    flatten_alpha,
    has_dark_ink,
    ink_signal,
    load_grayscale,
    mnist_frame,
    normalise_contrast,
    normalise_stroke_width,
    printable_path,
    sharpen,
    smooth_enlarged_pixels,
    stroke_width,
)

SCALE = 20  # fixtures are drawn at 20x MNIST's 28x28
# Strokes in MNIST's 28x28 coordinates, inside its 20x20 box (rows and columns 4-24)
STROKES = {
    "seven": [[(9, 6), (20, 6), (13, 23)]],
    "zero": "ellipse",
    "one": [[(15, 5), (13, 23)]],
    "four": [[(17, 5), (8, 16), (21, 16)], [(17, 5), (17, 23)]],
}
STROKE_WIDTH = 2.5  # MNIST pen, in 28x28 pixels
FINE_PEN = 3 / SCALE  # a 3 px pen on the 560 px drawing: a paint program's default brush


def draw_strokes(name: str, pen: float) -> Image.Image:
    """A white-on-black "L" image, 560x560, of the strokes of ``name`` as listed in ``STROKES``,
    ``pen`` 28x28 pixels wide; any pen draws the same centre lines."""
    strokes = Image.new("L", (28 * SCALE, 28 * SCALE), 0)
    draw = ImageDraw.Draw(strokes)
    width = round(pen * SCALE)
    if STROKES[name] == "ellipse":  # Pillow draws the outline inside the box: inset it by half
        inset = (round(STROKE_WIDTH * SCALE) - width) // 2
        box = np.array([9, 5, 19, 23]) * SCALE + [inset, inset, -inset, -inset]
        draw.ellipse(box.tolist(), outline=255, width=width)
    else:
        for line in STROKES[name]:
            draw.line([(x * SCALE, y * SCALE) for x, y in line], fill=255, width=width)
    return strokes


def draw_digit(name: str) -> Image.Image:
    """A white-on-black "L" image, 560x560, of the digit ``name`` placed as MNIST places digits:
    longer side 20 (x SCALE) px, centre of mass at pixel (14, 14) of the 28x28 grid."""
    strokes = draw_strokes(name, STROKE_WIDTH)
    digit = strokes.crop(strokes.getbbox())
    fit = 20 * SCALE / max(digit.size)
    digit = digit.resize((round(digit.width * fit), round(digit.height * fit)))
    pixels = np.asarray(digit, dtype=np.float64)
    rows, columns = np.indices(pixels.shape)
    centre = 14 * SCALE + (SCALE - 1) / 2  # the middle of 28x28 pixel 14, in fine pixels
    top = round(centre - (rows * pixels).sum() / pixels.sum())
    left = round(centre - (columns * pixels).sum() / pixels.sum())
    placed = Image.new("L", strokes.size, 0)
    placed.paste(digit, (left, top))
    return placed


def mnist_like(name: str) -> np.ndarray:
    """uint8 (28, 28): the digit anti-aliased down to MNIST's size, as MNIST was made."""
    return np.asarray(draw_digit(name).resize((28, 28), Image.Resampling.BOX))


def as_the_model_sees(name: str) -> np.ndarray:
    """uint8 (28, 28): ``mnist_like`` deskewed, as the preprocess stage gives MNIST's digits to
    the model and ``mnist_frame`` gives a picture's."""
    return deskew(mnist_like(name)[np.newaxis])[0]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


# Styles: (white-on-black "L" image, tmp_path) -> path of the picture file it was saved as


def inverted(digit, tmp_path):
    ImageOps.invert(digit).save(tmp_path / "inverted.png")
    return tmp_path / "inverted.png"


def padded(digit, tmp_path):
    canvas = Image.new("L", (digit.width + 600, digit.height + 600), 0)
    canvas.paste(digit, (300, 300))
    canvas.save(tmp_path / "padded.png")
    return tmp_path / "padded.png"


def large_off_centre(digit, tmp_path):
    canvas = Image.new("L", (1000, 800), 255)
    canvas.paste(ImageOps.invert(digit.resize((200, 200))), (720, 40))
    canvas.save(tmp_path / "large.png")
    return tmp_path / "large.png"


def small(digit, tmp_path):
    ImageOps.invert(digit.resize((24, 24), Image.Resampling.BOX)).save(tmp_path / "small.png")
    return tmp_path / "small.png"


def rgb_colour_ink(digit, tmp_path):
    ink = Image.new("RGB", digit.size, (200, 30, 40))
    Image.composite(ink, Image.new("RGB", digit.size, (245, 245, 230)), digit).save(
        tmp_path / "rgb.png"
    )
    return tmp_path / "rgb.png"


def rgba_black_on_transparent(digit, tmp_path):
    image = Image.new("RGBA", digit.size, (0, 0, 0, 0))
    image.putalpha(digit)
    image.save(tmp_path / "black-on-transparent.png")
    return tmp_path / "black-on-transparent.png"


def rgba_white_on_transparent(digit, tmp_path):
    image = Image.new("RGBA", digit.size, (255, 255, 255, 0))
    image.putalpha(digit)
    image.save(tmp_path / "white-on-transparent.png")
    return tmp_path / "white-on-transparent.png"


def jpeg(digit, tmp_path):
    ImageOps.invert(digit).save(tmp_path / "digit.jpg", quality=75)
    return tmp_path / "digit.jpg"


def blurred(digit, tmp_path):
    ImageOps.invert(digit.filter(ImageFilter.GaussianBlur(SCALE))).save(tmp_path / "blur.png")
    return tmp_path / "blur.png"


def exif_rotated(digit, tmp_path):
    """Stored on its side, with the EXIF tag (orientation 6) a camera writes to say so."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    ImageOps.invert(digit).rotate(90, expand=True).save(tmp_path / "exif.jpg", exif=exif)
    return tmp_path / "exif.jpg"


STYLES = [
    inverted,
    padded,
    large_off_centre,
    small,
    rgb_colour_ink,
    rgba_black_on_transparent,
    rgba_white_on_transparent,
    jpeg,
    blurred,
    exif_rotated,
]


@pytest.mark.parametrize("name", sorted(STROKES))
def test_an_mnist_like_digit_passes_through_nearly_unchanged(name):
    digit = mnist_like(name)

    frame = mnist_frame(digit)

    assert frame.dtype == np.uint8 and frame.shape == (28, 28)
    assert frame.max() == 255 and frame[0].max() == frame[:, 0].max() == 0
    # resampling 28 px by ~5% blurs it a little, and sharpening moves its grey levels (another
    # digit: 0.47 at most)
    assert correlation(frame, as_the_model_sees(name)) > 0.83


def test_a_slanted_digit_is_framed_upright(monkeypatch):
    page = Image.new("L", (400, 400), 255)
    ImageDraw.Draw(page).line([(260, 60), (140, 340)], fill=0, width=24)  # a 1, leaning right
    picture = np.asarray(page)

    upright = slant(mnist_frame(picture)[np.newaxis])[0]
    monkeypatch.setattr(images, "deskew", lambda frames: frames)

    assert abs(upright) < 0.05 and slant(mnist_frame(picture)[np.newaxis])[0] < -0.3


def test_sharpening_brings_a_soft_frames_strokes_to_full_brightness_where_they_were():
    soft = np.asarray(Image.fromarray(mnist_like("seven")).filter(ImageFilter.GaussianBlur(1)))
    soft = (soft * (255 / soft.max())).round().astype(np.uint8)

    sharp = sharpen(soft)

    def full(frame):  # the share of the ink at full brightness, as MNIST draws most of it
        return np.mean(frame[frame > 25] >= 250)

    def centre(frame):
        rows, columns = np.indices(frame.shape)
        return [(rows * frame).sum() / frame.sum(), (columns * frame).sum() / frame.sum()]

    assert full(sharp) > full(soft) + 0.1
    assert np.allclose(centre(sharp.astype(float)), centre(soft.astype(float)), atol=0.1)
    assert (sharp[soft == 0] == 0).all()  # no ink where there was none


@pytest.mark.parametrize("style", STYLES, ids=lambda style: style.__name__)
@pytest.mark.parametrize("name", sorted(STROKES))
def test_every_style_gives_the_clean_digit(name, style, tmp_path):
    frame = mnist_frame(load_grayscale(style(draw_digit(name), tmp_path)))

    assert correlation(frame, as_the_model_sees(name)) > 0.87  # 0.9 before frames were sharpened


@pytest.mark.parametrize("name", sorted(STROKES))
def test_a_digit_written_with_a_fine_pen_gives_the_clean_digit(name, tmp_path):
    """The same centre lines as the clean digit, 3 px wide on a page (1/130 of the digit)."""
    canvas = Image.new("L", (1200, 900), 255)  # dark ink on a large white page
    canvas.paste(ImageOps.invert(draw_strokes(name, FINE_PEN)), (500, 200))
    canvas.save(tmp_path / "fine-pen.png")

    frame = mnist_frame(load_grayscale(tmp_path / "fine-pen.png"))

    assert correlation(frame, as_the_model_sees(name)) > 0.87  # 0.9 before frames were sharpened


def bar(width: int, length: int, degrees: float) -> np.ndarray:
    """Bool (400, 400) mask of a stroke ``width`` px wide, ``length`` long, at ``degrees``."""
    image = Image.new("1", (400, 400))
    end = np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))]) * length / 2
    ImageDraw.Draw(image).line([tuple(200 - end), tuple(200 + end)], fill=1, width=width)
    return np.asarray(image)


@pytest.mark.parametrize("degrees", [0, 30, 45, 90])
@pytest.mark.parametrize("width", [2, 8])
def test_stroke_width_of_a_bar_is_within_a_pixel(width, degrees):
    assert abs(stroke_width(bar(width, 300, degrees)) - width) < 1


def test_stroke_width_of_a_square_ring_is_its_width():
    ring = np.zeros((80, 80), dtype=bool)
    ring[10:70, 10:70] = True
    ring[20:60, 20:60] = False  # 10 px wide: area 3600 - 1600, perimeter 240 + 160

    assert stroke_width(ring) == pytest.approx(10, abs=0.1)  # a corner's diagonals: 10.07


def test_dilate_grows_a_pixel_into_a_disc():
    dot = np.zeros((7, 7), dtype=bool)
    dot[3, 3] = True

    assert dilate(dot, 0).sum() == 1
    assert dilate(dot, 1).sum() == 5  # a plus: the 4 neighbours at distance 1
    assert dilate(dot, 2).sum() == 13  # plus the 4 diagonals (1.4) and 4 at distance 2


def test_mnist_wide_strokes_are_left_alone():
    digit = mnist_like("four").astype(np.float32)

    assert normalise_stroke_width(digit) is digit


def test_a_hairline_is_widened_to_mnists_stroke_width():
    outline = np.zeros((500, 420), dtype=np.float32)
    outline[50:450, 10:410] = 255
    outline[51:449, 11:409] = 0  # a 400 x 400 square drawn with a 1 px pen

    redrawn = normalise_stroke_width(outline) >= 128

    rows, columns = np.nonzero(redrawn)
    side = max(np.ptp(rows), np.ptp(columns)) + 1
    assert stroke_width(redrawn) / side == pytest.approx(STROKE_RATIO, abs=0.01)


def test_the_digit_keeps_its_aspect_ratio():
    bar = np.zeros((100, 60), dtype=np.float32)
    bar[10:90, 20:40] = 255  # 80 tall, 20 wide

    fitted = fit_to_box(bar)

    top, bottom, left, right = digit_box(fitted)
    assert (bottom - top, right - left) == (20, 5)


def test_the_centre_of_mass_lands_on_mnists_centre():
    dot = np.zeros((5, 7), dtype=np.float32)
    dot[0, 6] = 3.0

    frame = centre_by_mass(dot)

    assert frame[14, 14] == 255 and frame.sum() == 255


def test_digit_box_ignores_faint_noise():
    image = np.zeros((50, 50), dtype=np.float32)
    image[20:30, 15:18] = 255
    image[0, 0] = image[49, 49] = 100  # specks of dust, less than half as bright as the ink

    assert digit_box(image) == (20, 30, 15, 18)


def test_dark_ink_on_light_paper_is_inverted_light_on_dark_is_not():
    dark_on_light = np.full((10, 10), 230, dtype=np.float32)
    dark_on_light[3:7, 4:6] = 20

    assert has_dark_ink(dark_on_light) and not has_dark_ink(255 - dark_on_light)
    assert ink_signal(dark_on_light)[0, 0] == 0 and ink_signal(255 - dark_on_light)[0, 0] == 0
    # ink that takes 210 of the paper's 230 grey levels takes 91% of its light
    assert ink_signal(dark_on_light)[4, 4] == pytest.approx(255 * 210 / 230, abs=0.5)
    assert ink_signal(255 - dark_on_light)[4, 4] == pytest.approx(210)


def test_a_speck_of_dust_does_not_decide_the_polarity():
    """A small dark digit on a large white page, one white-hot pixel beside it."""
    page = np.full((400, 400), 250, dtype=np.float32)
    page[100:130, 200:204] = 10
    page[300, 300] = 255

    assert has_dark_ink(page)


def test_contrast_is_stretched_from_paper_to_ink():
    image = np.full((10, 10), 40, dtype=np.float32)
    image[3:7, 3:7] = 120

    normalised = normalise_contrast(image)

    assert normalised[0, 0] == 0 and normalised[5, 5] == 255


@pytest.mark.parametrize(
    "image",
    [np.full((30, 30), 255, np.uint8), np.zeros((30, 30), np.uint8)],
    ids=["white", "black"],
)
def test_a_blank_image_has_no_digit(image):
    with pytest.raises(ImageError, match=r"blank\.png: no digit found"):
        mnist_frame(image, source="blank.png")


def test_a_faint_smudge_is_not_a_digit():
    image = np.full((30, 30), 200, dtype=np.uint8)
    image[10:20, 12:15] = 185  # 15 grey levels: paper texture, not ink

    with pytest.raises(ImageError, match="no digit found"):
        mnist_frame(image)


def test_black_ink_on_transparent_is_flattened_onto_white():
    gray = np.zeros((4, 4), dtype=np.uint8)  # transparent pixels are black too
    alpha = np.zeros((4, 4), dtype=np.uint8)
    alpha[1:3, 1:3] = 255

    flat = flatten_alpha(gray, alpha)

    assert flat[0, 0] == 255 and flat[1, 1] == 0


def test_white_ink_on_transparent_is_flattened_onto_black():
    gray = np.full((4, 4), 255, dtype=np.uint8)
    alpha = np.zeros((4, 4), dtype=np.uint8)
    alpha[1:3, 1:3] = 255

    flat = flatten_alpha(gray, alpha)

    assert flat[0, 0] == 0 and flat[1, 1] == 255


def test_exif_orientation_is_applied(tmp_path):
    path = exif_rotated(Image.new("L", (30, 20)), tmp_path)  # stored as 20 wide, 30 tall

    assert load_grayscale(path).shape == (20, 30)


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture")

    with pytest.raises(ImageError, match=r"notes\.png: not an image"):
        load_grayscale(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match=r"gone\.png: file not found"):
        load_grayscale(tmp_path / "gone.png")


def test_a_truncated_image_is_refused(tmp_path):
    path = tmp_path / "cut.png"
    draw_digit("seven").save(path)
    path.write_bytes(path.read_bytes()[:200])

    with pytest.raises(ImageError, match=r"cut\.png: cannot decode"):
        load_grayscale(path)


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid 8-bit grayscale PNG, all black: a few kB that decode to width * height bytes."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png_bytes(width, height, data)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS**0.5) + 10
    path = tmp_path / "bomb.png"
    path.write_bytes(png_of_zeros(side, side))

    with pytest.raises(ImageError, match=r"bomb\.png: .*decompression bomb"):
        load_grayscale(path)


def test_a_header_claiming_billions_of_pixels_is_refused(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes(100_000, 100_000, zlib.compress(b"")))

    with pytest.raises(ImageError, match=r"huge\.png: .*decompression bomb"):
        load_grayscale(path)


def test_bytes_in_memory_decode_as_the_file_does(tmp_path):
    path = tmp_path / "seven.png"
    draw_digit("seven").save(path)

    decoded = decode_grayscale(io.BytesIO(path.read_bytes()), "the body")

    np.testing.assert_array_equal(decoded, load_grayscale(path))


def test_a_lower_pixel_limit_is_kept_and_named(tmp_path):
    data = png_of_zeros(200, 100)

    assert decode_grayscale(io.BytesIO(data), "body", max_pixels=20_000).shape == (100, 200)
    with pytest.raises(
        TooManyPixelsError, match=r"body: 200x100 is 20,000 pixels, more than the 19,999"
    ):
        decode_grayscale(io.BytesIO(data), "body", max_pixels=19_999)


# Pictures that once crashed or misled the pipeline. Every one must give a frame or ImageError.


def dark_seven_on(paper: np.ndarray) -> np.ndarray:
    """uint8 (h, w): a 7, ink grey 20, drawn over float ``paper`` (h, w) in its middle."""
    height, width = paper.shape
    ink = Image.new("L", (width, height), 0)
    box = np.array([width, height, width, height]) * [0.3, 0.2, 0.7, 0.8]
    left, top, right, bottom = box
    ImageDraw.Draw(ink).line(
        [(left, top), (right, top), (left + (right - left) * 0.3, bottom)],
        fill=255,
        width=max(1, round(height / 14)),
    )
    alpha = np.asarray(ink, dtype=np.float64) / 255
    return (20 * alpha + paper * (1 - alpha)).round().astype(np.uint8)


def reference_seven(height: int = 300, width: int = 300) -> np.ndarray:
    return mnist_frame(dark_seven_on(np.full((height, width), 255.0)))


def aligned_correlation(frame: np.ndarray, reference: np.ndarray) -> float:
    """``correlation`` at the best whole-pixel shift of up to 1 px: where the centre of mass
    rounds to is not what these tests are about."""
    shifts = [(row, column) for row in (-1, 0, 1) for column in (-1, 0, 1)]
    return max(correlation(np.roll(frame, shift, axis=(0, 1)), reference) for shift in shifts)


@pytest.mark.parametrize("degrees", [0, 45, 90, 180, 270])
def test_light_falling_off_across_the_page_still_gives_the_digit(degrees):
    """The adversarial case of issue 18: paper from grey 140 to 250 under a dark 7."""
    rows, columns = np.indices((300, 300)) / 299
    angle = np.radians(degrees)
    ramp = np.cos(angle) * columns + np.sin(angle) * rows
    paper = 140 + 110 * (ramp - ramp.min()) / np.ptp(ramp)

    frame = mnist_frame(dark_seven_on(paper))

    assert aligned_correlation(frame, reference_seven()) > 0.95


def test_a_shadowed_corner_still_gives_the_digit():
    """Vignetting, as a phone photo has it: paper 250 in the middle, 120 in the corners."""
    rows, columns = np.indices((300, 400))
    distance = np.hypot((rows - 150) / 150, (columns - 200) / 200) / np.sqrt(2)
    paper = 250 - 130 * distance**2

    frame = mnist_frame(dark_seven_on(paper))

    assert aligned_correlation(frame, reference_seven(300, 400)) > 0.95


def test_a_stroke_in_shadow_counts_as_much_as_one_in_light():
    """A bar across a page lit from 60 (left) to 250 (right): the same ink takes the same
    share of the light, so the bar comes out as even as on plain paper."""
    paper = np.tile(np.linspace(60, 250, 200), (100, 1))
    picture = paper.copy()
    picture[45:55, 20:180] *= 0.2

    frame = mnist_frame(picture.round().astype(np.uint8))

    row = frame[frame.sum(axis=1).argmax()]
    ink = row[row > 0]
    assert ink.size >= 16 and np.percentile(ink, 80) - np.percentile(ink, 20) < 40


@pytest.mark.parametrize("seed", range(40))
def test_random_arrays_give_a_frame_or_an_image_error(seed):
    """Random sizes (1 to 200 a side, some very long), grey levels, gradients and specks:
    the answer is an MNIST frame or "no digit found", never another exception or NaN."""
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 200, size=2)
    if seed % 4 == 0:
        height = 1 if seed % 8 else int(rng.integers(1, 4))
        width = int(rng.integers(500, 5000))
    pixels = rng.normal(rng.uniform(0, 255), rng.uniform(0, 120), (height, width))
    pixels += rng.uniform(-200, 200) * np.linspace(0, 1, width)
    gray = np.clip(pixels, 0, 255).astype(np.uint8)

    try:
        frame = mnist_frame(gray.T if seed % 3 else gray, source="random.png")
    except ImageError as error:
        assert str(error).startswith("random.png: no digit found")
    else:
        assert frame.shape == (28, 28) and frame.dtype == np.uint8 and frame.max() == 255


@pytest.mark.parametrize(
    "gray",
    [
        np.zeros((1, 1), np.uint8),
        np.full((1, 1), 255, np.uint8),
        np.full((40, 60), 137, np.uint8),
        np.zeros((0, 5), np.uint8),
        np.full((1, 10_000), 200, np.uint8),
        np.tile(np.arange(256, dtype=np.uint8), (3, 1)),  # a smooth ramp is light, not ink
    ],
    ids=["1x1 black", "1x1 white", "constant", "empty", "1x10000 constant", "ramp"],
)
def test_pictures_with_nothing_on_them_have_no_digit(gray):
    with pytest.raises(ImageError, match=r"^flat\.png: no digit found"):
        mnist_frame(gray, source="flat.png")


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 1), (2, 700), (700, 2)])
def test_a_line_in_a_very_long_picture_is_one_stroke(shape):
    gray = np.full(shape, 240, np.uint8)
    length = max(shape)
    gray.reshape(-1)[length // 3 : length // 2] = 10  # a dash across a sixth of it

    frame = mnist_frame(gray)

    assert frame.max() == 255 and np.count_nonzero(frame.max(axis=0 if shape[0] < 3 else 1)) >= 18


def test_a_tight_crop_of_a_bold_digit_still_gives_the_digit():
    """Strokes cover most of the border: the paper must be found inside the picture."""
    picture = dark_seven_on(np.full((300, 300), 250.0))
    ink = np.nonzero(picture < 128)
    tight = picture[ink[0].min() + 2 : ink[0].max() - 2, ink[1].min() + 2 : ink[1].max() - 2]

    frame = mnist_frame(tight)

    assert aligned_correlation(frame, reference_seven()) > 0.85


def lanczos_enlarged(low: np.ndarray, factor: int) -> np.ndarray:
    size = (low.shape[1] * factor, low.shape[0] * factor)
    smooth = np.asarray(Image.fromarray(low).resize(size, Image.Resampling.LANCZOS))
    return np.clip(smooth, low.min(), low.max())


@pytest.mark.parametrize(
    ("factor", "cut"), [(2, (0, 0, 0, 0)), (5, (3, 1, 4, 0)), (8, (7, 4, 1, 6))]
)
def test_a_blocky_picture_becomes_its_smooth_enlargement(factor, cut):
    """Squares cut at the edges (``cut`` pixels off the top, left, bottom and right) are
    continued, not taken as squares of their own: the result is the same crop of the smooth
    enlargement."""
    low = np.random.default_rng(factor).uniform(0, 255, (9, 7)).astype(np.float32)
    blocky = np.kron(low, np.ones((factor, factor), np.float32))
    top, left, bottom, right = cut
    crop = (slice(top, blocky.shape[0] - bottom), slice(left, blocky.shape[1] - right))

    smooth = smooth_enlarged_pixels(blocky[crop])

    np.testing.assert_allclose(smooth, lanczos_enlarged(low, factor)[crop], atol=1e-3)


@pytest.mark.parametrize("name", sorted(STROKES))
def test_pictures_without_squares_are_left_alone(name):
    drawn = np.asarray(ImageOps.invert(draw_digit(name)), dtype=np.float32)
    small = mnist_like(name).astype(np.float32)

    for picture in (drawn, small):
        assert smooth_enlarged_pixels(picture) is picture


def test_squares_along_one_axis_only_are_not_a_blocky_picture():
    """Rows come in runs of 20 equal ones, but the columns change once: stripes, not squares."""
    rows = np.kron(np.arange(5, dtype=np.float32) * 50, np.ones(20, np.float32))
    stripes = np.tile(rows[:, None], (1, 100)) * (np.arange(100) < 60)

    assert smooth_enlarged_pixels(stripes) is stripes


def test_a_blocky_upright_stroke_is_found():
    """A 1 of a low-resolution scan: its columns change only at its two edges."""
    low = np.zeros((10, 10), np.float32)
    low[2:8, 4:6] = np.linspace(80, 255, 6)[:, None]  # the scan's grey levels down the stroke
    blocky = np.kron(low, np.ones((9, 9), np.float32))

    np.testing.assert_allclose(smooth_enlarged_pixels(blocky), lanczos_enlarged(low, 9), atol=1e-3)


@pytest.mark.parametrize(("size", "factor"), [(12, 15), (14, 6)])
@pytest.mark.parametrize("name", sorted(STROKES))
def test_a_blocky_low_res_scan_is_read_closer_to_the_clean_digit(name, size, factor, monkeypatch):
    """A digit scanned at ``size`` px, enlarged ``factor`` times with blocky pixels, on paper
    with a margin: closer to the clean digit smoothed than as it is."""
    low = np.asarray(ImageOps.invert(draw_digit(name)).resize((size, size), Image.Resampling.BOX))
    blocky = np.pad(
        np.kron(low, np.ones((factor, factor), np.uint8)), 3 * factor, constant_values=255
    )

    smoothed = correlation(mnist_frame(blocky), as_the_model_sees(name))
    monkeypatch.setattr(images, "smooth_enlarged_pixels", lambda picture: picture)
    as_it_is = correlation(mnist_frame(blocky), as_the_model_sees(name))

    assert smoothed > as_it_is + 0.02 and smoothed > 0.88


def test_a_marker_drawn_digit_is_redrawn_with_mnists_stroke_width():
    ring = Image.new("L", (300, 300), 0)
    ImageDraw.Draw(ring).ellipse((40, 20, 260, 280), outline=255, width=70)  # 0.27 of 260
    thick = np.asarray(ring, dtype=np.float32)
    assert stroke_width(thick > 128) / 260 > THICK_RATIO

    redrawn = normalise_stroke_width(thick) >= 128

    rows, columns = np.nonzero(redrawn)
    side = max(np.ptp(rows), np.ptp(columns)) + 1
    assert stroke_width(redrawn) / side == pytest.approx(THINNED_RATIO, abs=0.02)
    assert redrawn[rows.min() + side // 2, columns.min() + side // 2] == 0  # the hole is open


# Transparency: a 7 with soft grey edges, its background transparent, read as the opaque 7.


def soft_seven() -> np.ndarray:
    """uint8 (120, 120): a dark 7 on white whose edges fade through many greys, so that the
    mean grey of what is not white is light (over 128), as with a soft brush."""
    picture = Image.fromarray(dark_seven_on(np.full((120, 120), 255.0)))
    return np.asarray(picture.filter(ImageFilter.GaussianBlur(3)))


def palette_with_white_transparent(tmp_path, suffix):
    gray = soft_seven()
    assert gray[gray < 255].mean() > 128  # what misled the mean-grey rule
    image = Image.fromarray(gray).convert("P")  # a grey palette: index i holds grey i
    image.putpalette([level for grey in range(256) for level in (grey, grey, grey)])
    image.save(tmp_path / f"palette{suffix}", transparency=255)
    return tmp_path / f"palette{suffix}"


def palette_png(tmp_path):
    return palette_with_white_transparent(tmp_path, ".png")


def palette_gif(tmp_path):
    return palette_with_white_transparent(tmp_path, ".gif")


def grey_trns_png(tmp_path):
    """Mode L with a tRNS chunk naming grey 255 transparent."""
    Image.fromarray(soft_seven()).save(tmp_path / "trns.png", transparency=255)
    return tmp_path / "trns.png"


def grey16_trns_png(tmp_path):
    """Mode I;16 (a 16-bit scan) whose background is black and named transparent by tRNS;
    the ink is its soft 7 at half brightness, never black."""
    gray = soft_seven().astype(np.uint16)
    wide = np.where(gray == 255, 0, (gray // 2 + 1) * 257).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "trns16.png", transparency=0)  # uint16: I;16
    return tmp_path / "trns16.png"


def rgba_soft_edges(tmp_path):
    """Soft grey edges in colour and in opacity; the hidden pixels are black."""
    gray = soft_seven()
    alpha = np.clip((255 - gray.astype(np.int32)) * 4, 0, 255).astype(np.uint8)
    rgba = np.stack([gray, gray, gray, alpha], axis=-1)
    rgba[alpha == 0] = 0
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    return tmp_path / "rgba.png"


def rgba_white_digit_soft_edges(tmp_path):
    """A white 7 whose edges fade through greys, on a transparent background."""
    gray = 255 - soft_seven()
    alpha = np.clip(gray.astype(np.int32) * 4, 0, 255).astype(np.uint8)
    Image.fromarray(np.stack([gray, gray, gray, alpha], axis=-1)).save(tmp_path / "white.png")
    return tmp_path / "white.png"


@pytest.mark.parametrize(
    "transparent",
    [
        palette_png,
        palette_gif,
        grey_trns_png,
        rgba_soft_edges,
        rgba_white_digit_soft_edges,
    ],
    ids=lambda make: make.__name__,
)
def test_a_transparent_background_is_flattened_away_from_the_ink(transparent, tmp_path):
    path = transparent(tmp_path)
    assert "transparency" in Image.open(path).info or Image.open(path).mode == "RGBA"

    frame = mnist_frame(load_grayscale(path))

    assert aligned_correlation(frame, mnist_frame(soft_seven())) > 0.95


def test_a_16_bit_scan_with_a_transparent_black_background_reads_as_on_paper(tmp_path):
    gray = soft_seven()
    on_paper = np.where(gray == 255, 255, gray // 2 + 1).astype(np.uint8)  # the same, opaque

    frame = mnist_frame(load_grayscale(grey16_trns_png(tmp_path)))

    assert aligned_correlation(frame, mnist_frame(on_paper)) > 0.95


@pytest.mark.parametrize("scale", [1 / 255, 1.0])
def test_a_float_tiff_reads_as_its_grey_levels_whether_0_to_1_or_0_to_255(tmp_path, scale):
    gray = soft_seven()
    Image.fromarray(gray.astype(np.float32) * np.float32(scale)).save(tmp_path / "float.tif")

    assert np.array_equal(load_grayscale(tmp_path / "float.tif"), gray)


@pytest.mark.parametrize("scale", [1, 257])
def test_a_32_bit_integer_tiff_reads_as_its_grey_levels_whether_0_to_255_or_16_bit(
    tmp_path, scale
):
    gray = soft_seven()
    Image.fromarray(gray.astype(np.int32) * scale).save(tmp_path / "int32.tif")  # mode I

    assert Image.open(tmp_path / "int32.tif").mode == "I"
    assert np.array_equal(load_grayscale(tmp_path / "int32.tif"), gray)


def test_a_float_tiff_with_rounding_above_1_and_missing_pixels_reads_as_paper_there(tmp_path):
    gray = soft_seven()
    pixels = gray.astype(np.float32) / 255
    pixels[0, 0] = 1.0000001  # rounding in whatever wrote it
    pixels[-1, -1] = np.nan
    Image.fromarray(pixels).save(tmp_path / "float.tif")

    read = load_grayscale(tmp_path / "float.tif")

    assert np.array_equal(read[1:-1], gray[1:-1])
    assert read[0, 0] == read[-1, -1] == 255  # the paper here is white


def test_transparent_corners_of_opaque_paper_become_paper():
    """The border is mostly opaque paper: what is transparent is more paper, not ink."""
    gray = dark_seven_on(np.full((100, 100), 230.0))
    alpha = np.full(gray.shape, 255, np.uint8)
    alpha[:10, :10] = alpha[-10:, -10:] = 0
    gray[alpha == 0] = 0  # what an editor stores under the cut corners

    flat = flatten_alpha(gray, alpha)

    assert flat[0, 0] == flat[-1, -1] == 230


# Files that are not pictures at all: refused at once, never read.


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")

    with pytest.raises(ImageError, match=r"pipe\.png: not a regular file \(a FIFO"):
        load_grayscale(tmp_path / "pipe.png")


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "a character device"), ("/", "a directory")]
)
def test_a_device_or_directory_is_refused(path, kind):
    with pytest.raises(ImageError, match=f"not a regular file \\({kind}\\)"):
        load_grayscale(Path(path))


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("plain é.png", "plain é.png"),
        ("tab\there.png", "tab\\there.png"),
        ("new\nline.png", "new\\nline.png"),
        ("back\\slash.png", "back\\\\slash.png"),
        ("escape\x1b[31m.png", "escape\\x1b[31m.png"),
        ("not utf-8 \udcff.png", "not utf-8 \\udcff.png"),
    ],
)
def test_printable_path_escapes_what_would_break_a_line(name, shown):
    assert printable_path(name) == shown
    assert printable_path(name).isprintable()
