"""Tests for digits/renderings.py: the non-MNIST picture set is reproducible, and every style
gives a picture the predict path reads as a digit."""

import numpy as np
import pytest

from digits import renderings
from digits.images import load_grayscale, mnist_frame


def test_the_same_seed_gives_the_same_glyphs_and_another_seed_others():
    def first(seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [renderings.glyph(index, rng)[1] for index in (3, 13)]

    assert all(np.array_equal(a, b) for a, b in zip(first(0), first(0), strict=True))
    assert not np.array_equal(first(0)[0], first(1)[0])


def test_glyphs_cycle_through_the_digits_from_fonts_and_from_hand_strokes():
    rng = np.random.default_rng(0)

    glyphs = [renderings.glyph(index, rng) for index in range(20)]

    assert [digit for digit, _ in glyphs] == list(range(10)) * 2
    assert all(
        ink.dtype == np.uint8 and ink.shape[0] == renderings.GLYPH_HEIGHT for _, ink in glyphs
    )
    assert all(ink.max() == 255 for _, ink in glyphs)


@pytest.mark.parametrize("digit", range(10))
def test_every_hand_shape_is_drawn(digit):
    rng = np.random.default_rng(digit)
    for _ in range(3 * len(renderings.HAND_STROKES[digit])):
        ink = renderings.hand_glyph(digit, rng)
        assert ink.shape[0] == renderings.GLYPH_HEIGHT and np.count_nonzero(ink > 128) > 500


@pytest.mark.parametrize("style", renderings.STYLES, ids=str)
def test_every_style_gives_a_picture_with_a_digit_in_it(style, tmp_path):
    rng = np.random.default_rng(0)
    for index in (7, 18):  # a 7 typeset in a font, an 8 drawn by hand
        _, ink = renderings.glyph(index, rng)
        picture, suffix = renderings.STYLES[style](ink, rng)
        path = tmp_path / f"{index}{suffix}"
        picture.save(path)

        frame = mnist_frame(load_grayscale(path))

        assert frame.shape == (28, 28) and frame.max() == 255
