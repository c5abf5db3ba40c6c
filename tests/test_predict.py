"""Tests for stages/predict.py: output formats, --debug-dir, and bad input beside good input.

The model is a tiny one built here whose answer is worked out by hand (not data/model.keras,
which exists only after `dvc repro`): every input gets probability 27/36 = 0.75 for digit 3 and
1/36 for each other digit.
"""

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import predict
from digits.stage import run_stage
from digits.images import load_grayscale, mnist_frame

ROOT = Path(__file__).resolve().parents[1]
ANSWER = 3
CONFIDENCE = 27 / 36  # softmax of logits log(27) for digit 3 and 0 for the nine others


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A saved model that ignores its input: zero weights, output bias log(27) for digit 3."""
    import keras

    from digits.model import save_model

    model = keras.Sequential(
        [keras.Input(shape=(28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    kernel, bias = model.get_weights()
    bias[ANSWER] = np.log(27)
    model.set_weights([np.zeros_like(kernel), bias])
    model.optimizer.build(model.trainable_variables)  # saved as training leaves it
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(model, path)
    return path


@pytest.fixture
def seven(tmp_path) -> Path:
    """A black 7 drawn on white paper, 200x300."""
    image = Image.new("L", (200, 300), 255)
    ImageDraw.Draw(image).line([(40, 50), (160, 50), (80, 250)], fill=0, width=24)
    image.save(tmp_path / "seven.png")
    return tmp_path / "seven.png"


def run_predict(args: list, capsys) -> tuple[int, str, str]:
    """Run the stage as its command line would; return (exit status, stdout, stderr)."""
    try:
        run_stage(lambda: predict.main([str(arg) for arg in args]))
        status = 0
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


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


def test_debug_dir_holds_what_the_model_saw(model_path, seven, tmp_path, capsys):
    status, _, _ = run_predict(
        ["--model", model_path, "--debug-dir", tmp_path / "seen", seven], capsys
    )

    assert status == 0
    saved = np.asarray(Image.open(tmp_path / "seen" / "1-seven.png"))
    np.testing.assert_array_equal(saved, mnist_frame(load_grayscale(seven)))


def not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("shopping list")
    return tmp_path / "notes.png", "not an image"


def blank(tmp_path):
    Image.new("RGB", (300, 200), (250, 250, 245)).save(tmp_path / "blank.jpg")
    return tmp_path / "blank.jpg", "no digit found"


def decompression_bomb(tmp_path):
    """A PNG header claiming 100,000 x 100,000 pixels (10 GB decoded) in a few bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(data)
    return tmp_path / "bomb.png", "decompression bomb"


def missing(tmp_path):
    return tmp_path / "nowhere.png", "file not found"


@pytest.mark.parametrize("bad", [not_an_image, blank, decompression_bomb, missing])
def test_a_bad_image_is_named_and_the_good_ones_still_printed(
    bad, model_path, seven, tmp_path, capsys
):
    bad_path, reason = bad(tmp_path)

    status, out, err = run_predict(["--model", model_path, bad_path, seven], capsys)

    assert status == 1
    assert out == f"{seven}\t3\t0.7500\n"
    assert re.search(f"error: {re.escape(str(bad_path))}: .*{reason}", err)
    assert "1 of 2 images could not be classified" in err


def test_a_missing_model_says_how_to_make_it(seven, tmp_path, capsys):
    status, out, err = run_predict(["--model", tmp_path / "none.keras", seven], capsys)

    assert (status, out) == (1, "")
    assert f"{tmp_path / 'none.keras'}: model file missing" in err and "dvc repro train" in err


def test_a_corrupt_model_file_is_named(seven, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")

    status, out, err = run_predict(["--model", corrupt, seven], capsys)

    assert (status, out) == (1, "")
    assert f"{corrupt}: cannot load the model" in err


def test_image_errors_do_not_wait_for_tensorflow(tmp_path):
    bad_path, _ = not_an_image(tmp_path)
    script = (
        "import sys, predict\n"
        "from digits.stage import run_stage\n"
        f"try: run_stage(lambda: predict.main([{str(bad_path)!r}]))\n"
        "except SystemExit as exit: assert exit.code == 1\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "stages")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert "not an image" in done.stderr
