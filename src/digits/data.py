"""Read MNIST's files into splits, turn them into model inputs, and store the arrays that
pass between stages.

Arrays are stored as ``.npy`` (deterministic bytes, loaded without pickle) in one directory per
split: ``x_<split>.npy`` float32 (n, 28, 28) in [0, 1] and ``y_<split>.npy`` uint8 (n,).
"""

from pathlib import Path

import numpy as np

from digits.errors import DigitsError
from digits.files import read_input_bytes, rerun_hint
from digits.idx import check_same_count, parse_idx_images, parse_idx_labels
from digits.mnist import IMAGE_SHAPE, N_CLASSES
from digits.params import DownloadParams, Params, validation_count

SPLITS = ("train", "validation", "test")


class ArraysError(DigitsError):
    """An array file between stages is missing or not what the producing stage writes."""


def scale_pixels(images: np.ndarray) -> np.ndarray:
    """Map uint8 pixels 0-255 to float32 0.0-1.0, same shape."""
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {images.dtype}")
    return images.astype(np.float32) / np.float32(255)


def split_train_validation(
    n_examples: int, validation_fraction: float, seed: int, source: str = "params.yaml"
) -> tuple[np.ndarray, np.ndarray]:
    """Return (train_indices, validation_indices): a seeded random partition of range(n);
    raise ``ParamsError`` naming ``source`` (the params file) if either would be empty."""
    n_validation = validation_count(n_examples, validation_fraction, source)
    order = np.random.default_rng(seed).permutation(n_examples)
    return np.sort(order[n_validation:]), np.sort(order[:n_validation])


def read_mnist(
    raw_dir: Path, download: DownloadParams, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (n, 28, 28), labels uint8 (n,)) for kind "train" or "test", as the
    download stage stored them under ``raw_dir``."""
    images_path = raw_dir / download.files[f"{kind}_images"].stored_name
    labels_path = raw_dir / download.files[f"{kind}_labels"].stored_name
    images = parse_idx_images(
        read_input_bytes(images_path, "download"), str(images_path), image_shape=IMAGE_SHAPE
    )
    labels = parse_idx_labels(read_input_bytes(labels_path, "download"), str(labels_path))
    check_same_count(images, labels, str(images_path), str(labels_path))
    return images, labels


def mnist_splits(
    raw_dir: Path, params: Params, source: str = "params.yaml"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The train, validation and test splits of the MNIST files under ``raw_dir``, by
    ``params.preprocess`` (``source``: the params file, named in errors), each as
    (images uint8 (n, 28, 28), labels uint8 (n,)) as MNIST has them, pixels unchanged."""
    train_images, train_labels = read_mnist(raw_dir, params.download, "train")
    train_index, validation_index = split_train_validation(
        len(train_images),
        params.preprocess.validation_fraction,
        params.preprocess.seed,
        source,
    )
    return {
        "train": (train_images[train_index], train_labels[train_index]),
        "validation": (train_images[validation_index], train_labels[validation_index]),
        "test": read_mnist(raw_dir, params.download, "test"),
    }


