"""Turn parsed MNIST into model inputs, and store the arrays that pass between stages.

Arrays are stored as ``.npy`` (deterministic bytes, loaded without pickle) in one directory per
split: ``x_<split>.npy`` float32 (n, 28, 28) in [0, 1] and ``y_<split>.npy`` uint8 (n,).
"""

from pathlib import Path

import numpy as np

from digits.errors import DigitsError
from digits.files import atomic_path, rerun_hint

SPLITS = ("train", "validation", "test")


class ArraysError(DigitsError):
    """An array file between stages is missing or not what the producing stage writes."""


def scale_pixels(images: np.ndarray) -> np.ndarray:
    """Map uint8 pixels 0-255 to float32 0.0-1.0, same shape."""
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {images.dtype}")
    return images.astype(np.float32) / np.float32(255)


def split_train_validation(
    n_examples: int, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (train_indices, validation_indices): a seeded random partition of range(n)."""
    n_validation = round(n_examples * validation_fraction)
    if not 0 < n_validation < n_examples:
        raise ValueError(
            f"validation_fraction {validation_fraction} of {n_examples} examples "
            "leaves an empty split"
        )
    order = np.random.default_rng(seed).permutation(n_examples)
    return np.sort(order[n_validation:]), np.sort(order[:n_validation])


def save_split(directory: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """Write ``x_<split>.npy`` and ``y_<split>.npy`` under ``directory``, each atomically."""
    for prefix, array in (("x", x), ("y", y)):
        with atomic_path(Path(directory) / f"{prefix}_{split}.npy") as tmp:
            with open(tmp, "wb") as stream:
                np.save(stream, array, allow_pickle=False)


def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a split written by ``save_split``; errors name the file and the stage that makes it."""
    x = _load_array(Path(directory) / f"x_{split}.npy", np.float32, ndim=3)
    y = _load_array(Path(directory) / f"y_{split}.npy", np.uint8, ndim=1)
    if len(x) != len(y):
        raise ArraysError(
            f"{directory}: x_{split}.npy has {len(x)} images but y_{split}.npy has "
            f"{len(y)} labels; {rerun_hint('preprocess')}"
        )
    return x, y


def _load_array(path: Path, dtype: type, ndim: int) -> np.ndarray:
    rerun = rerun_hint("preprocess")
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ArraysError(f"{path}: missing; {rerun}") from None
    except (ValueError, OSError, EOFError) as error:
        raise ArraysError(f"{path}: not a readable .npy array ({error}); {rerun}") from None
    if array.dtype != dtype or array.ndim != ndim:
        raise ArraysError(
            f"{path}: expected {np.dtype(dtype).name} with {ndim} dimensions, "
            f"got {array.dtype} {array.shape}; {rerun}"
        )
    return array
