"""Property-based tests of the picture path: whatever the bytes or pixels, `digits predict`'s
loader and normalisation give a 28x28 input or the project's own error, nothing else."""

import io

import numpy as np
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from digits.images import ImageError, load_grayscale, mnist_frame

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORMATS = ["PNG", "GIF", "BMP", "TIFF", "JPEG", "WEBP"]
LOSSLESS = ("PNG", "BMP", "TIFF")  # GIF keeps a grey picture exactly, not a colour one

pictures = arrays(
    np.uint8,
    st.tuples(st.integers(1, 60), st.integers(1, 60)),
    elements=st.integers(0, 255),
)


@FAST
@given(pictures)
def test_any_grey_picture_is_an_input_or_no_digit(gray):
    try:
        frame = mnist_frame(gray, "picture")
    except ImageError as error:
        assert str(error).startswith("picture: ")
        return
    assert frame.shape == (28, 28) and frame.dtype == np.uint8
    assert frame.max() == 255  # scaled so the brightest pixel is full ink


def encoded(gray: np.ndarray, file_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format=file_format)
    return buffer.getvalue()


picture_files = st.builds(encoded, pictures, st.sampled_from(["PNG", "GIF", "BMP", "JPEG"]))


@FAST
@given(
    st.binary(max_size=2000)
    | picture_files
    | st.builds(lambda data, keep: data[: int(len(data) * keep)], picture_files, st.floats(0, 1)),
    st.sampled_from([".png", ".jpg", ".gif", ""]),
)
def test_any_bytes_are_a_picture_or_one_error_naming_the_file(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"picture{suffix}"
    path.write_bytes(data)
    try:
        gray = load_grayscale(path)
    except ImageError as error:
        event("refused")
        assert str(error).startswith(f"{path}: ")
        return
    event("read")
    assert gray.ndim == 2 and gray.dtype == np.uint8


@FAST
@given(pictures, st.sampled_from(FORMATS), st.sampled_from(["L", "RGB", "RGBA", "P", "LA"]))
def test_any_encoded_picture_is_read_back(tmp_path_factory, gray, file_format, mode):
    buffer = io.BytesIO()
    try:
        Image.fromarray(gray).convert(mode).save(buffer, format=file_format)
    except (OSError, KeyError, ValueError):  # a mode the format cannot store (JPEG and P)
        reject()
    path = tmp_path_factory.mktemp("encoded") / f"picture.{file_format.lower()}"
    path.write_bytes(buffer.getvalue())
    read = load_grayscale(path)
    if file_format in LOSSLESS and mode in ("L", "RGB", "RGBA", "LA"):
        np.testing.assert_array_equal(read, gray)  # every grey level, in place
    else:
        assert read.shape == gray.shape
    try:
        mnist_frame(read, str(path))
    except ImageError as error:
        assert str(error).startswith(f"{path}: ")
