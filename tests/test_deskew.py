"""Deskewing: a slanted digit comes out upright, its centre of mass in place; an upright or
blank one unchanged; the shear bounded."""

import numpy as np
import pytest
from conftest import slant

from digits.deskew import MAX_SHEAR, deskew


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, columns = np.indices(image.shape)
    mass = image.astype(np.float64).sum()
    return (rows * image).sum() / mass, (columns * image).sum() / mass


def bar(top_column: float, bottom_column: float, width: int = 3) -> np.ndarray:
    """uint8 (28, 28): a stroke from row 4 to row 23, its left edge moving from
    ``top_column`` to ``bottom_column``."""
    image = np.zeros((28, 28), dtype=np.uint8)
    for row in range(4, 24):
        left = round(top_column + (bottom_column - top_column) * (row - 4) / 19)
        image[row, left : left + width] = 255
    return image


@pytest.mark.parametrize("top, bottom", [(16, 8), (8, 16), (14, 10)])
def test_a_slanted_stroke_comes_out_upright_around_its_centre_of_mass(top, bottom):
    image = bar(top, bottom)[np.newaxis]

    upright = deskew(image)

    assert abs(slant(image)[0]) > 0.2
    assert abs(slant(upright)[0]) < 0.05
    assert np.allclose(centre_of_mass(upright[0]), centre_of_mass(image[0]), atol=0.3)
    assert upright.dtype == np.uint8 and upright.shape == image.shape


def test_an_upright_stroke_and_a_blank_image_are_unchanged():
    images = np.stack([bar(12, 12), np.zeros((28, 28), dtype=np.uint8)])

    assert np.array_equal(deskew(images), images)


def test_each_image_is_deskewed_on_its_own_whatever_the_batch():
    rng = np.random.default_rng(0)
    images = np.stack([bar(*rng.integers(4, 22, size=2)) for _ in range(5)])

    one_by_one = np.concatenate([deskew(image[np.newaxis]) for image in images])

    assert np.array_equal(deskew(images), one_by_one)


def test_a_nearly_flat_stroke_is_sheared_at_most_max_shear():
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 13, 2:26] = 255
    image[0, 14, 20:26] = 255  # a dash, lower at its right end: its rows barely vary

    sheared = deskew(image)

    assert abs(slant(image)[0]) > 2 * MAX_SHEAR
    # Row 14 (0.8 rows below the centre) reads columns at most 0.8 x MAX_SHEAR away.
    assert np.nonzero(sheared[0, 14])[0].min() >= 20 - 1
    assert sheared[0].sum() > 0.9 * image[0].sum()


def test_anything_but_a_stack_of_uint8_images_is_refused():
    with pytest.raises(ValueError, match="expected uint8"):
        deskew(np.zeros((28, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected uint8"):
        deskew(np.zeros((1, 28, 28), dtype=np.float32))
