"""Turn a person's picture of a digit into a 28x28 MNIST-like input, the way MNIST was made.

MNIST digits are light on dark, fitted into a 20x20 box keeping their aspect ratio (anti-aliased)
and placed in a 28x28 frame so that their centre of mass is at the centre. A digit written with a
much finer pen than MNIST's is redrawn with MNIST's stroke width first. ``load_grayscale`` is the
one image loader (Pillow, I/O); everything after it is a function of arrays.
"""

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digits.errors import DigitsError
from digits.mnist import IMAGE_SHAPE

# Formats a person's digit picture comes in; leaving out the rest keeps Pillow from running its
# rarer decoders (EPS would even start Ghostscript) on whatever file it is handed.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")  # JPEG includes MPO (phone cameras)
MAX_PIXELS = 50_000_000  # above any phone camera (48 MP); more is a decompression bomb
DIGIT_BOX = 20  # MNIST fitted each digit's longer side into 20 px ...
MARGIN = 2  # ... and anti-aliasing spills about a pixel beyond it, so keep 2 px around the box
CENTRE = (14, 14)  # where MNIST digits' centres of mass are (row, column; mean over the test set)
MIN_CONTRAST = 32  # grey levels between paper and ink; JPEG noise on blank paper stays below 10
NOISE_MADS = 3  # border noise this many (normal-scaled) median absolute deviations is paper
# Stroke width / the digit's longer side, widths measured by stroke_width on the half-max mask
STROKE_RATIO = 0.12  # MNIST's median (2000 training digits at 10x; 2.4 px of the 20)
THIN_RATIO = 0.06  # thinner than 99.5% of MNIST's training digits: a finer pen than MNIST's
STROKE_SIDE = 100  # px, longer side while redrawn: each step of pen radius is 0.4 px at 20 px


class ImageError(DigitsError):
    """An input image cannot be read, is too large, or has no digit in it."""


def load_grayscale(path: Path) -> np.ndarray:
    """Read an image file as uint8 (h, w) grayscale: EXIF orientation applied, alpha flattened.

    Raises ``ImageError`` naming ``path`` for a missing file, a file that is not an image in one
    of ``FORMATS``, a damaged image, or one with more than ``MAX_PIXELS`` pixels.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice that; make it an error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as image:
                _check_pixel_count(image.size, path)  # from the header, before decoding
                return _to_grayscale(ImageOps.exif_transpose(image))
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (expected one of {', '.join(FORMATS)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{path}: too many pixels to decode safely (decompression bomb?)"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # what Pillow's decoders raise
        raise ImageError(f"{path}: cannot decode the image ({error})") from None


def _check_pixel_count(size: tuple[int, int], path: Path) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{path}: {width}x{height} is {width * height:,} pixels, more than the "
            f"{MAX_PIXELS:,} a digit picture needs (decompression bomb?)"
        )


def _to_grayscale(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit scans: keep the top 8 bits' worth
        return np.clip(np.asarray(image, dtype=np.float64) / 257, 0, 255).round().astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        gray = np.asarray(rgba.convert("L"))
        return flatten_alpha(gray, np.asarray(rgba.getchannel("A")))
    return np.asarray(image.convert("L"))


def flatten_alpha(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite uint8 (h, w) ``gray`` with opacity ``alpha`` onto a plain background: uint8.

    The background is white under dark ink and black under light ink: a black digit on a
    transparent background usually has black (invisible) pixels there too, so flattening onto
    black would erase it.
    """
    weight = alpha.astype(np.float64) / 255
    if weight.sum() == 0:
        return np.zeros_like(gray)  # fully transparent: blank, reported by mnist_frame
    ink = float((gray * weight).sum() / weight.sum())
    background = 255 if ink < 128 else 0
    flat = gray * weight + background * (1 - weight)
    return flat.round().astype(np.uint8)


def mnist_frame(gray: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Turn uint8 (h, w) grayscale of one digit, any polarity and size, into uint8 (28, 28)
    as MNIST has it: light digit on black, longer side 20 px, centre of mass at the centre.

    Raises ``ImageError`` naming ``source`` if there is no digit (a blank or flat image).
    """
    light = light_on_dark(gray.astype(np.float32))
    digit = normalise_contrast(light, source)
    return centre_by_mass(fit_to_box(normalise_stroke_width(digit)))


def border_pixels(image: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of a 2-D array, as one 1-D array (the paper, mostly)."""
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def light_on_dark(image: np.ndarray) -> np.ndarray:
    """Invert float (h, w) 0-255 if its border (the paper) is lighter than mid-way between its
    darkest and lightest pixel, so that the digit is light on dark like MNIST."""
    paper = float(np.median(border_pixels(image)))
    if paper > (float(image.min()) + float(image.max())) / 2:
        return 255 - image
    return image


def normalise_contrast(image: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Map light-on-dark float (h, w) so the paper and its noise become 0 and the ink 255.

    Paper is the border's median plus ``NOISE_MADS`` times its noise; ink is the 99th
    percentile of what is brighter, so a few hot pixels do not set the scale.
    """
    border = border_pixels(image)
    paper = float(np.median(border))
    noise = 1.4826 * float(np.median(np.abs(border - paper)))  # MAD -> standard deviation
    floor = paper + NOISE_MADS * noise
    above = image[image > floor]
    ink = float(np.percentile(above, 99)) if above.size else floor
    if ink - paper < MIN_CONTRAST:
        raise ImageError(
            f"{source}: no digit found (ink and paper differ by {ink - paper:.0f} grey levels, "
            f"need {MIN_CONTRAST})"
        )
    return np.clip((image - floor) / (ink - floor) * 255, 0, 255).astype(np.float32)


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
    (strokes under ``THIN_RATIO`` of its longer side) with MNIST's (``STROKE_RATIO``).

    Returns the image unchanged if its strokes are not that thin; otherwise float32 0/255, the
    digit's half-max mask cropped and resampled so its longer side is ``STROKE_SIDE`` px (so a
    large photo stays fast), each stroke then grown by a round pen.
    """
    top, bottom, left, right = digit_box(image)
    mask = image[top:bottom, left:right] >= image.max() / 2
    if stroke_width(mask) >= THIN_RATIO * max(mask.shape):
        return image
    scale = STROKE_SIDE / max(mask.shape)
    size = (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale)))
    ink = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)
    small = np.asarray(ink) > 0  # any ink in a pixel: a line finer than a pixel stays unbroken
    # The pen whose strokes measure closest to MNIST's when measured as STROKE_RATIO was (ends
    # and all; the pen lengthens the digit too). A pen of radius r draws strokes 2r + 1 wide or
    # more, so radii past STROKE_RATIO x STROKE_SIDE would only be too wide.
    radii = range(round(STROKE_RATIO * STROKE_SIDE))
    pens = (dilate(np.pad(small, radius), radius) for radius in radii)
    redrawn = min(pens, key=lambda pen: abs(stroke_width(pen) / max(pen.shape) - STROKE_RATIO))
    return redrawn.astype(np.float32) * 255


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
