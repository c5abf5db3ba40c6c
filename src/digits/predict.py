r"""Classify your own digit pictures with the trained model: one line per image, or JSON.

    digits predict [--model data/model.keras] [--json] [--debug-dir DIR] IMAGE...

Prints PATH<TAB>DIGIT<TAB>CONFIDENCE per image (confidence: the probability, 0-1). In PATH a
backslash, and any character that is not printable (tab, newline, other control characters,
bytes that are not UTF-8), is escaped as Python writes it in a string: \\, \t, \n, \x1b,
\udcff; so each image is one line of three fields. --json gives the name as it is, in JSON's
own escaping, unless it holds bytes that are not UTF-8, which JSON cannot: then as the text
output escapes it. An image that cannot be read (missing, unreadable, or not a regular file: a FIFO
or device is refused without reading it) or holds no digit gets one `error:` line on stderr
naming it the same way; the others are still classified, and the exit status is 1. Any size,
polarity, RGB(A), transparency, PNG/JPEG/...: see src/digits/images.py.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from digits.data import scale_pixels
from digits.errors import DigitsError
from digits.files import atomic_path
from digits.images import ImageError, picture_frame, printable_path
from digits.mnist import N_CLASSES
from digits.paths import MODEL, in_project

log = logging.getLogger("predict")

PROBABILITY_DIGITS = 6  # in --json; the text output's confidence has 4


def read_frames(paths: list[Path]) -> list[tuple[Path, np.ndarray]]:
    """Return (path, uint8 (28, 28) model input) for every readable digit picture; print one
    error line on stderr for each one that is not."""
    frames = []
    for path in paths:
        try:
            frames.append((path, picture_frame(path)))
        except ImageError as error:
            print(f"error: {error}", file=sys.stderr)
        except Exception as error:  # a bug must not cost the other pictures their answers
            kind = type(error).__name__
            print(
                f"error: {printable_path(path)}: cannot classify ({kind}: {error})",
                file=sys.stderr,
            )
    return frames


def write_debug_frames(frames: list[tuple[Path, np.ndarray]], directory: Path) -> None:
    """Save what the model saw as ``<n>-<name>.png``, n = the image's line in the output."""
    for index, (path, frame) in enumerate(frames, start=1):
        with atomic_path(directory / f"{index}-{path.stem}.png") as tmp:
            Image.fromarray(frame).save(tmp, format="PNG")


def format_results(paths: list[Path], probabilities: np.ndarray, as_json: bool) -> str:
    """Text lines PATH<TAB>DIGIT<TAB>CONFIDENCE, or a JSON list; probabilities (n, 10)."""
    digits = probabilities.argmax(axis=1)
    if not as_json:
        return "".join(
            f"{printable_path(path)}\t{digit}\t{p[digit]:.4f}\n"
            for path, digit, p in zip(paths, digits, probabilities, strict=True)
        )
    results = [
        {
            "path": _json_name(path),
            "digit": int(digit),
            "confidence": round(float(p[digit]), PROBABILITY_DIGITS),
            "probabilities": [round(float(x), PROBABILITY_DIGITS) for x in p],
        }
        for path, digit, p in zip(paths, digits, probabilities, strict=True)
    ]
    return json.dumps(results, indent=2) + "\n"


def _json_name(path: Path) -> str:
    name = str(path)
    try:
        name.encode("utf-8")  # bytes that are not UTF-8 come from the OS as lone surrogates
    except UnicodeEncodeError:
        return printable_path(path)
    return name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    parser.add_argument(
        "--model", type=Path, help=f"the trained model (default: {MODEL} in the project)"
    )
    parser.add_argument("--json", action="store_true", help="a JSON list with all probabilities")
    parser.add_argument("--debug-dir", type=Path, help="write the 28x28 inputs here as PNG")


def check_debug_dir(directory: Path | None) -> None:
    """Make ``--debug-dir``, or refuse it (not a directory, cannot be made), before any work."""
    if directory is None:
        return
    if directory.exists() and not directory.is_dir():
        raise DigitsError(f"{printable_path(directory)}: --debug-dir is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DigitsError(
            f"{printable_path(directory)}: cannot make --debug-dir ({error.strerror or error})"
        ) from None


def run(args: argparse.Namespace) -> None:
    check_debug_dir(args.debug_dir)
    frames = read_frames(args.images)  # before the model: image errors need no TensorFlow
    failed = len(args.images) - len(frames)
    if frames:
        from digits.saving import load_model

        model = load_model(args.model or in_project(MODEL, "--model"))
        paths, pixels = zip(*frames, strict=True)
        probabilities = model.predict(scale_pixels(np.stack(pixels)), verbose=0)
        sys.stdout.write(format_results(list(paths), probabilities, args.json))
        if args.debug_dir is not None:
            write_debug_frames(frames, args.debug_dir)
            log.info("wrote %d model inputs (28x28 PNG) to %s", len(frames), args.debug_dir)
    elif args.json:  # still a JSON document for whatever reads it
        sys.stdout.write(format_results([], np.zeros((0, N_CLASSES)), as_json=True))
    if failed:
        raise DigitsError(f"{failed} of {len(args.images)} images could not be classified")
