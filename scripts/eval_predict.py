"""Measure `digits predict`'s path on digit pictures drawn in real-world styles.

    python scripts/eval_predict.py [--count 300] [--model data/model.keras] [--style thin]
    python scripts/eval_predict.py --split validation --model A.keras  # to choose a model
    python scripts/eval_predict.py --source elsewhere [--count 300]
    python scripts/eval_predict.py --source uci --uci optdigits.tes --count 1797

A tool, not a test (it needs the trained model, and for ``--source mnist`` data/raw from
`dvc repro download`). ``mnist`` renders MNIST test digits as MNIST's files hold them, not
deskewed (validation digits with ``--split validation``, to choose between models without
looking at the test set), in the styles of ``STYLES`` below; ``elsewhere`` renders digits
that are not from MNIST (fonts and hand-drawn strokes, see digits/renderings.py) in the
styles of ``digits.renderings.STYLES``;
``uci`` enlarges real handwriting from elsewhere, UCI's "Optical Recognition of Handwritten
Digits" (its test file, 13 writers on NIST forms scanned to 8x8 blocks of 0-16:
``optdigits.tes`` from UCI, or the same 1,797 digits shipped in scikit-learn as
``sklearn/datasets/data/digits.csv.gz``), with blocky pixels in the styles of ``UCI_STYLES``,
then smoothly in those of ``digits.renderings`` (a marker, faint pencil, a photo, ...).
Each picture is written as a file, read back with predict's loader and preprocessing
(``load_grayscale``, ``mnist_frame``) and classified; prints the accuracy per style and overall.
"""

import argparse
import gzip
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from digits import renderings
from digits.data import mnist_splits, scale_pixels
from digits.errors import DigitsError
from digits.images import ImageError, load_grayscale, mnist_frame
from digits.params import load_params
from digits.paths import MODEL, PARAMS, RAW, in_project
from digits.stage import quiet_tensorflow, run_tool

LARGE_CANVAS = (1000, 800)  # width, height: a phone-photo crop with lots of margin
INK = (30, 60, 200)  # blue ballpoint
PAPER = (250, 240, 220)  # cream
PEN_CANVAS = (1400, 1000)  # width, height: room for a 560 px (20x) digit anywhere on it
# np.roll shifts that bring each neighbour (north, north-east, ... north-west) onto the pixel
NEIGHBOUR_SHIFTS = [(1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)]


def upscaled(digit: np.ndarray, factor: int) -> Image.Image:
    """The 28x28 uint8 digit (light on dark) enlarged ``factor`` times, smoothly."""
    size = 28 * factor
    return Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)


def black_on_white(digit, rng, path):
    Image.fromarray(255 - np.asarray(upscaled(digit, 4))).save(path.with_suffix(".png"))


def white_on_black_small(digit, rng, path):
    Image.fromarray(digit).save(path.with_suffix(".png"))  # as MNIST has it, 28x28


def colour_ink(digit, rng, path):
    alpha = np.asarray(upscaled(digit, 5), dtype=np.float32)[..., None] / 255
    rgb = np.asarray(INK) * alpha + np.asarray(PAPER) * (1 - alpha)
    Image.fromarray(rgb.round().astype(np.uint8)).save(path.with_suffix(".png"))


def transparent_background(digit, rng, path):
    ink = np.zeros((28 * 4, 28 * 4, 4), dtype=np.uint8)  # black, visible only through alpha
    ink[..., 3] = np.asarray(upscaled(digit, 4))
    Image.fromarray(ink).save(path.with_suffix(".png"))


def jpeg_75(digit, rng, path):
    image = Image.fromarray(255 - np.asarray(upscaled(digit, 4)))
    image.save(path.with_suffix(".jpg"), quality=75)


def large_off_centre(digit, rng, path):
    canvas = Image.new("L", LARGE_CANVAS, 255)
    drawn = Image.fromarray(255 - np.asarray(upscaled(digit, 8)))
    x = int(rng.integers(0, LARGE_CANVAS[0] - drawn.width))
    y = int(rng.integers(0, LARGE_CANVAS[1] - drawn.height))
    canvas.paste(drawn, (x, y))
    canvas.save(path.with_suffix(".png"))


