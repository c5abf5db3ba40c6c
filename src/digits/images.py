"""Turn a person's picture of a digit into a 28x28 MNIST-like input, the way MNIST was made.

MNIST digits are light on dark, fitted into a 20x20 box keeping their aspect ratio (anti-aliased)
and placed in a 28x28 frame so that their centre of mass is at the centre. The paper is taken out
against its local brightness first (photos have shadows and light falling off across the page),
and a digit written with a much finer or much broader pen than MNIST's is redrawn with MNIST's
stroke width. Last, the frame is deskewed, as the preprocess stage deskews MNIST's own digits
(``digits.deskew``), and sharpened. ``load_grayscale`` is the one image loader (Pillow, I/O;
``decode_grayscale`` for a stream, e.g. a request's body); everything after it is a function of
arrays, and any array gives either a frame or an ``ImageError``.
"""

import io
import math
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps, UnidentifiedImageError

from digits.deskew import deskew
from digits.errors import DigitsError
from digits.mnist import IMAGE_SHAPE

# Formats a person's digit picture comes in; leaving out the rest keeps Pillow from running its
# rarer decoders (EPS would even start Ghostscript) on whatever file it is handed.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")  # JPEG includes MPO (phone cameras)
MAX_PIXELS = 50_000_000  # above any phone camera (48 MP); more is a decompression bomb
# The unsharp mask's Gaussian (sd, px) and strength (%). Over four seeds of the default, on
# frames already rendered: 1,000 validation digits in eval_predict's MNIST styles 97.69 ->
# 97.80 %, UCI's digits blocky 93.05 -> 93.59 % and in the other styles 92.28 -> 93.17 %; from
# 1 to 2 px and 75 to 200 % all within 0.1 point of these (README "Results").
SHARPEN_RADIUS = 1.5
SHARPEN_PERCENT = 100
DIGIT_BOX = 20  # MNIST fitted each digit's longer side into 20 px ...
MARGIN = 2  # ... and anti-aliasing spills about a pixel beyond it, so keep 2 px around the box
CENTRE = (14, 14)  # where MNIST digits' centres of mass are (row, column; mean over the test set)
MIN_CONTRAST = 32  # grey levels between paper and ink; JPEG noise on blank paper stays below 10
NOISE_MADS = 3  # border noise this many (normal-scaled) median absolute deviations is paper
# Stroke width / the digit's longer side, widths measured by stroke_width on the half-max mask
STROKE_RATIO = 0.12  # MNIST's median (2000 training digits at 10x; 2.4 px of the 20)
THIN_RATIO = 0.06  # thinner than 99.5% of MNIST's training digits: a finer pen than MNIST's
THICK_RATIO = 0.22  # thicker than 98.5% of them (0.23 is the 99th percentile): a marker ...
THINNED_RATIO = 0.16  # ... thinned to MNIST's 90th percentile: 95.0% on marker digits, against
# 94.7% thinned to the median and 93.0% above 0.24 (scripts/eval_predict.py, 300 a style)
STROKE_SIDE = 100  # px, longer side while redrawn: each step of pen radius is 0.4 px at 20 px
# A blocky picture (smooth_enlarged_pixels) has this share of its squared change from row to
# row, and column to column, on a grid of squares of 2 to MAX_BLOCK px, ...
BLOCK_SHARE = 0.9
MAX_BLOCK = 200
MIN_GRID_LINES = 3  # ... changing on at least this many of the grid's lines along one axis (2
BLOCK_STEP = 0.1  # along the other), by more than this fraction of its largest change


class ImageError(DigitsError):
    """An input image cannot be read, is too large, or has no digit in it."""


class TooManyPixelsError(ImageError):
    """An input image has more pixels than is safe to decode."""


def load_grayscale(path: Path) -> np.ndarray:
    """Read an image file as uint8 (h, w) grayscale: EXIF orientation applied, transparency
    flattened onto a background that contrasts with the ink (see ``flatten_alpha``).

    Raises ``ImageError`` naming ``path`` (see ``printable_path``) for a missing or unreadable
    file, one that is not a regular file (a FIFO or device would block or never end), a file
    that is not an image in one of ``FORMATS``, a damaged image, or one with more than
    ``MAX_PIXELS`` pixels (``TooManyPixelsError``).
    """
    with _open_regular_file(path) as stream:
        return decode_grayscale(stream, printable_path(path))


