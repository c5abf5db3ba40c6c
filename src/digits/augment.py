"""On-the-fly augmentation of training images: seeded flags on 1s, random shifts, rotations,
zoom, elastic distortion, low-resolution blur, broader strokes and square boxes, vectorised over
a batch so that it costs little on 2 CPU cores."""

import functools
import math

import numpy as np
import tensorflow as tf

from digits.mnist import IMAGE_SHAPE
from digits.params import AugmentParams

ELASTIC_GRID = 4  # control points per side: one random push every ~9 pixels, smooth in between
CENTRE = ((IMAGE_SHAPE[0] - 1) / 2, (IMAGE_SHAPE[1] - 1) / 2)  # rotations and zooms pivot here
# Shifts alone up to this many pixels are summed (``_shift_bilinear``): its (2 r + 1)^2 terms
# cost 0.86 ms a batch of 250 at 4 px against 1.13 for the separable products, 1.03 against 1.20
# at 5 px and 6.1 against 1.2 at 8 px.
MAX_SUMMED_SHIFT_PX = 4
THICK_PEN = 2  # px: the window _thicken takes the brightest pixel of (3 broadens by 2 px)
INK = 0.2  # brightness above which a pixel counts as ink (a digit's box, a 1's stem)
# A flag runs down to the left from the top of a 1's stem at this angle below the horizontal
# and this share of the digit's height long: the range of UCI's flagged 1s, by eye.
FLAG_ANGLE_DEG = (15, 55)
FLAG_LENGTH = (0.25, 0.5)
FLAG_MAX_PEN = 4  # px: no broader than a marker's stroke at MNIST's size


def distort_images(
    images: tf.Tensor, seed: tf.Tensor, augment: AugmentParams, digits: tf.Tensor | None = None
) -> tf.Tensor:
    """Give a random share of the 1s among float32 (b, 28, 28) ``images`` (``digits``, int
    (b,), their classes) a flag (``_flag_ones``), then randomly shift, rotate, zoom and
    elastically distort each image (``_move_pixels``), blur a random share of them as
    low-resolution scans are (``_low_res``), broaden the strokes of a share drawn independently
    (``_thicken``) and stretch another to a square box (``_square``).
    ``seed`` is int64 (2,): the same seed gives the same images."""
    images = tf.convert_to_tensor(images)
    if augment.flag_share > 0:
        if digits is None:
            raise ValueError("augment.flag_share needs the images' digits")
        images = _flag_ones(
            images, digits, tf.random.experimental.stateless_fold_in(seed, 4), augment
        )
    if augment.moves_pixels:
        images = _move_pixels(images, seed, augment)
    if augment.low_res_share > 0:
        images = _low_res(images, tf.random.experimental.stateless_fold_in(seed, 1), augment)
    if augment.thick_share > 0:
        images = _thicken(images, tf.random.experimental.stateless_fold_in(seed, 2), augment)
    if augment.square_share > 0:
        images = _square(images, tf.random.experimental.stateless_fold_in(seed, 3), augment)
    return images


def _move_pixels(images: tf.Tensor, seed: tf.Tensor, augment: AugmentParams) -> tf.Tensor:
    """Randomly shift, rotate, zoom and elastically distort each image of float32 (b, 28, 28).

    Every output pixel reads the input, bilinearly, at its position mapped by the image's own
    random affine transform plus a smooth displacement field (a random ``ELASTIC_GRID`` square
    of offsets resized bicubically to 28x28, a cheap stand-in for Simard's Gaussian-smoothed
    field). ``seed`` is int64 (2,): the same seed gives the same images. The random draws are
    the same whichever path samples them:
    - with a field, ``_warp_elastic``, compiled by XLA;
    - the affine map alone, TensorFlow's own image-transform kernel (the same sampling,
      tests/test_augment.py; 2.7x faster than ``_sample_bilinear`` op by op);
    - zoom without rotation, and shifts beyond ``MAX_SUMMED_SHIFT_PX``, ``_resample_separable``;
    - shifts alone (the default), ``_shift_bilinear``, compiled by XLA.
    """
    count = tf.shape(images)[0]
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))

    def uniform(limit: float, shape, key) -> tf.Tensor:
        return tf.random.stateless_uniform(shape, key, minval=-limit, maxval=limit)

    angle = uniform(math.radians(augment.rotation_deg), [count, 1, 1], seeds[0])
    zoom = 1.0 + uniform(augment.scale, [count, 1, 1], seeds[1])
    shift = uniform(augment.shift_px, [count, 1, 1, 2], seeds[2])
    axis_aligned = augment.elastic_px == 0 and augment.rotation_deg == 0
    if axis_aligned and augment.scale == 0 and augment.shift_px <= MAX_SUMMED_SHIFT_PX:
        return _shift_bilinear(images, shift, math.ceil(augment.shift_px))
    if axis_aligned:
        return _resample_separable(images, zoom, shift)
    if augment.elastic_px == 0:
        return _transform_affine(images, angle, zoom, shift)
    offsets = uniform(augment.elastic_px, [count, ELASTIC_GRID, ELASTIC_GRID, 2], seeds[3])
    return _warp_elastic(images, angle, zoom, shift, offsets, _bicubic_rows())


