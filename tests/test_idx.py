import re

import numpy as np
import pytest

from digits.idx import (
    IdxError,
    check_same_count,
    encode_idx,
    parse_idx,
    parse_idx_images,
    parse_idx_labels,
)


def test_parses_header_and_values_worked_out_by_hand():
    data = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    array = parse_idx(data)
    assert array.dtype == np.uint8
    assert array.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_encode_then_parse_round_trips():
    images = np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28).astype(np.uint8)
    assert np.array_equal(parse_idx_images(encode_idx(images), image_shape=(28, 28)), images)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x00", "too short for an IDX header"),
        (bytes([0x1F, 0x8B, 0x08, 0x00]) + b"\x00" * 8, "bad IDX magic number 1f8b0800"),
        (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\x00" * 4, "type code 0x0d, expected 0x08"),
        (bytes([0, 0, 0x08, 0]), "declares 0 dimensions"),
        (bytes([0, 0, 0x08, 3, 0, 0, 0, 1]), "truncated IDX header"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2, 3]), "header says shape (5,)"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 1, 2]), "but the file has 10 bytes"),
    ],
)
def test_malformed_idx_is_rejected_with_the_reason(data, expected):
    with pytest.raises(IdxError, match="^train.idx: .*" + re.escape(expected)):
        parse_idx(data, "train.idx")


def test_images_need_three_dimensions():
    with pytest.raises(IdxError, match="expected 3 dimensions"):
        parse_idx_images(encode_idx(np.zeros((4, 28), np.uint8)), "x")


def test_images_of_the_wrong_size_are_rejected():
    with pytest.raises(IdxError, match="images are 27x28, expected 28x28"):
        parse_idx_images(encode_idx(np.zeros((1, 27, 28), np.uint8)), "x", image_shape=(28, 28))


def test_labels_must_be_digits():
    with pytest.raises(IdxError, match="label 12 at index 2 is not a digit 0-9"):
        parse_idx_labels(encode_idx(np.array([0, 9, 12], np.uint8)), "y")


def test_labels_need_one_dimension():
    with pytest.raises(IdxError, match="expected 1 dimension"):
        parse_idx_labels(encode_idx(np.zeros((2, 2), np.uint8)), "y")


def test_image_and_label_counts_must_agree():
    with pytest.raises(IdxError, match="x has 3 images but y has 2 labels"):
        check_same_count(np.zeros((3, 28, 28)), np.zeros(2), "x", "y")


def test_dimensions_whose_product_overflows_int64_are_refused():
    # 65536^4 = 2^64 wraps around to 0 in int64, which an empty body would then match
    header = bytes([0, 0, 0x08, 4]) + np.array([2**16] * 4, ">u4").tobytes()
    with pytest.raises(
        IdxError, match=r"\(18446744073709551636 bytes in all\) but the file has 20"
    ):
        parse_idx(header)
