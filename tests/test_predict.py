"""Tests for digits/predict.py (`digits predict`): output formats, --debug-dir, bad input
beside good input, and names that would break the output.

The model is a tiny one built here whose answer is worked out by hand (not data/model.keras,
which exists only after `dvc repro`): every input gets probability 27/36 = 0.75 for digit 3 and
1/36 for each other digit.
"""

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CONSTANT_ANSWER, band_probabilities, png_bytes
from PIL import Image, ImageDraw

from digits.cli import main
from digits.images import load_grayscale, mnist_frame

ANSWER = CONSTANT_ANSWER
CONFIDENCE = 27 / 36  # softmax of logits log(27) for digit 3 and 0 for the nine others


def draw_seven(path: Path) -> Path:
    """A black 7 drawn on white paper, 200x300, saved at ``path``."""
    image = Image.new("L", (200, 300), 255)
    ImageDraw.Draw(image).line([(40, 50), (160, 50), (80, 250)], fill=0, width=24)
    image.save(path, format="PNG")
    return path


@pytest.fixture
def seven(tmp_path) -> Path:
    return draw_seven(tmp_path / "seven.png")


def run_predict(args: list, capsys) -> tuple[int, str, str]:
    """Run `digits predict ARGS` in this process; return (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_one_tab_separated_line_per_image(model_path, seven, tmp_path, capsys):
    other = tmp_path / "copy.jpg"
    Image.open(seven).save(other)

    status, out, _ = run_predict(["--model", model_path, seven, other], capsys)

    assert status == 0
    assert out == f"{seven}\t3\t0.7500\n{other}\t3\t0.7500\n"


def test_json_lists_every_probability(model_path, seven, capsys):
    status, out, _ = run_predict(["--model", model_path, "--json", seven], capsys)

    assert status == 0
    [result] = json.loads(out)
    assert result["path"] == str(seven) and result["digit"] == ANSWER
    assert result["confidence"] == pytest.approx(CONFIDENCE, abs=1e-6)
    assert result["probabilities"] == pytest.approx(
        [CONFIDENCE if d == ANSWER else 1 / 36 for d in range(10)], abs=1e-6
    )


def test_the_model_gets_the_frame_scaled_as_in_training(band_model_path, seven, capsys):
    """A model whose answer depends on every pixel: its probabilities are those of the frame
    `mnist_frame` makes, scaled to 0-1, and of nothing else."""
    status, out, _ = run_predict(["--model", band_model_path, "--json", seven], capsys)

    frame = mnist_frame(load_grayscale(seven))
    expected = band_probabilities(frame)
    assert status == 0 and expected.max() - expected.min() > 0.1  # the bands differ
    assert json.loads(out)[0]["probabilities"] == pytest.approx(expected.tolist(), abs=2e-6)


def test_debug_dir_holds_what_the_model_saw(model_path, seven, tmp_path, capsys):
    status, _, _ = run_predict(
        ["--model", model_path, "--debug-dir", tmp_path / "seen", seven], capsys
    )

    assert status == 0
    saved = np.asarray(Image.open(tmp_path / "seen" / "1-seven.png"))
    np.testing.assert_array_equal(saved, mnist_frame(load_grayscale(seven)))


def test_a_debug_dir_that_is_a_file_is_one_error_before_any_work(
    model_path, seven, tmp_path, capsys
):
    taken = tmp_path / "taken"
    taken.write_text("keep me")

    status, out, err = run_predict(["--model", model_path, "--debug-dir", taken, seven], capsys)

    assert (status, out) == (1, "")
    assert err == f"error: {taken}: --debug-dir is not a directory\n"
    assert taken.read_text() == "keep me"


def test_a_debug_dir_that_cannot_be_made_is_one_error_before_any_work(
    model_path, seven, tmp_path, capsys, monkeypatch
):
    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(Path, "mkdir", read_only)
    status, out, err = run_predict(
        ["--model", model_path, "--debug-dir", tmp_path / "seen", seven], capsys
    )

    assert (status, out) == (1, "")
    assert err == f"error: {tmp_path / 'seen'}: cannot make --debug-dir (Read-only file system)\n"


@pytest.mark.parametrize(
    ("name", "shown"),
    [("tab\there.png", "tab\\there.png"), ("two\nlines.png", "two\\nlines.png")],
)
def test_a_name_with_a_tab_or_newline_stays_one_line_of_three_fields(
    name, shown, model_path, tmp_path, capsys
):
    path = draw_seven(tmp_path / name)

    status, out, _ = run_predict(["--model", model_path, path, "--json"], capsys)
    assert status == 0 and json.loads(out)[0]["path"] == str(path)  # JSON keeps the real name

    status, out, _ = run_predict(["--model", model_path, path], capsys)
    assert status == 0
    assert out.splitlines() == [f"{tmp_path}/{shown}\t3\t0.7500"]


def test_a_name_that_is_not_utf8_is_escaped_in_json_as_in_text(model_path, tmp_path, capsys):
    path = draw_seven(Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.png")))  # Latin-1

    status, out, _ = run_predict(["--model", model_path, path, "--json"], capsys)
    shown = json.loads(out)[0]["path"]
    assert status == 0 and shown == f"{tmp_path}/caf\\udce9.png"
    shown.encode("utf-8")  # no lone surrogate, which strict JSON parsers refuse

    status, out, _ = run_predict(["--model", model_path, path], capsys)
    assert out.split("\t")[0] == shown


def test_a_bad_name_with_a_newline_is_one_error_line(model_path, seven, tmp_path, capsys):
    bad = tmp_path / "no\nimage.png"
    bad.write_text("shopping list")

    status, out, err = run_predict(["--model", model_path, bad, seven], capsys)

    assert status == 1 and out == f"{seven}\t3\t0.7500\n"
    assert err.splitlines()[0] == f"error: {tmp_path}/no\\nimage.png: not an image " + (
        "(expected one of PNG, JPEG, GIF, BMP, TIFF, WEBP)"
    )


def not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("shopping list")
    return tmp_path / "notes.png", "not an image"


def blank(tmp_path):
    Image.new("RGB", (300, 200), (250, 250, 245)).save(tmp_path / "blank.jpg")
    return tmp_path / "blank.jpg", "no digit found"


def decompression_bomb(tmp_path):
    """A PNG header claiming 100,000 x 100,000 pixels (10 GB decoded) in a few bytes."""
    (tmp_path / "bomb.png").write_bytes(png_bytes(100_000, 100_000, b""))
    return tmp_path / "bomb.png", "decompression bomb"


def missing(tmp_path):
    return tmp_path / "nowhere.png", "file not found"


def fifo(tmp_path):
    """A named pipe with no writer: opening it plainly for reading would wait forever."""
    os.mkfifo(tmp_path / "pipe.png")
    return tmp_path / "pipe.png", r"not a regular file \(a FIFO"


def directory(tmp_path):
    (tmp_path / "folder.png").mkdir()
    return tmp_path / "folder.png", r"not a regular file \(a directory"


def device(tmp_path):
    return Path("/dev/zero"), r"not a regular file \(a character device"  # endless if read


@pytest.mark.parametrize(
    "bad", [not_an_image, blank, decompression_bomb, missing, fifo, directory, device]
)
def test_a_bad_image_is_named_and_the_good_ones_still_printed(
    bad, model_path, seven, tmp_path, capsys
):
    bad_path, reason = bad(tmp_path)

    status, out, err = run_predict(["--model", model_path, bad_path, seven], capsys)

    assert status == 1
    assert out == f"{seven}\t3\t0.7500\n"
    [line] = [
        line for line in err.splitlines() if line.startswith("error: ") and "of 2" not in line
    ]
    assert re.fullmatch(f"error: {re.escape(str(bad_path))}: .*{reason}.*", line)
    assert "error: 1 of 2 images could not be classified" in err


def test_json_is_an_empty_list_when_no_image_can_be_classified(model_path, tmp_path, capsys):
    status, out, _ = run_predict(
        ["--json", "--model", model_path, tmp_path / "missing.png"], capsys
    )

    assert status == 1
    assert json.loads(out) == []


def test_pictures_from_random_arrays_are_each_classified_or_named(model_path, tmp_path, capsys):
    """Random sizes, random grey levels, with and without a gradient under them: each gets
    exactly one line, on stdout or as an error, and the count of errors matches."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(12):
        height, width = rng.integers(1, 90, size=2)
        pixels = rng.integers(0, 256, (height, width)) + rng.integers(-100, 100) * np.linspace(
            0, 1, width
        )
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(paths[-1])

    status, out, err = run_predict(["--model", model_path, *paths], capsys)

    printed = [line.split("\t")[0] for line in out.splitlines()]
    errors = [line for line in err.splitlines() if not re.match(r"error: \d+ of 12 images", line)]
    refused = [re.match(r"error: (.*?): ", line)[1] for line in errors]
    assert sorted(printed + refused) == sorted(map(str, paths))
    assert "Traceback" not in err
    assert status == (1 if refused else 0)


def test_a_missing_model_is_named(seven, tmp_path, capsys):
    status, out, err = run_predict(["--model", tmp_path / "none.keras", seven], capsys)

    assert (status, out) == (1, "")
    assert f"{tmp_path / 'none.keras'}: model file missing; check the path" in err


def test_a_corrupt_model_file_is_named(seven, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")

    status, out, err = run_predict(["--model", corrupt, seven], capsys)

    assert (status, out) == (1, "")
    assert f"{corrupt}: cannot load the model" in err


@pytest.mark.integration
def test_image_errors_do_not_wait_for_tensorflow(tmp_path):
    bad_path, _ = not_an_image(tmp_path)
    script = (
        "import sys\n"
        "from digits.cli import main\n"
        f"try: main(['predict', {str(bad_path)!r}])\n"
        "except SystemExit as exit: assert exit.code == 1, exit.code\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert "not an image" in done.stderr