def _low_res(images: tf.Tensor, seed: tf.Tensor, augment: AugmentParams) -> tf.Tensor:
    """Replace a random ``augment.low_res_share`` of float32 (b, 28, 28) images with copies
    shrunk to ``augment.low_res_px`` pixels a side (averaged) and enlarged back (bicubic), the
    brightest pixel 1 again, as predict's framing makes it: the blur of a low-resolution scan or
    a soft photo, which normalising a picture cannot undo. Both resizes are linear along each
    axis: two products with one (28, 28) matrix, for the chosen images only."""
    matrix = _low_res_matrix(augment.low_res_px)

    def blur(picked: tf.Tensor) -> tf.Tensor:
        resized = tf.einsum("ij,bjk,lk->bil", matrix, picked, matrix)
        blurred = tf.clip_by_value(resized, 0, 1)
        return blurred / tf.maximum(tf.reduce_max(blurred, axis=[1, 2], keepdims=True), 1e-6)

    return _replace_share(images, seed, augment.low_res_share, blur)


def _thicken(images: tf.Tensor, seed: tf.Tensor, augment: AugmentParams) -> tf.Tensor:
    """Replace a random ``augment.thick_share`` of float32 (b, 28, 28) images with each pixel
    the brightest of the ``THICK_PEN`` square around it (2: the pixel and those right, below
    and below right): strokes about a pixel broader, as a marker or a bold pen writes them and
    as low-resolution handwriting keeps them (UCI's 8x8 digits are at MNIST's thickest;
    ``normalise_stroke_width`` thins only beyond that), half a pixel up and left."""

    def broaden(picked: tf.Tensor) -> tf.Tensor:
        # The maximum of the window's shifted copies: max_pool2d on one channel took 4x as long.
        rows, columns = IMAGE_SHAPE
        padded = tf.pad(picked, [[0, 0], [0, THICK_PEN - 1], [0, THICK_PEN - 1]])
        windows = [
            padded[:, down : down + rows, right : right + columns]
            for down in range(THICK_PEN)
            for right in range(THICK_PEN)
        ]
        return functools.reduce(tf.maximum, windows)

    return _replace_share(images, seed, augment.thick_share, broaden)


def _square(images: tf.Tensor, seed: tf.Tensor, augment: AugmentParams) -> tf.Tensor:
    """Replace a random ``augment.square_share`` of float32 (b, 28, 28) images with copies
    stretched along the shorter side of the digit's box until the box is square, as scanners
    that fit each digit to a square (UCI's 8x8 digits, USPS's 16x16) leave them: a 1 becomes a
    broad slanted bar. The box is where the ink is brighter than ``INK``; the stretched
    side keeps its centre, moved only as far as keeps the box in the image."""

    def stretch(picked: tf.Tensor) -> tf.Tensor:
        ink = picked > INK
        rows = _extent(tf.reduce_any(ink, axis=2))
        columns = _extent(tf.reduce_any(ink, axis=1))
        side = tf.maximum(rows[1] - rows[0], columns[1] - columns[0])
        return tf.einsum(
            "bik,bkl,bjl->bij",
            _stretch_tents(*rows, side),
            picked,
            _stretch_tents(*columns, side),
        )

    return _replace_share(images, seed, augment.square_share, stretch)