def decode_grayscale(stream: BinaryIO, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode the picture in binary ``stream`` (a file, or ``io.BytesIO`` of a request's body)
    as ``load_grayscale`` does; errors name the picture ``name``. A picture of more than
    ``max_pixels`` pixels raises ``TooManyPixelsError`` before it is decoded."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice that; make it an error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream, formats=FORMATS) as image:
                _check_pixel_count(image.size, name, max_pixels)  # from the header
                return _to_grayscale(ImageOps.exif_transpose(image))
    except UnidentifiedImageError:
        expected = ", ".join(FORMATS)
        raise ImageError(f"{name}: not an image (expected one of {expected})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooManyPixelsError(
            f"{name}: too many pixels to decode safely (decompression bomb?)"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # Pillow's decoders' errors
        raise ImageError(f"{name}: cannot decode the image ({error})") from None


def picture_frame(path: Path) -> np.ndarray:
    """The model's view of a digit picture file: uint8 (28, 28), as ``digits predict`` and the
    own-pictures stage both see it (``load_grayscale``, then ``mnist_frame``). Raises
    ``ImageError`` naming ``path``."""
    return mnist_frame(load_grayscale(path), printable_path(path))


def image_suffix(data: bytes, source: str) -> str:
    """The usual file extension (``.png``, ``.jpg``, ...) of the picture in ``data``, read from
    its header; ``ImageError`` naming ``source`` if it is not an image in one of ``FORMATS``."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            image_format = image.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        expected = ", ".join(FORMATS)
        raise ImageError(f"{source}: not an image (expected one of {expected})") from None
    return SUFFIXES.get(image_format, f".{image_format.lower()}")


SUFFIXES = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "WEBP": ".webp",
}


def printable_path(path: Path | str) -> str:
    """``path`` as one line of printable text: a backslash and each unprintable character (tab,
    newline, other controls, a byte that is not UTF-8) escaped as in a Python string."""
    return "".join(_printable(character) for character in str(path))


def _printable(character: str) -> str:
    if character == "\\":
        return "\\\\"
    if character.isprintable():
        return character
    return repr(character)[1:-1]  # '\t', '\n', '\x1b', '\udcff', ...


FILE_KINDS = {
    stat.S_ISDIR: "a directory",
    stat.S_ISFIFO: "a FIFO, a named pipe",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def _open_regular_file(path: Path) -> BinaryIO:
    """Open ``path`` for reading in binary, refusing anything but a regular file: raises
    ``ImageError`` naming it.

    Opened non-blocking and checked on the open descriptor, so that a FIFO is refused at once
    (a plain open would wait for a writer) and one swapped in after a check cannot slip by.
    """
    name = printable_path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL in the name
        raise ImageError(
            f"{name}: cannot open ({getattr(error, 'strerror', None) or error})"
        ) from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = next((kind for is_kind, kind in FILE_KINDS.items() if is_kind(mode)), "special")
        raise ImageError(f"{name}: not a regular file ({kind}); give a picture file")
    return os.fdopen(descriptor, "rb")


def _check_pixel_count(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise TooManyPixelsError(
            f"{name}: {width}x{height} is {width * height:,} pixels, more than the "
            f"{max_pixels:,} a digit picture needs (decompression bomb?)"
        )


FLOAT_ONE = 1.001  # a float picture up to this is 0-1 (rounding can overshoot 1 a little)


def _to_grayscale(image: Image.Image) -> np.ndarray:
    if image.mode == "F":  # 32-bit float TIFF: 0-1 when scientific software wrote it, or 0-255
        raw = np.asarray(image, dtype=np.float64)
        finite = raw[np.isfinite(raw)]
        paper = float(np.median(finite)) if finite.size else 0.0
        raw = np.where(np.isfinite(raw), raw, paper)  # a missing pixel is paper, not ink
        scale = 255 if 0 <= raw.min() and raw.max() <= FLOAT_ONE else 1
        return np.clip(raw * scale, 0, 255).round().astype(np.uint8)
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit scans: keep the top 8 bits' worth
        raw = np.asarray(image, dtype=np.float64)
        # "I" holds 32-bit integers (16-bit files open as I;16): 0-255 if their writer used that
        eight_bit = image.mode == "I" and raw.size and 0 <= raw.min() and raw.max() <= 255
        gray = np.clip(raw / (1 if eight_bit else 257), 0, 255).round().astype(np.uint8)
        if "transparency" not in image.info:
            return gray
        alpha = np.where(raw == image.info["transparency"], 0, 255).astype(np.uint8)
        return flatten_alpha(gray, alpha)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")  # palette and tRNS transparency become alpha too
        gray = np.asarray(rgba.convert("L"))
        return flatten_alpha(gray, np.asarray(rgba.getchannel("A")))
    return np.asarray(image.convert("L"))


def flatten_alpha(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite uint8 (h, w) ``gray`` with opacity ``alpha`` onto a plain background: uint8.

    When the picture's border is mostly transparent, the transparent part is the background and
    it becomes white under dark ink, black under light ink. The ink is the grey of the opaque
    pixels farthest from transparency: soft edges (grey pixels blended towards the background,
    opaque in a palette image) would outweigh a thin digit in a mean. The grey the transparent
    pixels hide is no guide either: editors store black there under black ink as often as white.
    When the border is mostly opaque it is the paper, and transparent pixels become paper too.
    """
    if alpha.min() == 255:
        return gray.copy()
    weight = alpha.astype(np.float64) / 255
    if not weight.any():
        return np.zeros_like(gray)  # fully transparent: blank, reported by mnist_frame
    opaque_border = border_pixels(alpha) >= 128
    if opaque_border.mean() >= 0.5:
        background = float(np.median(border_pixels(gray)[opaque_border]))
    else:
        background = 255.0 if float(np.median(gray[_core(alpha >= 128)])) < 128 else 0.0
    flat = gray * weight + background * (1 - weight)
    return flat.round().astype(np.uint8)


SOFT_EDGE = 4  # px of anti-aliasing around opaque ink that flatten_alpha looks past


def _core(mask: np.ndarray) -> np.ndarray:
    """The pixels of bool (h, w) ``mask`` farthest inside it, at most ``SOFT_EDGE`` px in
    (square distance): ``mask`` shrunk as far as that leaves something."""
    for radius in range(SOFT_EDGE, 0, -1):
        inner = ~_grow_square(~mask, radius)
        if inner.any():
            return inner
    return mask if mask.any() else np.ones_like(mask)


def _grow_square(mask: np.ndarray, radius: int) -> np.ndarray:
    """Bool (h, w) ``mask`` with each pixel grown into a (2r+1)^2 square; pixels beyond the
    edge count as set, so that growing the outside shrinks ``mask`` away from its border too."""
    padded = np.pad(mask, radius, constant_values=True)
    height, width = mask.shape
    rows = np.zeros((height, padded.shape[1]), dtype=bool)
    for shift in range(2 * radius + 1):  # separable: rows, then columns
        rows |= padded[shift : shift + height]
    grown = np.zeros_like(mask)
    for shift in range(2 * radius + 1):
        grown |= rows[:, shift : shift + width]
    return grown


def mnist_frame(gray: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Turn uint8 (h, w) grayscale of one digit, any polarity and size, into uint8 (28, 28)
    as MNIST has it: light digit on black, longer side 20 px, centre of mass at the centre;
    then deskewed as the training images are (``deskew``) and its edges sharpened
    (``sharpen``).

    Raises ``ImageError`` naming ``source`` if there is no digit (a blank, flat or empty image).
    """
    if gray.ndim != 2 or gray.size == 0:
        raise ImageError(f"{source}: no digit found (an image of shape {gray.shape})")
    smooth = smooth_enlarged_pixels(gray.astype(np.float32))
    digit = normalise_contrast(ink_signal(smooth), source)
    frame = centre_by_mass(fit_to_box(normalise_stroke_width(digit)))
    return sharpen(deskew(frame[np.newaxis])[0])


def sharpen(frame: np.ndarray) -> np.ndarray:
    """uint8 (28, 28) ``frame`` with its strokes' edges sharpened (Pillow's unsharp mask).
    Shrinking a picture to MNIST's size leaves soft edges where MNIST's digits have crisp
    ones (5 % of a framed picture's ink at full brightness, 42 % of an MNIST digit's)."""
    unsharp = ImageFilter.UnsharpMask(SHARPEN_RADIUS, SHARPEN_PERCENT, threshold=0)
    return np.asarray(Image.fromarray(frame).filter(unsharp))


def smooth_enlarged_pixels(image: np.ndarray) -> np.ndarray:
    """Float (h, w) enlarged from a low resolution by repeating pixels a whole number of times
    (squares of k x k equal pixels, a blocky scan) resampled smoothly instead: its
    low-resolution pixels enlarged k times with Lanczos, as if it had been enlarged smoothly;
    any other picture unchanged.

    Shrunk to 20 px, the squares' edges would stay as steps that MNIST's digits never have:
    UCI's 8x8 scans of handwriting enlarged 8 times scored 86.2 % blocky, 91.5 % smoothed
    (``scripts/eval_predict.py --source uci``)."""
    grid = _block_grid(image)
    if grid is None:
        return image
    size, row_start, column_start = grid
    # Whole squares only: the cut ones at the edges are continued to full size, then cut again.
    top, left = (-row_start) % size, (-column_start) % size
    height, width = image.shape
    bottom, right = -(height + top) % size, -(width + left) % size
    padded = np.pad(image, ((top, bottom), (left, right)), mode="edge")
    low = padded.reshape(padded.shape[0] // size, size, padded.shape[1] // size, size).mean(
        axis=(1, 3)
    )  # each square's mean: the JPEG noise in it averages out
    enlarged = _float_image(low).resize(
        (padded.shape[1], padded.shape[0]), Image.Resampling.LANCZOS
    )
    smooth = np.asarray(enlarged)[top : top + height, left : left + width]
    return np.clip(smooth, image.min(), image.max())  # no ringing beyond paper and ink


def _block_grid(image: np.ndarray) -> tuple[int, int, int] | None:
    """(size, top, left) of the squares of a blocky picture: new rows and columns of squares
    begin every ``size`` pixels from row ``top`` and column ``left``. None unless, along both
    axes, at least ``BLOCK_SHARE`` of the (squared) change from one row or column to the next
    falls on that grid, with ``size`` 2 or more, and the picture changes on at least
    ``MIN_GRID_LINES`` lines of it along one axis and 2 along the other (a straight stroke's two
    edges); the largest such size (a grid of 8 is also one of 4). A share, not exact equality,
    lets JPEG's noise inside the squares through."""
    steps = [np.square(np.diff(image, axis=axis)).sum(axis=1 - axis) for axis in (0, 1)]
    changes = [np.sqrt(axis_steps) for axis_steps in steps]  # back to grey levels
    largest = min(MAX_BLOCK, *(len(axis_steps) // 2 for axis_steps in steps))
    for size in range(largest, 1, -1):
        grids = [_grid_lines(*axis, size) for axis in zip(steps, changes, strict=True)]
        if None in grids:
            continue
        (top, row_lines), (left, column_lines) = grids
        if min(row_lines, column_lines) >= 2 and max(row_lines, column_lines) >= MIN_GRID_LINES:
            return size, top, left
    return None


def _grid_lines(steps: np.ndarray, changes: np.ndarray, size: int) -> tuple[int, int] | None:
    """(start, lines) of the grid of ``size`` that the squared changes ``steps`` between
    neighbouring rows (columns) fall on, else None: ``BLOCK_SHARE`` of them at least, and none
    off it above ``BLOCK_STEP`` of the largest of ``changes`` (their roots, in grey levels);
    ``lines``: how many of its lines the picture changes on by more than that."""
    positions = np.arange(1, len(steps) + 1)  # the row (column) each step leads into
    share = np.bincount(positions % size, weights=steps, minlength=size)
    start = int(share.argmax())
    if not share[start] >= BLOCK_SHARE * steps.sum() > 0:
        return None
    on_grid = positions % size == start
    threshold = BLOCK_STEP * changes.max()
    if changes[~on_grid].max(initial=0) > threshold:
        return None
    return start, int(np.count_nonzero(changes[on_grid] > threshold))


def border_pixels(image: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of a 2-D array, as one 1-D array (the paper, mostly)."""
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def has_dark_ink(image: np.ndarray) -> bool:
    """Whether float (h, w) 0-255 is dark ink on light paper: its darkest part is farther from
    the border (the paper, mostly) than its lightest part. Extremes are taken on a reduced copy
    (``reduced``), where a speck of dust is averaged away and a stroke is not."""
    paper = float(np.median(border_pixels(image)))
    small = reduced(image)
    return paper - float(small.min()) > float(small.max()) - paper


BACKGROUND_SIDE = 128  # px: the background is estimated on a copy this small (longer side)
BACKGROUND_WINDOW = 0.5  # of the longer side: wider than any stroke, even a marker's


def ink_signal(image: np.ndarray) -> np.ndarray:
    """How much ink is on each pixel of float (h, w) 0-255, measured against the local paper:
    float32 (h, w), light on dark, 0 on paper.

    Dark ink is measured as the fraction of the light it takes from the paper under it
    (x 255), so a stroke in a shadow counts as much as one in full light; light ink on a dark
    background (a screen, MNIST itself) as how much brighter it is than its background.
    """
    dark_ink = has_dark_ink(image)
    light = 255 - image if dark_ink else image
    background = local_background(light)
    ink = np.clip(light - background, 0, None)
    if dark_ink:
        paper = 255 - background
        ink *= 255 / np.maximum(paper, MIN_CONTRAST)
    return ink.astype(np.float32)


def local_background(image: np.ndarray) -> np.ndarray:
    """The background under a light-on-dark float (h, w) picture: its morphological opening
    (darkest, then brightest, in a square window of ``BACKGROUND_WINDOW`` of the longer side),
    which removes every stroke narrower than the window and keeps light that varies slowly
    across the page (a linear fall-off exactly). Float32 (h, w).

    Computed on a copy whose longer side is at most ``BACKGROUND_SIDE`` px: the background is
    smooth, and the window stays small (2 ms here instead of seconds on a photo).
    """
    small = reduced(image)
    radius = max(1, round(BACKGROUND_WINDOW * max(small.shape) / 2))
    opened = _window_max(-_window_max(-small, radius), radius)
    size = (image.shape[1], image.shape[0])
    return np.asarray(_float_image(opened).resize(size, Image.Resampling.BILINEAR))


def reduced(image: np.ndarray) -> np.ndarray:
    """Float (h, w) averaged down (box filter) so its longer side is at most
    ``BACKGROUND_SIDE`` px: float32, the same aspect ratio."""
    height, width = image.shape
    scale = min(1.0, BACKGROUND_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(_float_image(image).resize(size, Image.Resampling.BOX))


def _float_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))


def _window_max(image: np.ndarray, radius: int) -> np.ndarray:
    """Maximum of float (h, w) over a (2r+1)^2 square around each pixel, same shape. Beyond
    the edge the picture is continued as a straight line (odd reflection), so that light
    falling off towards an edge is not taken for a step there."""
    result = image
    for axis in (0, 1):
        reach = min(radius, result.shape[axis] - 1)  # a longer window sees nothing more
        pad = [(0, 0), (0, 0)]
        pad[axis] = (reach, reach)
        padded = np.pad(result, pad, mode="reflect", reflect_type="odd")
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1, axis=axis)
        result = windows.max(axis=-1)
    return result


def normalise_contrast(image: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Map light-on-dark float (h, w) so the paper and its noise become 0 and the ink 255.

    Paper and its noise are ``paper_floor``; ink is the 99th
    percentile of what is brighter, so a few hot pixels do not set the scale. Raises
    ``ImageError`` if the ink is not ``MIN_CONTRAST`` above the paper's noise.
    """
    floor = paper_floor(image)
    above = image[image > floor]
    ink = float(np.percentile(above, 99)) if above.size else floor
    if not ink - floor >= MIN_CONTRAST:  # also refuses NaN
        raise ImageError(
            f"{source}: no digit found (ink and paper differ by {ink - floor:.0f} grey levels "
            f"above the paper's noise, need {MIN_CONTRAST})"
        )
    return np.clip((image - floor) / (ink - floor) * 255, 0, 255).astype(np.float32)


def paper_floor(image: np.ndarray) -> float:
    """The brightest that paper gets in light-on-dark float (h, w): its level plus
    ``NOISE_MADS`` times its noise (normal-scaled), estimated three ways, the lowest taken.

    From the border (median and median absolute deviation), which fails when strokes cover
    much of it; from the whole picture's darker half (median, and its distance to the lower
    quartile), which fails when ink covers half the picture (a tight crop of a bold digit);
    from the darkest tenth and the differences between neighbours (flat inside strokes as on
    paper), which fails on blurred noise. Ink only raises an estimate it spoils.
    """
    border = border_pixels(image)
    level = float(np.median(border))
    from_border = level + NOISE_MADS * 1.4826 * float(np.median(np.abs(border - level)))
    darkest, quartile, median = (float(p) for p in np.percentile(image, [10, 25, 50]))
    from_picture = median + NOISE_MADS * (median - quartile) / 0.6745
    steps = np.concatenate([np.diff(image, axis=0).ravel(), np.diff(image, axis=1).ravel()])
    noise = 1.4826 * float(np.median(np.abs(steps))) / math.sqrt(2) if steps.size else 0.0
    from_neighbours = darkest + (NOISE_MADS + 1.28) * noise  # the 10th percentile is -1.28 sd
    return min(from_border, from_picture, from_neighbours)


def digit_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), end-exclusive, of the pixels at least half as bright as the
    brightest: the digit's extent without its blur, anti-aliasing or faint noise."""
    rows, columns = np.nonzero(image >= image.max() / 2)
    return int(rows.min()), int(rows.max()) + 1, int(columns.min()), int(columns.max()) + 1


def stroke_width(mask: np.ndarray) -> float:
    """Mean width in pixels of the strokes in bool (h, w) ``mask``: 2 x area / perimeter, so a
    w x l bar gives w * l / (w + l) and a long stroke nearly w, at any slant.

    The perimeter counts ink/paper changes between neighbours in 4 directions (across, down and
    both diagonals): a unit of straight edge makes 3 of them when upright and 2.8-3.2 at other
    angles, where counting across and down alone would make 1-1.4 and measure slanted strokes
    up to 30% thinner.
    """
    padded = np.pad(mask, 1)  # ink touching the border has an edge there too
    changes = (
        np.count_nonzero(padded[1:, :] != padded[:-1, :])
        + np.count_nonzero(padded[:, 1:] != padded[:, :-1])
        + np.count_nonzero(padded[1:, 1:] != padded[:-1, :-1])
        + np.count_nonzero(padded[1:, :-1] != padded[:-1, 1:])
    )
    return 2 * np.count_nonzero(mask) / max(changes / 3, 1)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Bool (h, w) ``mask`` with every ink pixel grown into a disc of ``radius`` px, same shape.

    A disc, not Pillow's square ``MaxFilter``, so that diagonal strokes grow as much as straight
    ones, as with a round pen.
    """
    height, width = mask.shape
    rows, columns = np.indices((2 * radius + 1, 2 * radius + 1)) - radius
    disc = np.hypot(rows, columns) <= radius
    padded = np.pad(mask, radius)
    grown = np.zeros_like(mask)
    for row, column in np.argwhere(disc):  # one shifted copy per pixel of the pen
        grown |= padded[row : row + height, column : column + width]
    return grown


def normalise_stroke_width(image: np.ndarray) -> np.ndarray:
    """Redraw a light-on-dark float (h, w) digit written with a much finer pen than MNIST's
    (strokes under ``THIN_RATIO`` of its longer side) or a much broader one (a marker, over
    ``THICK_RATIO``) with MNIST's (``STROKE_RATIO``; a broad one to ``THINNED_RATIO``).

    Returns the image unchanged if its strokes are neither; otherwise float32 0/255, the
    digit's half-max mask cropped and resampled so its longer side is ``STROKE_SIDE`` px (so a
    large photo stays fast), each stroke then grown or shrunk by a round pen.
    """
    top, bottom, left, right = digit_box(image)
    mask = image[top:bottom, left:right] >= image.max() / 2
    ratio = stroke_width(mask) / max(mask.shape)
    if THIN_RATIO <= ratio <= THICK_RATIO:
        return image
    scale = STROKE_SIDE / max(mask.shape)
    size = (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale)))
    ink = np.asarray(
        Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)
    )
    if ratio > THICK_RATIO:
        redrawn = _thinned(ink >= 128)
    else:
        redrawn = _thickened(ink > 0)  # any ink in a pixel: a fine line stays unbroken
    return redrawn.astype(np.float32) * 255


def _thickened(mask: np.ndarray) -> np.ndarray:
    # The pen whose strokes measure closest to MNIST's when measured as STROKE_RATIO was (ends
    # and all; the pen lengthens the digit too). A pen of radius r draws strokes 2r + 1 wide or
    # more, so radii past STROKE_RATIO x STROKE_SIDE would only be too wide.
    radii = range(round(STROKE_RATIO * STROKE_SIDE))
    pens = (dilate(np.pad(mask, radius), radius) for radius in radii)
    return min(pens, key=lambda pen: abs(_width_ratio(pen) - STROKE_RATIO))


def _thinned(mask: np.ndarray) -> np.ndarray:
    """Bool (h, w) ``mask`` shrunk by the round pen that brings its strokes nearest to
    ``THINNED_RATIO``; never so far that a part of the digit disappears."""
    best = mask
    for radius in range(1, round(STROKE_RATIO * STROKE_SIDE)):
        eroded = ~dilate(~mask, radius)
        if _parts(eroded) < _parts(mask):
            break
        if abs(_width_ratio(eroded) - THINNED_RATIO) >= abs(_width_ratio(best) - THINNED_RATIO):
            break  # past the nearest: strokes only get thinner from here
        best = eroded
    return best


def _parts(mask: np.ndarray) -> int:
    """The number of separate (4-connected) pieces of ink in bool (h, w) ``mask``."""
    labels = Image.fromarray(mask.astype(np.uint8)).copy()  # fromarray's may share the array
    count = 0
    while (remaining := np.argwhere(np.asarray(labels) == 1)).size:
        row, column = remaining[0]
        ImageDraw.floodfill(labels, (int(column), int(row)), 2)
        count += 1
    return count


def _width_ratio(mask: np.ndarray) -> float:
    """Stroke width over the longer side of the ink's extent in bool (h, w) ``mask``."""
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        return math.inf
    return stroke_width(mask) / max(np.ptp(rows) + 1, np.ptp(columns) + 1)


def fit_to_box(image: np.ndarray) -> np.ndarray:
    """Scale light-on-dark float (h, w) so the digit's longer side is ``DIGIT_BOX`` px, keeping
    the aspect ratio, anti-aliased (Lanczos); returns float32 cropped to the digit plus a
    ``MARGIN`` px border that holds its soft edges."""
    top, bottom, left, right = digit_box(image)
    scale = DIGIT_BOX / max(bottom - top, right - left)
    pad = math.ceil(MARGIN / scale)  # in source pixels
    region = np.pad(image, pad)[top : bottom + 2 * pad, left : right + 2 * pad]
    size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
    resized = Image.fromarray(np.ascontiguousarray(region, dtype=np.float32)).resize(
        size, Image.Resampling.LANCZOS
    )
    return np.clip(np.asarray(resized), 0, None)


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place float (h, w) in a 28x28 frame with its centre of mass at ``CENTRE`` (whole-pixel
    shift, as MNIST did); scale so the brightest pixel is 255; return uint8 (28, 28)."""
    rows, columns = np.indices(digit.shape)
    mass = digit.sum()
    offset_row = CENTRE[0] - round(float((rows * digit).sum() / mass))
    offset_column = CENTRE[1] - round(float((columns * digit).sum() / mass))
    frame = np.zeros(IMAGE_SHAPE, dtype=np.float32)
    target_rows, source_rows = _overlap(offset_row, digit.shape[0], IMAGE_SHAPE[0])
    target_columns, source_columns = _overlap(offset_column, digit.shape[1], IMAGE_SHAPE[1])
    frame[target_rows, target_columns] = digit[source_rows, source_columns]
    frame *= 255 / max(float(frame.max()), 1e-6)
    return frame.round().astype(np.uint8)


def _overlap(offset: int, length: int, frame_length: int) -> tuple[slice, slice]:
    """Slices (in frame, in source) of a source of ``length`` placed at ``offset`` in a frame."""
    start, end = max(offset, 0), min(offset + length, frame_length)
    return slice(start, end), slice(start - offset, end - offset)
