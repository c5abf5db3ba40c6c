"""Take the slant out of digits, as LeCun et al. deskewed MNIST: every picture the model sees
(the training, validation and test images, and each picture ``digits predict`` frames) is
sheared sideways, row by row, until its strokes lean neither way.

A slanted digit differs from an upright one in every pixel, and a dense network has to learn
each slant anew; deskewed, the same digit written at different slants lands on nearly the same
pixels (README "Results": validation, UCI's handwriting and the rendered styles all gain).
"""

import numpy as np

# Steepest shear applied, in columns per row (1 = 45 degrees): beyond 99.8 % of MNIST's
# training digits; a picture of a nearly flat stroke (a dash) would otherwise be sheared
# without bound.
MAX_SHEAR = 1.0


def deskew(images: np.ndarray) -> np.ndarray:
    """uint8 (n, h, w) light-on-dark digits, each with its rows shifted sideways in proportion
    to their distance from its centre of mass (a shear), by the ink's covariance of row and
    column over its variance along the rows: the least-squares slant of its strokes. Pixels are
    read between columns linearly; the centre of mass stays where it was (to within rounding).
    A blank image is returned unchanged. Returns uint8 (n, h, w)."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"expected uint8 (n, h, w) images, got {images.dtype} {images.shape}")
    chunks = max(1, len(images) // 2000)  # float64 copies of at most 4,000 images: 25 MB each
    return np.concatenate([_deskewed(chunk) for chunk in np.array_split(images, chunks)])


def _deskewed(images: np.ndarray) -> np.ndarray:
    ink = images.astype(np.float64)
    height, width = images.shape[1:]
    rows, columns = np.indices((height, width), dtype=np.float64)
    mass = np.maximum(ink.sum(axis=(1, 2)), 1e-12)

    def mean(values: np.ndarray) -> np.ndarray:
        return (ink * values).sum(axis=(1, 2)) / mass

    centre_row = mean(rows)[:, None, None]
    below = rows - centre_row  # (n, h, w): each pixel's rows from the centre of mass
    row_variance = mean(below**2)
    covariance = mean(below * (columns - mean(columns)[:, None, None]))
    slant = covariance / np.maximum(row_variance, 1e-12)
    slant = np.clip(slant, -MAX_SHEAR, MAX_SHEAR)[:, None, None]
    source = columns + slant * below  # the column each output pixel reads, per row
    left = np.floor(source).astype(np.intp)
    weight = source - left
    sheared = (1 - weight) * _columns_at(ink, left) + weight * _columns_at(ink, left + 1)
    return np.clip(np.rint(sheared), 0, 255).astype(np.uint8)


def _columns_at(ink: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``ink``'s pixel at each row's given columns; 0 outside the image."""
    inside = (columns >= 0) & (columns < ink.shape[2])
    read = np.take_along_axis(ink, np.clip(columns, 0, ink.shape[2] - 1), axis=2)
    return np.where(inside, read, 0.0)