def _flag_ones(
    images: tf.Tensor, digits: tf.Tensor, seed: tf.Tensor, augment: AugmentParams
) -> tf.Tensor:
    """Replace a random ``augment.flag_share`` of the 1s among float32 (b, 28, 28) ``images``
    (``digits``: their classes, (b,)) with copies that have a flag from the top of the stem
    down to the left, as 1s are written in much of Europe (and by UCI's writers, whose flagged
    1s an MNIST model reads as 4s). The pen is as wide as the stem: its ink over its height."""
    angle_seed, length_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))

    def flag(ones: tf.Tensor) -> tf.Tensor:
        count = tf.shape(ones)[0]
        angle = tf.random.stateless_uniform(
            [count], angle_seed, *(math.radians(a) for a in FLAG_ANGLE_DEG)
        )
        ink = ones > INK
        top, bottom = _extent(tf.reduce_any(ink, axis=2))
        height = tf.maximum(bottom - top, 1.0)
        length = height * tf.random.stateless_uniform([count], length_seed, *FLAG_LENGTH)
        pen = tf.clip_by_value(
            tf.reduce_sum(tf.cast(ink, tf.float32), axis=[1, 2]) / height, 1, FLAG_MAX_PEN
        )
        row = top + pen / 2  # the flag starts in the middle of the stem's end
        stem_end = tf.cast(tf.minimum(row, IMAGE_SHAPE[0] - 1), tf.int32)
        inked = tf.cast(tf.gather(ink, stem_end, axis=1, batch_dims=1), tf.float32)
        column = tf.reduce_sum(inked * tf.range(IMAGE_SHAPE[1], dtype=tf.float32), axis=1) / (
            tf.maximum(tf.reduce_sum(inked, axis=1), 1.0)
        )
        end = (row + length * tf.sin(angle), column - length * tf.cos(angle))
        return tf.maximum(ones, _stroke((row, column), end, pen))

    is_one = tf.cast(digits, tf.int32) == 1
    return _replace_share(images, seed, augment.flag_share, flag, among=is_one)


def _stroke(start, end, pen: tf.Tensor) -> tf.Tensor:
    """(k, 28, 28): straight anti-aliased strokes from ``start`` to ``end`` ((row, column) of
    (k,) each), ``pen`` (k,) px wide: 1 up to half a pixel inside the pen's edge, 0 from half a
    pixel beyond it."""
    rows, columns = np.indices(IMAGE_SHAPE, dtype=np.float32)
    (row0, column0), (row1, column1) = (
        tuple(value[:, None, None] for value in point) for point in (start, end)
    )
    along_rows, along_columns = row1 - row0, column1 - column0
    squared_length = tf.maximum(along_rows**2 + along_columns**2, 1e-6)
    nearest = tf.clip_by_value(
        ((rows - row0) * along_rows + (columns - column0) * along_columns) / squared_length, 0, 1
    )  # how far along the segment the point nearest each pixel is
    distance = tf.sqrt(
        (rows - row0 - nearest * along_rows) ** 2
        + (columns - column0 - nearest * along_columns) ** 2
    )
    return tf.clip_by_value(pen[:, None, None] / 2 + 0.5 - distance, 0, 1)


