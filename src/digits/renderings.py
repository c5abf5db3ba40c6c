"""Digit pictures that do not come from MNIST, for measuring ``digits predict`` on them.

Each picture starts from a glyph: a digit typeset in one of the TrueType fonts that ship with
matplotlib (DejaVu and STIX, upright, bold, italic, mono), or drawn along hand-written stroke
paths defined here, with seeded jitter in shape, slant and pen. A style then renders the glyph
as people's pictures come: ``STYLES`` names them. Everything is a function of a seeded
``numpy.random.Generator``: the same seed gives the same pictures, nothing is stored.

    python scripts/eval_predict.py --source elsewhere   # accuracy per style
"""

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

GLYPH_HEIGHT = 200  # px: the digit's height before a style resizes it
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
)


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> list:
    """Points along an elliptic arc in the unit square (y down), angles in degrees: 0 is right,
    90 down, 270 up; from ``start`` to ``end`` in 10 degree steps."""
    angles = np.radians(np.linspace(start, end, max(2, round(abs(end - start) / 10) + 1)))
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles), strict=True))


# Hand-written shapes: per digit, the ways people write it, each a list of strokes (polylines in
# the unit square, x right, y down).
HAND_STROKES: dict[int, list[list[list]]] = {
    0: [[arc(0.5, 0.5, 0.32, 0.46, 0, 360)], [arc(0.5, 0.5, 0.4, 0.46, -80, 280)]],
    1: [
        [[(0.5, 0.03), (0.5, 0.97)]],
        [[(0.25, 0.25), (0.55, 0.03), (0.55, 0.97)]],
        [[(0.25, 0.22), (0.55, 0.03), (0.55, 0.97)], [(0.3, 0.97), (0.8, 0.97)]],
    ],
    2: [
        [arc(0.5, 0.28, 0.32, 0.25, 200, 380) + [(0.15, 0.97), (0.88, 0.97)]],
        [arc(0.5, 0.3, 0.3, 0.27, 190, 400) + [(0.2, 0.95)] + arc(0.55, 0.9, 0.3, 0.07, 180, 20)],
    ],
    3: [
        [arc(0.48, 0.27, 0.3, 0.24, 200, 450) + arc(0.48, 0.73, 0.34, 0.24, 270, 520)],
        [[(0.15, 0.03), (0.8, 0.03), (0.45, 0.42)] + arc(0.48, 0.7, 0.34, 0.27, 260, 520)],
    ],
    4: [
        [[(0.68, 0.97), (0.68, 0.03), (0.1, 0.68), (0.92, 0.68)]],
        [[(0.25, 0.03), (0.15, 0.6), (0.88, 0.6)], [(0.68, 0.25), (0.68, 0.97)]],
    ],
    5: [
        [[(0.82, 0.03), (0.27, 0.03), (0.22, 0.45)] + arc(0.5, 0.68, 0.33, 0.29, 215, 500)],
        [
            [(0.25, 0.03), (0.2, 0.45)] + arc(0.5, 0.68, 0.33, 0.29, 215, 500),
            [(0.25, 0.03), (0.8, 0.03)],
        ],
    ],
    6: [
        [[(0.72, 0.03), (0.42, 0.22), (0.22, 0.5)] + arc(0.5, 0.72, 0.3, 0.25, 180, 540)],
        [arc(0.62, 0.6, 0.45, 0.57, 260, 180) + arc(0.5, 0.74, 0.32, 0.23, 180, 520)],
    ],
    7: [
        [[(0.12, 0.03), (0.88, 0.03), (0.38, 0.97)]],
        [[(0.12, 0.1), (0.88, 0.03), (0.42, 0.97)], [(0.35, 0.5), (0.78, 0.5)]],
    ],
    8: [
        [arc(0.5, 0.26, 0.26, 0.23, 0, 360), arc(0.5, 0.73, 0.32, 0.24, 0, 360)],
        [arc(0.5, 0.27, 0.28, 0.24, 90, -270) + arc(0.5, 0.73, 0.3, 0.24, 270, 630)],
    ],
    9: [
        [arc(0.48, 0.3, 0.3, 0.26, 0, 360), [(0.78, 0.3), (0.72, 0.97)]],
        [arc(0.48, 0.3, 0.3, 0.26, 0, 360) + arc(0.3, 0.3, 0.48, 0.67, 0, 90)],
    ],
}


