"""Tests for digits/own.py: a labelled picture is filed under its label, named by its content."""

import io

import pytest
from PIL import Image, ImageDraw

from digits.errors import DigitsError
from digits.images import ImageError
from digits.own import content_name, file_picture


def seven_png(colour: int = 0) -> bytes:
    image = Image.new("L", (100, 120), 255)
    ImageDraw.Draw(image).line([(20, 20), (80, 20), (40, 100)], fill=colour, width=10)
    stream = io.BytesIO()
    image.save(stream, format="PNG")
    return stream.getvalue()


def test_a_picture_is_filed_under_its_label_by_content(tmp_path):
    data = seven_png()

    path = file_picture(data, 7, tmp_path / "own")

    assert path == tmp_path / "own" / "7" / f"{content_name(data)}.png"
    assert path.read_bytes() == data


def test_the_same_picture_twice_is_one_file_and_another_is_a_second(tmp_path):
    first = file_picture(seven_png(), 7, tmp_path)
    again = file_picture(seven_png(), 7, tmp_path)
    other = file_picture(seven_png(colour=60), 7, tmp_path)

    assert first == again != other
    assert sorted(p.name for p in (tmp_path / "7").iterdir()) == sorted([first.name, other.name])


def test_a_jpeg_keeps_its_suffix(tmp_path):
    stream = io.BytesIO()
    Image.open(io.BytesIO(seven_png())).save(stream, format="JPEG")

    assert file_picture(stream.getvalue(), 1, tmp_path).suffix == ".jpg"


@pytest.mark.parametrize("label", [-1, 10, "7", 7.0, True])
def test_a_label_that_is_not_a_digit_is_refused(tmp_path, label):
    with pytest.raises(DigitsError, match="label: expected a digit 0-9"):
        file_picture(seven_png(), label, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("data", [b"not a picture", b""])
def test_bytes_that_are_not_a_picture_are_refused_before_anything_is_written(tmp_path, data):
    with pytest.raises(ImageError, match="not an image"):
        file_picture(data, 3, tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_picture_without_a_digit_is_refused(tmp_path):
    stream = io.BytesIO()
    Image.new("L", (50, 50), 255).save(stream, format="PNG")
    with pytest.raises(ImageError, match="no digit"):
        file_picture(stream.getvalue(), 3, tmp_path)
    assert not any(tmp_path.iterdir())