def _extent(inked: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(first, last + 1) float32 (k,) positions of True along bool (k, 28); (0, 28) for none."""
    positions = tf.range(inked.shape[1], dtype=tf.float32)
    first = tf.reduce_min(tf.where(inked, positions, float(inked.shape[1])), axis=1)
    last = tf.reduce_max(tf.where(inked, positions, -1.0), axis=1)
    empty = last < first
    return tf.where(empty, 0.0, first), tf.where(empty, float(inked.shape[1]), last + 1)


def _stretch_tents(start: tf.Tensor, end: tf.Tensor, side: tf.Tensor) -> tf.Tensor:
    """(k, 28, 28): bilinear weights that map the span [start, end) of each image's axis onto a
    span ``side`` long around the same centre, kept inside the image."""
    size = IMAGE_SHAPE[0]
    zoom = (side / tf.maximum(end - start, 1.0))[:, None, None]
    centre = ((start + end) / 2)[:, None, None]
    half = (side / 2)[:, None, None]
    new_centre = tf.clip_by_value(centre, half, size - half)
    positions = tf.range(size, dtype=tf.float32) + 0.5  # pixel centres
    source = (positions[None, :, None] - new_centre) / zoom + centre - 0.5
    return tf.nn.relu(1 - tf.abs(tf.range(size, dtype=tf.float32)[None, None, :] - source))


def _replace_share(
    images: tf.Tensor, seed: tf.Tensor, share: float, change, among: tf.Tensor | None = None
) -> tf.Tensor:
    """float32 (b, 28, 28) ``images`` with a random ``share`` of them (of those where bool (b,)
    ``among`` is True, if given), drawn from ``seed``, replaced by ``change`` of them (a function
    of the chosen (k, 28, 28)); only those are computed."""
    draw = tf.random.stateless_uniform([tf.shape(images)[0]], seed)
    picked = draw < share if among is None else (draw < share) & among
    chosen = tf.where(picked)  # (k, 1) indices
    return tf.tensor_scatter_nd_update(images, chosen, change(tf.gather_nd(images, chosen)))


@functools.cache
def _low_res_matrix(side: int) -> np.ndarray:
    """(28, 28): row i holds the weights of the input rows in output row i of ``tf.image.resize``
    down to ``side`` rows ("area") and back to 28 ("bicubic"), read off by resizing the 28
    one-hot rows; computed once, eagerly, even when called while a dataset is traced."""
    with tf.init_scope():
        one_hot_rows = tf.eye(IMAGE_SHAPE[0])[:, :, None, None]  # (28 images, 28 rows, 1, 1)
        shrunk = tf.image.resize(one_hot_rows, [side, 1], method="area")
        enlarged = tf.image.resize(shrunk, [IMAGE_SHAPE[0], 1], method="bicubic")
        return tf.transpose(enlarged[:, :, 0, 0]).numpy()


def _source_grid(angle, zoom, shift) -> tuple[tf.Tensor, tf.Tensor]:
    """The inverse affine map: where in the input each output pixel comes from, (b, 28, 28)
    rows and columns."""
    rows, columns = IMAGE_SHAPE
    grid_y, grid_x = tf.meshgrid(
        tf.range(rows, dtype=tf.float32) - CENTRE[0],
        tf.range(columns, dtype=tf.float32) - CENTRE[1],
        indexing="ij",
    )
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    source_y = cos * grid_y - sin * grid_x + CENTRE[0] - shift[..., 0]
    source_x = sin * grid_y + cos * grid_x + CENTRE[1] - shift[..., 1]
    return source_y, source_x


@tf.function(jit_compile=True, autograph=False)
def _warp_elastic(images, angle, zoom, shift, offsets, bicubic_rows) -> tf.Tensor:
    """Sample ``images`` along the affine map plus the displacement field: ``offsets``
    (b, G, G, 2) resized bicubically to 28x28, as the two matrix products that resize is
    (``bicubic_rows`` from ``_bicubic_rows``; XLA has no kernel for the resize op). Compiled
    by XLA into a few fused loops: 1.3 ms a batch of 128 instead of 3.6 op by op."""
    source_y, source_x = _source_grid(angle, zoom, shift)
    field = tf.einsum("ik,bklc,jl->bijc", bicubic_rows, offsets, bicubic_rows)
    return _sample_bilinear(images, source_y + field[..., 0], source_x + field[..., 1])


def _bicubic_rows() -> tf.Tensor:
    """(28, G): the weight of each control point in each pixel row of a bicubic resize, read
    off ``tf.image.resize`` itself by resizing the G one-hot rows (constant along columns)."""
    one_hot_rows = tf.tile(tf.eye(ELASTIC_GRID)[:, :, None, None], [1, 1, ELASTIC_GRID, 1])
    resized = tf.image.resize(one_hot_rows, IMAGE_SHAPE, method="bicubic")  # (G, 28, 28, 1)
    return tf.transpose(resized[:, :, 0, 0])


@tf.function(jit_compile=True, autograph=False)
def _shift_bilinear(images, shift, reach: int) -> tf.Tensor:
    """The inverse map of ``distort_images`` for shifts alone, at most ``reach`` pixels: a
    pixel reads the input ``d`` rows up with the tent weight max(0, 1 - |d - shift|), so the
    image is a weighted sum of its (2 reach + 1)^2 whole-pixel shifts, which XLA fuses into one
    loop: 0.44 ms a batch of 250 at reach 1, against 1.1 for the separable products."""
    rows, columns = IMAGE_SHAPE
    padded = tf.pad(images, [[0, 0], [reach, reach], [reach, reach]])  # zeros beyond the edge
    offsets = range(-reach, reach + 1)
    column_weights = [tf.nn.relu(1 - tf.abs(right - shift[..., 1])) for right in offsets]
    moved = 0.0
    for down in offsets:
        row_weight = tf.nn.relu(1 - tf.abs(down - shift[..., 0]))
        for right, column_weight in zip(offsets, column_weights, strict=True):
            window = padded[
                :, reach - down : reach - down + rows, reach - right : reach - right + columns
            ]
            moved += row_weight * column_weight * window
    return moved


def _resample_separable(images, zoom, shift) -> tf.Tensor:
    """The inverse map of ``distort_images`` without rotation or field, which moves rows and
    columns independently: bilinear reading along each axis is a matrix of tent weights
    max(0, 1 - |k - source|) (zero beyond the edge), so the image is ``rows @ image @ columns^T``,
    two small batched matrix products instead of a gather per pixel."""
    rows, columns = IMAGE_SHAPE
    zoom = tf.reshape(zoom, [-1, 1, 1])

    def tents(size: int, centre: float, shift: tf.Tensor) -> tf.Tensor:
        positions = tf.range(size, dtype=tf.float32)[None, :, None]  # output pixel i
        source = (positions - centre) / zoom + centre - tf.reshape(shift, [-1, 1, 1])
        return tf.nn.relu(1 - tf.abs(tf.range(size, dtype=tf.float32)[None, None, :] - source))

    return tf.einsum(
        "bik,bkl,bjl->bij",
        tents(rows, CENTRE[0], shift[..., 0]),
        images,
        tents(columns, CENTRE[1], shift[..., 1]),
    )


def _transform_affine(images, angle, zoom, shift) -> tf.Tensor:
    """The inverse map of ``distort_images`` without a field, as the projective transform
    (x, y) -> (a0 x + a1 y + a2, b0 x + b1 y + b2) of TensorFlow's kernel; outside is 0."""
    cos = tf.reshape(tf.cos(angle) / zoom, [-1, 1])
    sin = tf.reshape(tf.sin(angle) / zoom, [-1, 1])
    shift_y, shift_x = tf.reshape(shift[..., 0], [-1, 1]), tf.reshape(shift[..., 1], [-1, 1])
    centre_y, centre_x = CENTRE
    transforms = tf.concat(
        [
            cos,
            sin,
            centre_x - cos * centre_x - sin * centre_y - shift_x,
            -sin,
            cos,
            centre_y + sin * centre_x - cos * centre_y - shift_y,
            tf.zeros_like(cos),
            tf.zeros_like(cos),
        ],
        axis=1,
    )
    moved = tf.raw_ops.ImageProjectiveTransformV3(
        images=images[..., None],
        transforms=transforms,
        output_shape=IMAGE_SHAPE,
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return moved[..., 0]


def _sample_bilinear(images: tf.Tensor, source_y: tf.Tensor, source_x: tf.Tensor) -> tf.Tensor:
    """Read ``images`` (b, h, w) at fractional positions (b, h, w); outside the image is 0."""
    rows, columns = IMAGE_SHAPE
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1]])  # a zero border to read beyond the edge
    flat = tf.reshape(padded, [tf.shape(images)[0], (rows + 2) * (columns + 2)])
    y = tf.clip_by_value(source_y + 1, 0, rows + 1)
    x = tf.clip_by_value(source_x + 1, 0, columns + 1)
    y0, x0 = tf.floor(y), tf.floor(x)
    weight_y, weight_x = y - y0, x - x0

    def pixel(row: tf.Tensor, column: tf.Tensor) -> tf.Tensor:
        row = tf.cast(tf.minimum(row, rows + 1), tf.int32)
        column = tf.cast(tf.minimum(column, columns + 1), tf.int32)
        index = tf.reshape(row * (columns + 2) + column, [tf.shape(images)[0], -1])
        return tf.reshape(tf.gather(flat, index, batch_dims=1), tf.shape(images))

    top = (1 - weight_x) * pixel(y0, x0) + weight_x * pixel(y0, x0 + 1)
    bottom = (1 - weight_x) * pixel(y0 + 1, x0) + weight_x * pixel(y0 + 1, x0 + 1)
    return (1 - weight_y) * top + weight_y * bottom