def thick_upscaled(digit, rng, path):
    thick = upscaled(digit, 10).filter(ImageFilter.MaxFilter(9))  # ~1 px thicker at 28x28
    Image.fromarray(255 - np.asarray(thick)).save(path.with_suffix(".png"))


def slight_blur(digit, rng, path):
    blurred = upscaled(digit, 4).filter(ImageFilter.GaussianBlur(4))  # ~1 px at 28x28
    Image.fromarray(255 - np.asarray(blurred)).save(path.with_suffix(".png"))


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a bool (h, w) mask to 1 px wide, connected centre lines."""
    mask = np.pad(mask, 1)
    while True:
        changed = False
        for step in (0, 1):
            # neighbours p2..p9, clockwise from north, as Zhang and Suen number them
            p = [np.roll(mask, shift, axis=(0, 1)) for shift in NEIGHBOUR_SHIFTS]
            count = sum(n.astype(np.uint8) for n in p)
            transitions = sum((~p[i] & p[(i + 1) % 8]).astype(np.uint8) for i in range(8))
            if step == 0:
                kept_sides = ~(p[0] & p[2] & p[4]) & ~(p[2] & p[4] & p[6])
            else:
                kept_sides = ~(p[0] & p[2] & p[6]) & ~(p[0] & p[4] & p[6])
            removed = mask & (count >= 2) & (count <= 6) & (transitions == 1) & kept_sides
            changed |= bool(removed.any())
            mask = mask & ~removed
        if not changed:
            return mask[1:-1, 1:-1]


def pen_drawing(digit: np.ndarray, factor: int, pen: int) -> np.ndarray:
    """The digit redrawn ``factor`` times larger with a ``pen`` px (odd) pen: uint8, ink 255."""
    shape = np.asarray(upscaled(digit, factor)) >= 128
    centre_line = Image.fromarray(skeleton(shape).astype(np.uint8) * 255)
    return np.asarray(centre_line.filter(ImageFilter.MaxFilter(pen)))


def on_pen_canvas(ink: np.ndarray, rng) -> np.ndarray:
    """Place light-on-dark uint8 ``ink`` at a random spot of a ``PEN_CANVAS`` black canvas."""
    canvas = np.zeros(PEN_CANVAS[::-1], dtype=np.uint8)
    y = int(rng.integers(0, PEN_CANVAS[1] - ink.shape[0]))
    x = int(rng.integers(0, PEN_CANVAS[0] - ink.shape[1]))
    canvas[y : y + ink.shape[0], x : x + ink.shape[1]] = ink
    return canvas


def thin_pen_paint(digit, rng, path):
    """A paint program: a 3 px hard pen, digit ~400 px tall, black on white."""
    canvas = on_pen_canvas(pen_drawing(digit, 20, 3), rng)
    Image.fromarray(255 - canvas).save(path.with_suffix(".png"))


def thin_pen_medium(digit, rng, path):
    """A 3 px hard pen, digit ~240 px tall, black on white."""
    canvas = on_pen_canvas(pen_drawing(digit, 12, 3), rng)
    Image.fromarray(255 - canvas).save(path.with_suffix(".png"))


def fine_pen_photo(digit, rng, path):
    """A phone photo of a fine ballpoint: 5 px soft blue line, digit ~300 px tall, JPEG."""
    drawn = Image.fromarray(on_pen_canvas(pen_drawing(digit, 15, 5), rng))
    alpha = np.asarray(drawn.filter(ImageFilter.GaussianBlur(1)), np.float32)[..., None] / 255
    rgb = np.asarray(INK) * alpha + np.asarray(PAPER) * (1 - alpha)
    Image.fromarray(rgb.round().astype(np.uint8)).save(path.with_suffix(".jpg"), quality=85)


STYLES: dict[str, Callable] = {
    "black on white": black_on_white,
    "white on black 28x28": white_on_black_small,
    "RGB colour ink": colour_ink,
    "RGBA transparent": transparent_background,
    "JPEG quality 75": jpeg_75,
    "large canvas, off-centre": large_off_centre,
    "thick stroke, 10x": thick_upscaled,
    "slight blur": slight_blur,
    "thin pen 3 px, 20x": thin_pen_paint,
    "thin pen 3 px, 12x": thin_pen_medium,
    "fine pen 5 px, 15x, JPEG": fine_pen_photo,
}


def uci_blocky(factor: int, margin: int, dark_on_light: bool, suffix: str = ".png"):
    """A renderer of 8x8 0-16 ``digit``: enlarged ``factor`` times with blocky pixels, ``margin``
    blocks of paper around it, dark ink on light paper or light on dark."""

    def render(digit, rng, path):
        ink = (digit * 255 / UCI_MAX).round().astype(np.uint8)
        picture = np.pad(np.kron(ink, np.ones((factor, factor), np.uint8)), margin * factor)
        Image.fromarray(255 - picture if dark_on_light else picture).save(path.with_suffix(suffix))

    return render


UCI_MAX = 16  # a value: how many of the 4x4 pixels of the 32x32 bitmap under it were ink
UCI_STYLES: dict[str, Callable] = {
    "blocky 8x, dark on paper": uci_blocky(8, 0, True),
    "blocky 4x, light on dark": uci_blocky(4, 0, False),
    "blocky 20x, 2-block margin": uci_blocky(20, 2, True),
    "blocky 6x, 5-block margin": uci_blocky(6, 5, True),
    "blocky 8x, margin, JPEG": uci_blocky(8, 2, True, ".jpg"),
}


def read_optdigits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """UCI optdigits rows, gzipped or not: 64 block values 0-16, then the digit.
    Returns (n, 8, 8), (n,)."""
    expected = f"UCI optdigits rows (64 values 0-{UCI_MAX}, then a digit 0-9)"
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as lines:
            rows = np.loadtxt(lines, delimiter=",", dtype=np.int64, ndmin=2)
    except OSError as error:
        sys.exit(f"{path}: cannot read it ({error.strerror or error})")
    except ValueError:
        sys.exit(f"{path}: expected {expected}")
    if (
        rows.shape[1] != 65
        or rows.min() < 0
        or rows[:, :64].max() > UCI_MAX
        or rows[:, 64].max() > 9
    ):
        sys.exit(f"{path}: expected {expected}")
    return rows[:, :64].reshape(-1, 8, 8), rows[:, 64]


UCI_GLYPH = 128  # px a side: an 8x8 digit enlarged smoothly, as digits.renderings' glyphs are


def uci_glyph(digit: np.ndarray) -> np.ndarray:
    """An 8x8 0-16 ``digit`` as a light-on-dark uint8 glyph, enlarged smoothly (bicubic)."""
    small = Image.fromarray((digit * 255 / UCI_MAX).astype(np.float32))
    enlarged = small.resize((UCI_GLYPH, UCI_GLYPH), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(enlarged), 0, 255).round().astype(np.uint8)


def uci_pictures(args: argparse.Namespace) -> Iterator[tuple[str, list, np.ndarray]]:
    """(style, renderers, labels) for the first ``--count`` digits: per style of
    ``UCI_STYLES``, then enlarged smoothly and drawn in each of ``digits.renderings``' styles
    (its blocky scan aside: these digits are low-resolution already)."""
    if args.uci is None:
        sys.exit("--source uci needs --uci PATH: UCI's optdigits.tes or sklearn's digits.csv.gz")
    digits, labels = read_optdigits(args.uci)
    digits, labels = digits[: args.count], labels[: args.count]
    for name, render in UCI_STYLES.items():
        yield name, [partial(render, digit, None) for digit in digits], labels  # no randomness
    glyphs = [uci_glyph(digit) for digit in digits]
    for name, style in renderings.STYLES.items():
        if style is renderings.blocky_scan:
            continue
        rng = np.random.default_rng(args.seed)
        yield f"smooth, {name}", [partial(_save_style, style, g, rng) for g in glyphs], labels


def mnist_pictures(args: argparse.Namespace) -> Iterator[tuple[str, list, np.ndarray]]:
    """(style, renderers, labels) per MNIST style: each renderer writes one picture to a path."""
    # As MNIST has them, not as the preprocess stage deskews them: predict must do that itself.
    raw_dir = args.raw_dir or in_project(RAW, "--raw-dir")
    splits = mnist_splits(raw_dir, load_params(in_project(PARAMS)))
    digits, labels = splits[args.split]
    if args.count > len(digits):
        raise DigitsError(f"--count {args.count}: the {args.split} split has {len(digits)} digits")
    chosen = np.random.default_rng(args.seed).choice(len(digits), size=args.count, replace=False)
    for name, render in STYLES.items():
        rng = np.random.default_rng(args.seed)  # each style's own, so --style changes nothing
        yield name, [partial(render, digit, rng) for digit in digits[chosen]], labels[chosen]


def pictures_from_elsewhere(args: argparse.Namespace) -> Iterator[tuple[str, list, np.ndarray]]:
    """(style, renderers, labels) per style of digits.renderings: fonts and hand strokes."""
    for name, style in renderings.STYLES.items():
        rng = np.random.default_rng(args.seed)
        glyphs = [renderings.glyph(index, rng) for index in range(args.count)]
        labels = np.array([digit for digit, _ in glyphs])
        yield name, [partial(_save_style, style, ink, rng) for _, ink in glyphs], labels


def _save_style(style: Callable, ink: np.ndarray, rng, path: Path) -> None:
    picture, suffix = style(ink, rng)
    picture.save(path.with_suffix(suffix))


def predicted_digits(model, renderers: list, directory: Path) -> tuple[np.ndarray, int]:
    """Write each picture, read it back as predict does, classify: (digits (n,), unreadable)."""
    frames, failures = [], 0
    for index, render in enumerate(renderers):
        render(directory / str(index))
        path = next(directory.glob(f"{index}.*"))
        try:
            frames.append(mnist_frame(load_grayscale(path), str(path)))
        except ImageError as error:
            print(f"  {error}", file=sys.stderr)
            frames.append(np.zeros((28, 28), dtype=np.uint8))
            failures += 1
    return model.predict(scale_pixels(np.stack(frames)), verbose=0).argmax(axis=1), failures


def positive_int(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("mnist", "elsewhere", "uci"), default="mnist")
    parser.add_argument("--count", type=positive_int, default=300, help="digits per style")
    parser.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="MNIST digits to render (--source mnist); validation to choose between models",
    )
    parser.add_argument(
        "--raw-dir", type=Path, help=f"MNIST's files; default: {RAW} in the project"
    )
    parser.add_argument("--model", type=Path, help=f"default: {MODEL} in the project")
    parser.add_argument("--uci", type=Path, help="UCI optdigits file, for --source uci")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--style", default="", help="only styles whose name contains this")
    args = parser.parse_args()

    quiet_tensorflow()
    from digits.saving import load_model

    model_path = args.model or in_project(MODEL, "--model")
    model = load_model(model_path)
    print(f"{args.count} {args.source} digits per style, model {model_path}")
    sources = {"mnist": mnist_pictures, "elsewhere": pictures_from_elsewhere, "uci": uci_pictures}
    styles = sources[args.source](args)
    right = total = 0
    for name, renderers, labels in styles:
        if args.style not in name:
            continue
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            predicted, failures = predicted_digits(model, renderers, Path(tmp))
        accuracy = float(np.mean(predicted == labels))
        right, total = right + int(np.sum(predicted == labels)), total + len(labels)
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(labels)
        print(f"{name:32s} {accuracy:7.2%}  ({failures} unreadable, {elapsed_ms:5.1f} ms/image)")
    if total == 0:
        raise DigitsError(f"--style {args.style!r}: no {args.source} style's name contains it")
    print(f"{'overall':32s} {right / total:7.2%}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