def font_glyph(digit: int, font: str, rng: np.random.Generator) -> np.ndarray:
    """``digit`` typeset in ``font`` (a name in ``FONTS``), slightly rotated: light on dark
    uint8 (h, w), cropped to the ink, ``GLYPH_HEIGHT`` px tall."""
    face = ImageFont.truetype(FONT_DIR / font, size=round(GLYPH_HEIGHT * 1.4))
    image = Image.new("L", (GLYPH_HEIGHT * 2, GLYPH_HEIGHT * 2), 0)
    ImageDraw.Draw(image).text((GLYPH_HEIGHT // 2, GLYPH_HEIGHT // 4), str(digit), 255, face)
    image = image.rotate(float(rng.uniform(-6, 6)), Image.Resampling.BICUBIC)
    return _to_height(image.crop(image.getbbox()))


def hand_glyph(digit: int, rng: np.random.Generator) -> np.ndarray:
    """``digit`` drawn along one of its ``HAND_STROKES`` with jitter (each point, slant, width,
    pen): light on dark uint8 (h, w), cropped to the ink, ``GLYPH_HEIGHT`` px tall."""
    strokes = HAND_STROKES[digit][rng.integers(len(HAND_STROKES[digit]))]
    slant, width = rng.uniform(-0.35, 0.15), rng.uniform(0.55, 1.0)
    pen = round(GLYPH_HEIGHT * rng.uniform(0.07, 0.14))
    size = GLYPH_HEIGHT * 2
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = np.asarray(stroke) + rng.normal(0, 0.015, (len(stroke), 2))
        x = (points[:, 0] - 0.5) * width - slant * (points[:, 1] - 0.5)
        xy = np.stack([x, points[:, 1] - 0.5], axis=1) * GLYPH_HEIGHT + size / 2
        line = [tuple(point) for point in xy]
        draw.line(line, fill=255, width=pen, joint="curve")
        for end in (line[0], line[-1]):  # a round pen's round ends
            draw.ellipse(
                [end[0] - pen / 2, end[1] - pen / 2, end[0] + pen / 2, end[1] + pen / 2], 255
            )
    return _to_height(image.crop(image.getbbox()))


def glyph(index: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """The ``index``-th glyph of the set: (digit, light-on-dark uint8 (h, w)); digits cycle
    0-9, and every other ten are typeset in a font, the others drawn by hand."""
    digit = index % 10
    if (index // 10) % 2 == 0:
        return digit, font_glyph(digit, FONTS[rng.integers(len(FONTS))], rng)
    return digit, hand_glyph(digit, rng)


def _to_height(image: Image.Image) -> np.ndarray:
    scale = GLYPH_HEIGHT / image.height
    size = (max(1, round(image.width * scale)), GLYPH_HEIGHT)
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))


def _on_paper(ink: np.ndarray, paper: float, ink_grey: float) -> np.ndarray:
    """Light-on-dark 0-255 ``ink`` as dark ink of grey ``ink_grey`` on ``paper``: float."""
    alpha = np.asarray(ink, dtype=np.float32) / 255
    return ink_grey * alpha + paper * (1 - alpha)


def _placed(ink: np.ndarray, canvas: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``ink`` at a random spot of a black (height, width) ``canvas``: uint8."""
    placed = np.zeros(canvas, dtype=np.uint8)
    top = int(rng.integers(0, canvas[0] - ink.shape[0] + 1))
    left = int(rng.integers(0, canvas[1] - ink.shape[1] + 1))
    placed[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return placed


def _with_margin(ink: np.ndarray, fraction: float) -> np.ndarray:
    pad = round(fraction * max(ink.shape))
    return np.pad(ink, pad)


def _resized(ink: np.ndarray, height: int, resample=Image.Resampling.LANCZOS) -> np.ndarray:
    width = max(1, round(ink.shape[1] * height / ink.shape[0]))
    return np.asarray(Image.fromarray(ink).resize((width, height), resample))


def _grey(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


# Styles: (light-on-dark uint8 glyph, rng) -> (picture, file suffix). Each is one of the ways
# issue 17 lists that people's digits differ from MNIST's.


def clean(ink, rng):
    """Black on white, a margin like a careful crop."""
    return _grey(_on_paper(_with_margin(_resized(ink, 120), 0.2), 255, 0)), ".png"


def blocky_scan(ink, rng):
    """A low-resolution scan (12-18 px tall, the digit 9-14 of them) enlarged with blocky
    (nearest) pixels."""
    small = _resized(_with_margin(ink, 0.15), int(rng.integers(12, 19)), Image.Resampling.BOX)
    factor = int(rng.integers(6, 16))
    big = Image.fromarray(small).resize(
        (small.shape[1] * factor, small.shape[0] * factor), Image.Resampling.NEAREST
    )
    paper = rng.uniform(200, 250)
    return _grey(_on_paper(np.asarray(big), paper, rng.uniform(0, 60))), ".png"


def thick_marker(ink, rng):
    """A felt marker: strokes grown to a quarter or more of the digit's height."""
    grown = Image.fromarray(_with_margin(ink, 0.2)).filter(ImageFilter.MaxFilter(31))
    grown = grown.filter(ImageFilter.GaussianBlur(2))
    return _grey(_on_paper(_resized(np.asarray(grown), 160), 250, 10)), ".png"


def touching_border(ink, rng):
    """Cropped so tightly that the strokes touch (or are cut by) the picture's edges."""
    cut = int(rng.integers(0, 4))
    tight = ink[cut : ink.shape[0] - cut, cut : ink.shape[1] - cut]
    return _grey(_on_paper(_resized(tight, 100), 245, 20)), ".png"


def off_centre(ink, rng):
    """A small digit somewhere on a large page: a lot of empty margin."""
    small = _resized(ink, int(rng.integers(40, 90)))
    canvas = _placed(small, (int(rng.integers(400, 700)), int(rng.integers(500, 900))), rng)
    return _grey(_on_paper(canvas, 240, 30)), ".png"


def faint_pencil(ink, rng):
    """Faint grey pencil on textured paper: little contrast, thin, noisy."""
    thin = Image.fromarray(_with_margin(ink, 0.25)).filter(ImageFilter.MinFilter(7))
    pixels = _on_paper(_resized(np.asarray(thin), 150), 235, rng.uniform(150, 185))
    grain = rng.normal(0, 4, pixels.shape)
    return _grey(pixels + grain), ".png"


def uneven_light(ink, rng):
    """A phone photo: dark ink, light falling off across the page (grey 110-250), a shadowed
    corner, noise and JPEG."""
    page = _placed(_resized(ink, int(rng.integers(100, 200))), (300, 400), rng)
    rows, columns = np.indices(page.shape, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * columns / page.shape[1] + np.sin(angle) * rows / page.shape[0]
    ramp = (ramp - ramp.min()) / np.ptp(ramp)
    low = rng.uniform(110, 170)
    light = low + (250 - low) * ramp
    pixels = _on_paper(page, 1.0, 0.12) * light + rng.normal(0, 3, page.shape)
    return _grey(pixels), ".jpg"


STYLES: dict[str, Callable] = {
    "clean": clean,
    "blocky low-res scan": blocky_scan,
    "thick marker": thick_marker,
    "touching the border": touching_border,
    "off-centre, wide margin": off_centre,
    "faint pencil": faint_pencil,
    "photo, uneven light": uneven_light,
}
