"""Augmentation: off is the identity; on, it is seeded and reads the images bilinearly."""

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
from conftest import ALL_OPTIONS, TINY, random_data

from digits.augment import (
    ELASTIC_GRID,
    _bicubic_rows,
    _low_res,
    _low_res_matrix,
    _sample_bilinear,
    _shift_bilinear,
    _square,
    _thicken,
    distort_images,
)
from digits.batches import training_batches
from digits.params import NO_AUGMENT, AugmentParams


def test_distort_images_without_options_is_identity():
    x, _ = random_data(4, 4)
    out = distort_images(x, np.array([1, 2], dtype=np.int64), NO_AUGMENT)
    np.testing.assert_array_equal(out.numpy(), x)


def test_distort_images_is_seeded():
    x, y = random_data(4, 4)
    augment = ALL_OPTIONS.augment
    first = distort_images(x, np.array([1, 2], dtype=np.int64), augment, y).numpy()
    again = distort_images(x, np.array([1, 2], dtype=np.int64), augment, y).numpy()
    other = distort_images(x, np.array([3, 4], dtype=np.int64), augment, y).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == x.shape and 0 <= first.min() and first.max() <= 1


def test_bilinear_sampling_reads_whole_and_half_pixels():
    image = np.zeros((1, 28, 28), dtype=np.float32)
    image[0, 10, 12] = 1.0
    rows, columns = np.meshgrid(np.arange(28.0), np.arange(28.0), indexing="ij")
    rows, columns = rows[None].astype(np.float32), columns[None].astype(np.float32)
    moved = _sample_bilinear(image, rows - 1, columns + 0.5).numpy()
    assert moved[0, 11, 11] == 0.5 and moved[0, 11, 12] == 0.5  # one down, half left
    assert moved.sum() == 1.0
    outside = _sample_bilinear(image, rows + 40, columns).numpy()
    assert not outside.any()  # beyond the edge reads the zero background


def test_the_affine_kernel_samples_as_the_general_sampler_does():
    """Shifts, rotations and zoom without a displacement field take TensorFlow's transform
    kernel; it reads the same pixels as ``_sample_bilinear`` given the same map."""
    x, _ = random_data(16, 5)
    affine = replace(NO_AUGMENT, shift_px=2, rotation_deg=10, scale=0.1)
    fast = distort_images(x, np.array([5, 6], dtype=np.int64), affine).numpy()
    # The same draws with a field of zero length take the general path.
    tiny_field = replace(affine, elastic_px=1e-9)
    general = distort_images(x, np.array([5, 6], dtype=np.int64), tiny_field).numpy()
    np.testing.assert_allclose(fast, general, atol=1e-5)
    assert not np.allclose(fast, x)


def test_shifts_and_zoom_alone_sample_as_the_affine_kernel_does():
    """Without rotation, rows and columns move independently: the separable resampling reads the
    same pixels, with the same draws, as TensorFlow's transform kernel."""
    x, _ = random_data(16, 6)
    axis_aligned = replace(NO_AUGMENT, shift_px=2.5, scale=0.15)
    separable = distort_images(x, np.array([7, 8], dtype=np.int64), axis_aligned).numpy()
    # A rotation of at most 1e-9 degrees draws the same shifts and zoom, through the kernel.
    kernel_path = replace(axis_aligned, rotation_deg=1e-9)
    kernel = distort_images(x, np.array([7, 8], dtype=np.int64), kernel_path).numpy()
    np.testing.assert_allclose(separable, kernel, atol=1e-5)
    assert not np.allclose(separable, x)


def test_shifts_alone_sample_as_the_separable_path_does():
    """Shifts without zoom take the sum of whole-pixel shifts; with a zoom of at most 1e-9 the
    same draws go through the separable products, and both read the same pixels."""
    x, _ = random_data(16, 9)
    for shift_px in (1, 2.5):
        shifts = replace(NO_AUGMENT, shift_px=shift_px)
        summed = distort_images(x, np.array([3, 4], dtype=np.int64), shifts).numpy()
        products_path = replace(shifts, scale=1e-9)
        products = distort_images(x, np.array([3, 4], dtype=np.int64), products_path).numpy()
        np.testing.assert_allclose(summed, products, atol=1e-5)
        assert not np.allclose(summed, x)


def test_a_shift_moves_the_picture_down_and_right():
    image = np.zeros((1, 28, 28), dtype=np.float32)
    image[0, 10, 12] = 1.0
    shift = np.array([[[[1.0, 0.5]]]], dtype=np.float32)  # (b, 1, 1, [down, right])
    moved = _shift_bilinear(image, shift, 1).numpy()
    assert moved[0, 11, 12] == 0.5 and moved[0, 11, 13] == 0.5
    assert moved.sum() == 1.0
    edge = np.zeros_like(image)
    edge[0, 27, 0] = 1.0
    assert not _shift_bilinear(edge, shift, 1).numpy().any()  # moved out of the picture


