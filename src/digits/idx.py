"""Parse the IDX format MNIST is published in (http://yann.lecun.com/exdb/mnist/).

An IDX file is: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions,
each dimension as a big-endian uint32, then the values in C order.
"""

import math

import numpy as np

from digits.errors import DigitsError
from digits.mnist import N_CLASSES

UNSIGNED_BYTE = 0x08


class IdxError(DigitsError):
    """Bytes that are not the IDX file they claim to be."""


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Return the uint8 array stored in IDX ``data``; ``source`` names the file in errors."""
    if len(data) < 4:
        raise IdxError(f"{source}: {len(data)} bytes is too short for an IDX header")
    zero1, zero2, type_code, n_dims = data[:4]
    if zero1 != 0 or zero2 != 0:
        raise IdxError(
            f"{source}: bad IDX magic number {data[:4].hex()} "
            "(expected 0000 then type and dimension count)"
        )
    if type_code != UNSIGNED_BYTE:
        raise IdxError(f"{source}: IDX type code 0x{type_code:02x}, expected 0x08 (unsigned byte)")
    if n_dims == 0:
        raise IdxError(f"{source}: IDX header declares 0 dimensions")
    header_size = 4 + 4 * n_dims
    if len(data) < header_size:
        raise IdxError(f"{source}: truncated IDX header ({len(data)} bytes, need {header_size})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=n_dims, offset=4))
    expected_size = header_size + math.prod(shape)  # Python ints: int64 would wrap around
    if len(data) != expected_size:
        raise IdxError(
            f"{source}: header says shape {shape} ({expected_size} bytes in all) "
            f"but the file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def parse_idx_images(
    data: bytes, source: str = "<bytes>", image_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Return images as uint8 (n, rows, cols) from IDX ``data``, each ``image_shape`` if given."""
    images = parse_idx(data, source)
    if images.ndim != 3:
        raise IdxError(
            f"{source}: expected 3 dimensions (count, rows, columns) for images, "
            f"got shape {images.shape}"
        )
    if image_shape is not None and images.shape[1:] != tuple(image_shape):
        raise IdxError(
            f"{source}: images are {images.shape[1]}x{images.shape[2]}, expected "
            f"{image_shape[0]}x{image_shape[1]}"
        )
    return images


def parse_idx_labels(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Return labels as uint8 (n,) from IDX ``data``; every label must be a digit 0-9."""
    labels = parse_idx(data, source)
    if labels.ndim != 1:
        raise IdxError(f"{source}: expected 1 dimension for labels, got shape {labels.shape}")
    if labels.size and labels.max() >= N_CLASSES:
        bad = int(np.argmax(labels >= N_CLASSES))
        raise IdxError(f"{source}: label {labels[bad]} at index {bad} is not a digit 0-9")
    return labels


def check_same_count(
    images: np.ndarray, labels: np.ndarray, images_source: str, labels_source: str
) -> None:
    """Raise unless there is exactly one label per image."""
    if len(images) != len(labels):
        raise IdxError(
            f"{images_source} has {len(images)} images but {labels_source} has "
            f"{len(labels)} labels"
        )


def encode_idx(array: np.ndarray) -> bytes:
    """Return uint8 ``array`` as IDX bytes (the inverse of ``parse_idx``; tests build fixtures)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, UNSIGNED_BYTE, array.ndim])
    return header + np.asarray(array.shape, dtype=">u4").tobytes() + array.tobytes()