def save_split(directory: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """Write ``x_<split>.npy`` and ``y_<split>.npy`` under ``directory`` (the preprocess stage
    puts the whole directory in place atomically)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    for prefix, array in (("x", x), ("y", y)):
        np.save(Path(directory) / f"{prefix}_{split}.npy", array, allow_pickle=False)


def load_split(
    directory: Path, split: str, stage: str = "preprocess", may_be_empty: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Read a split written by ``save_split`` (by ``stage``): x float32 (n, 28, 28) in [0, 1],
    y uint8 (n,) of digits 0-9, both read-only, n >= 1 (n >= 0 if ``may_be_empty``: a person's
    own pictures).
    Anything else raises ``ArraysError`` naming the file and the stage that makes it: wrong data
    in the right format would otherwise train to nonsense."""
    x_path, y_path = Path(directory) / f"x_{split}.npy", Path(directory) / f"y_{split}.npy"
    x = _load_array(x_path, np.float32, (None, *IMAGE_SHAPE), stage)
    y = _load_array(y_path, np.uint8, (None,), stage)
    problem = _count_problem(x, y, x_path, y_path, may_be_empty)
    if not problem and len(x):
        problem = _pixel_problem(x, x_path) or _label_problem(y, y_path)
    if problem:
        raise ArraysError(f"{problem}; {rerun_hint(stage)}")
    return x, y


def own_count(n_train: int, n_own: int, share: float, batch_size: int) -> int:
    """How many own images an epoch mixes into ``n_train`` MNIST images: whole copies of the
    ``n_own`` pictures making about ``share`` x ``n_train`` (at least one when ``share`` > 0),
    then as many more as fill the epoch's last batch, since a smaller last batch makes XLA
    compile the training step a second time. 0 when ``share`` is 0 or there are no own
    pictures. A share rather than a count, so that a handful of pictures gets heard and
    thousands do not drown MNIST."""
    if share == 0 or n_own == 0:
        return 0
    whole_copies = max(1, round(share * n_train / n_own)) * n_own
    return whole_copies + (-(n_train + whole_copies)) % batch_size


def mix_in(
    train: tuple[np.ndarray, np.ndarray], extra: tuple[np.ndarray, np.ndarray], count: int
) -> tuple[np.ndarray, np.ndarray]:
    """``train`` (x (n, 28, 28), y (n,)) with ``count`` images of ``extra`` (x (m, 28, 28),
    y (m,)) appended, going through ``extra`` in order as many times as it takes. ``train``
    itself, untouched, when there is nothing to add, so that training without own pictures
    is exactly training without this step."""
    if count == 0 or len(extra[0]) == 0:
        return train
    picks = np.arange(count) % len(extra[0])
    x = np.concatenate([train[0], extra[0][picks]])
    y = np.concatenate([train[1], extra[1][picks]])
    return x, y


def _count_problem(
    x: np.ndarray, y: np.ndarray, x_path: Path, y_path: Path, may_be_empty: bool
) -> str | None:
    where, x_name, y_name = x_path.parent, x_path.name, y_path.name
    if len(x) != len(y):
        return f"{where}: {x_name} has {len(x)} images but {y_name} has {len(y)} labels"
    if len(x) == 0 and not may_be_empty:
        return f"{where}: {x_name} and {y_name} hold no images"
    return None


def _pixel_problem(x: np.ndarray, path: Path) -> str | None:
    """Why float32 images ``x`` are not scaled pixels (each in [0, 1], none NaN), or None."""
    if 0 <= x.min() and x.max() <= 1:  # NaN fails both comparisons
        return None
    bad = ~((x >= 0) & (x <= 1))
    image = int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
    value = x[image][bad[image]][0]
    return f"{path}: image {image} has a pixel value of {value}, expected values from 0 to 1"


def _label_problem(y: np.ndarray, path: Path) -> str | None:
    """Why uint8 labels ``y`` are not digits, or None."""
    if y.max() < N_CLASSES:
        return None
    index = int(np.argmax(y >= N_CLASSES))
    return f"{path}: label {y[index]} at index {index} is not a digit 0-{N_CLASSES - 1}"


def _load_array(path: Path, dtype: type, shape: tuple[int | None, ...], stage: str) -> np.ndarray:
    """Load ``path``; its dtype and shape must match (None: any length along that axis).
    Read-only and memory-mapped: the pages come from the file cache instead of a fresh copy
    (about 0.3 s less for the 170 MB of training images on this machine)."""
    rerun = rerun_hint(stage)
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except FileNotFoundError:
        raise ArraysError(f"{path}: missing; {rerun}") from None
    except (ValueError, OSError, EOFError) as error:
        raise ArraysError(f"{path}: not a readable .npy array ({error}); {rerun}") from None
    fits = array.ndim == len(shape) and all(
        want is None or got == want for got, want in zip(array.shape, shape, strict=True)
    )
    if array.dtype != dtype or not fits:
        sizes = ", ".join("n" if size is None else str(size) for size in shape)
        wanted = f"({sizes},)" if len(shape) == 1 else f"({sizes})"
        raise ArraysError(
            f"{path}: expected {np.dtype(dtype).name} of shape {wanted}, "
            f"got {array.dtype} {array.shape}; {rerun}"
        )
    return array