def test_the_field_is_the_bicubic_resize_of_its_offsets():
    """The compiled elastic path resizes the offsets by two matrix products: they must give what
    ``tf.image.resize`` gives, for offsets that differ along both axes."""
    rng = np.random.default_rng(7)
    offsets = rng.uniform(-2, 2, (3, ELASTIC_GRID, ELASTIC_GRID, 2)).astype(np.float32)
    expected = tf.image.resize(offsets, (28, 28), method="bicubic").numpy()
    rows = _bicubic_rows().numpy()
    np.testing.assert_allclose(
        np.einsum("ik,bklc,jl->bijc", rows, offsets, rows), expected, atol=1e-5
    )


def low_res_only(share: float, side: int = 11) -> AugmentParams:
    return replace(NO_AUGMENT, low_res_share=share, low_res_px=side)


@pytest.mark.parametrize("side", [7, 11, 14])
def test_low_res_is_tensorflows_shrink_and_enlarge(side):
    """The two matrix products equal tf.image.resize down ("area") and back ("bicubic"),
    clipped to 0-1 and scaled so the brightest pixel is 1."""
    x, _ = random_data(8, 3)
    shrunk = tf.image.resize(x[..., None], [side, side], method="area")
    expected = tf.clip_by_value(tf.image.resize(shrunk, [28, 28], method="bicubic")[..., 0], 0, 1)
    expected /= tf.reduce_max(expected, axis=[1, 2], keepdims=True)

    blurred = _low_res(tf.constant(x), tf.constant([1, 2], tf.int64), low_res_only(1.0, side))

    np.testing.assert_allclose(blurred.numpy(), expected.numpy(), atol=1e-5)


def thick_only(share: float) -> AugmentParams:
    return replace(NO_AUGMENT, thick_share=share)


def square_only(share: float) -> AugmentParams:
    return replace(NO_AUGMENT, square_share=share)


@pytest.mark.parametrize(
    ("only", "every_image"),
    [(low_res_only, _low_res), (thick_only, _thicken), (square_only, _square)],
)
def test_each_share_changes_its_share_of_the_images_seeded(only, every_image):
    x, _ = random_data(2000, 4)
    x[:, :, :10] = x[:, :, 18:] = 0  # ink taller than wide, for the square box to change
    seed = tf.constant([5, 6], tf.int64)

    changed_images = distort_images(x, seed, only(0.3)).numpy()

    changed = np.any(changed_images != x, axis=(1, 2))
    assert 0.26 < changed.mean() < 0.34  # 600 expected; 4 standard deviations either way
    every_one = every_image(tf.constant(x), seed, only(1.0)).numpy()
    np.testing.assert_allclose(changed_images[changed], every_one[changed], atol=1e-6)
    np.testing.assert_array_equal(changed_images, distort_images(x, seed, only(0.3)).numpy())
    assert not np.array_equal(changed_images, distort_images(x, seed + 1, only(0.3)).numpy())
    np.testing.assert_array_equal(distort_images(x, seed, only(0.0)).numpy(), x)


def test_a_broader_pen_takes_the_brightest_of_each_square_below_and_right():
    x, _ = random_data(5, 6)
    padded = np.pad(x, [(0, 0), (0, 1), (0, 1)])  # zeros beyond the bottom and right edges
    windows = [
        padded[:, down : down + 28, right : right + 28] for down in (0, 1) for right in (0, 1)
    ]
    expected = np.max(windows, axis=0)

    broader = _thicken(tf.constant(x), tf.constant([1, 2], tf.int64), thick_only(1.0)).numpy()

    np.testing.assert_array_equal(broader, expected)


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """Where ``image`` is at least half bright: enlarged edges ramp over about a pixel."""
    rows, columns = np.nonzero(image >= 0.5)
    return rows.min(), rows.max() + 1, columns.min(), columns.max() + 1


@pytest.mark.parametrize(
    ("top", "bottom", "left", "right", "square"),
    [
        (4, 24, 12, 16, (4, 24, 4, 24)),  # a 1: 20 tall, 4 wide, stretched across
        (10, 18, 2, 26, (2, 26, 2, 26)),  # a dash: 24 wide, stretched down, still inside
        (2, 22, 0, 6, (2, 22, 0, 20)),  # at the left edge: the stretch moves right to fit
    ],
)
def test_a_digit_is_stretched_along_its_shorter_side_to_a_square_box(
    top, bottom, left, right, square
):
    bar = np.zeros((1, 28, 28), np.float32)
    bar[0, top:bottom, left:right] = 1.0

    stretched = _square(tf.constant(bar), tf.constant([1, 2], tf.int64), square_only(1.0))

    assert ink_box(stretched.numpy()[0]) == square
    assert stretched.numpy().max() == pytest.approx(1.0)


def test_a_square_or_empty_image_is_left_as_it_is():
    x = np.zeros((2, 28, 28), np.float32)
    x[0, 5:20, 7:22] = np.random.default_rng(3).uniform(0.5, 1, (15, 15))
    seed = tf.constant([1, 2], tf.int64)

    np.testing.assert_allclose(
        _square(tf.constant(x), seed, square_only(1.0)).numpy(), x, atol=1e-6
    )


def test_blur_and_broader_strokes_are_drawn_independently():
    x, _ = random_data(2000, 4)
    seed = tf.constant([5, 6], tf.int64)

    both = replace(NO_AUGMENT, low_res_share=0.3, thick_share=0.3)

    blurred = np.any(distort_images(x, seed, low_res_only(0.3)).numpy() != x, axis=(1, 2))
    changed = np.any(distort_images(x, seed, thick_only(0.3)).numpy() != x, axis=(1, 2))
    chosen_for_both = np.any(distort_images(x, seed, both).numpy() != x, axis=(1, 2))
    np.testing.assert_array_equal(chosen_for_both, blurred | changed)  # independent draws
    assert 0.05 < (blurred & changed).mean() < 0.13  # 0.09 of them both


def flag_only(share: float) -> AugmentParams:
    return replace(NO_AUGMENT, flag_share=share)


def ones_and_sevens(count: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 28, 28) upright stems 2 px wide in columns 14-15, rows 5-22; every other one a 1
    (the rest 7s, though they look the same)."""
    images = np.zeros((count, 28, 28), dtype=np.float32)
    images[:, 5:23, 14:16] = 1.0
    return images, np.resize(np.array([1, 7]), count)


def test_only_ones_get_a_flag_down_to_the_left_of_the_stems_top():
    x, y = ones_and_sevens(40)

    flagged = distort_images(x, tf.constant([1, 2], tf.int64), flag_only(1.0), y).numpy()

    np.testing.assert_array_equal(flagged[y != 1], x[y != 1])
    ones, stems = flagged[y == 1], x[y == 1]
    assert np.all(ones >= stems)  # drawn over the digit, which keeps all its ink
    added = ones - stems
    assert np.all(added[:, :5] == 0) and np.all(added[:, :, 16:] == 0)  # not above or right
    rows, columns = np.nonzero(added.max(axis=0))
    assert rows.max() <= 5 + 0.5 * 18 + 1 and columns.min() >= 14 - 0.5 * 18 - 1  # its length
    left_of_stem = added[:, :, :14].sum(axis=(1, 2))
    assert np.all(left_of_stem >= 0.25 * 18 * np.cos(np.radians(55)) * 2 * 0.9)  # a flag each
    assert len({round(float(ink), 3) for ink in left_of_stem}) > 10  # each at its own angle


def test_the_flags_share_of_the_ones_is_seeded():
    x, _ = ones_and_sevens(2000)
    ones = np.ones(len(x), dtype=np.int64)
    seed = tf.constant([5, 6], tf.int64)

    changed_images = distort_images(x, seed, flag_only(0.3), ones).numpy()

    changed = np.any(changed_images != x, axis=(1, 2))
    assert 0.26 < changed.mean() < 0.34  # 600 expected; 4 standard deviations either way
    assert np.all(changed_images >= x)
    np.testing.assert_array_equal(
        changed_images, distort_images(x, seed, flag_only(0.3), ones).numpy()
    )
    assert not np.array_equal(
        changed_images, distort_images(x, seed + 1, flag_only(0.3), ones).numpy()
    )
    with pytest.raises(ValueError, match="flag_share needs the images' digits"):
        distort_images(x, seed, flag_only(0.3))


@pytest.mark.parametrize(
    "augment",
    [
        low_res_only(0.5),
        thick_only(0.5),
        square_only(0.5),
        flag_only(1.0),
        replace(low_res_only(0.5), thick_share=0.5, square_share=0.5, flag_share=0.5),
    ],
    ids=["blur", "broader strokes", "square", "flag", "all four"],
)
def test_each_share_alone_runs_inside_the_batch_source(augment):
    """Each share alone turns augmentation on, and the blur's matrix is made eagerly even
    when it is first needed while tf.data traces."""
    _low_res_matrix.cache_clear()
    x, y = random_data(64, 5)
    x[:, :, :10] = x[:, :, 18:] = 0  # ink taller than wide, for the square box to change
    params = replace(TINY, augment=augment)

    images, _ = next(iter(training_batches(x, y, params)))

    untouched = [
        any(np.array_equal(image, original) for original in x) for image in images.numpy()
    ]
    assert 0 < sum(untouched) < len(untouched)
