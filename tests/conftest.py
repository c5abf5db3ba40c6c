"""Shared fixtures: tiny MNIST-like IDX files built here (never downloaded), and one copy of the
project that has run the whole pipeline on them, shared by the tests that need DVC."""

import copy
import dataclasses
import gzip
import hashlib
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
import yaml
from hypothesis import settings

from digits.idx import encode_idx
from digits.params import NO_AUGMENT, TrainParams

# Property-based tests draw the same examples every run, so CI is as reproducible as the
# pipeline; to explore further, run pytest with --hypothesis-seed=N.
settings.register_profile("reproducible", derandomize=True)
settings.load_profile("reproducible")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The `digits` console script of the interpreter running the tests (not necessarily on PATH).
DIGITS = str(Path(sys.executable).parent / "digits")


def tiny_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return n uint8 (28, 28) images whose label is readable from them: a bright bar in the
    row band of the digit, so a tiny model can learn it in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images, labels


def tiny_mnist_files(n_train: int = 200, n_test: int = 50) -> dict[str, bytes]:
    """The four MNIST files' decompressed IDX bytes, keyed like params.yaml download.files."""
    train_images, train_labels = tiny_digits(n_train, seed=1)
    test_images, test_labels = tiny_digits(n_test, seed=2)
    arrays = {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
    return {key: encode_idx(array) for key, array in arrays.items()}


TINY = TrainParams(
    seed=7,
    hidden_units=(8, 4),
    dropout=(0.5, 0.0),
    max_norm=0.0,
    learning_rate=0.01,
    lr_schedule="cosine",
    warmup_epochs=0,
    weight_decay=0.0,
    label_smoothing=0.0,
    ema_momentum=0.0,
    batch_size=16,
    epochs=2,
    steps_per_execution=2,
    jit_compile=False,
    compiled_loop=False,
    precision="float32",
    augment=NO_AUGMENT,
    own_share=0.0,
)
# Every option on at once: XLA, warm-up, AdamW, max-norm, one-hot labels, augmentation (low-res
# blur and broader strokes too), weight averaging.
ALL_OPTIONS = dataclasses.replace(
    TINY,
    jit_compile=True,
    warmup_epochs=1,
    weight_decay=0.01,
    max_norm=3.0,
    label_smoothing=0.1,
    ema_momentum=0.9,
    augment=dataclasses.replace(
        NO_AUGMENT,
        shift_px=2,
        rotation_deg=10,
        scale=0.1,
        elastic_px=1.5,
        low_res_share=0.5,
        thick_share=0.5,
        square_share=0.5,
        flag_share=0.5,
    ),
)


def random_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.uint8)


def slant(images: np.ndarray) -> np.ndarray:
    """Columns per row of each (n, h, w) image's ink's least-squares slant: what deskewing
    shears away, measured here apart from digits.deskew."""
    ink = images.astype(np.float64)
    rows, columns = np.indices(images.shape[1:])
    mass = ink.sum(axis=(1, 2))
    centre_row = (ink * rows).sum(axis=(1, 2)) / mass
    centre_column = (ink * columns).sum(axis=(1, 2)) / mass
    below = rows - centre_row[:, None, None]
    covariance = (ink * below * (columns - centre_column[:, None, None])).sum(axis=(1, 2))
    return covariance / (ink * below**2).sum(axis=(1, 2))


def scaled(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return images.astype(np.float32) / 255, labels


def trained(params: TrainParams, callbacks: tuple = (), data=None) -> tuple:
    """(model, history) after training on 64 random images in batches of 16 (4 steps an
    epoch), validating on 32; or on ``data`` = (train, validation)."""
    from digits.model import build_model, train_model

    train, validation = data or (random_data(64, 1), random_data(32, 2))
    model = build_model(params, n_train=len(train[0]))
    history = train_model(model, train, validation, params, callbacks=list(callbacks), verbose=0)
    return model, history.history


STAGES = ("download", "preprocess", "own_version", "own", "train", "evaluate")
# own_version looks for data/own.dvc on every run (dvc.yaml: always_changed), so a `dvc repro`
# with nothing to do still runs it and `dvc status` still lists it; nothing downstream reruns.
ALWAYS_RUN = ["own_version"]
NOTHING_CHANGED = {"own_version": ["always changed"]}  # `dvc status --json`: all up to date
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]


def git(repo: Path, *args: str) -> str:
    """``git ARGS`` in ``repo`` as a test user; its output without the last newline (porcelain
    lines keep their leading space); an error fails the test."""
    done = subprocess.run([*GIT, *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.rstrip("\n")


def file_contents(project: Path, tops: tuple[str, ...], leave_out=()) -> dict[str, bytes]:
    """Relative path -> bytes of every file under the folders ``tops`` of ``project``, but
    temporary ones (``.tmp`` in the name) and those whose path starts with one of ``leave_out``."""
    return {
        relative: path.read_bytes()
        for top in tops
        for path in sorted((project / top).rglob("*"))
        if path.is_file()
        and ".tmp" not in path.name
        and not (relative := path.relative_to(project).as_posix()).startswith(tuple(leave_out))
    }


def files_under(directory: Path) -> list[Path]:
    """Every file below ``directory``, sorted; none if it does not exist."""
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_mirror(directory: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` gzipped under their MNIST names in ``directory``; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, data in files.items():
        name = load_project_params()["download"]["files"][key]["name"]
        (directory / name).write_bytes(gzip.compress(data, mtime=0))
    return directory


def load_project_params() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def tiny_params(files: dict[str, bytes]) -> dict:
    """The project's params with the tiny files' MD5s and a model that trains in seconds."""
    params = copy.deepcopy(load_project_params())
    for key, data in files.items():
        params["download"]["files"][key]["md5"] = md5_hex(data)
    params["download"]["mirrors"] = []
    params["train"].update(hidden_units=[16], dropout=0.0, epochs=2, batch_size=32)
    # The tiny digits tell their label by the row of a bar: a square box would stretch the bar
    # over 20 rows and erase the label, where a real digit keeps its shape.
    params["train"]["augment"]["square_share"] = 0
    params["train"]["augment"]["flag_share"] = 0  # a flag would draw over other rows too
    params["evaluate"]["misclassified_shown"] = 10
    return params


@pytest.fixture
def tiny_files() -> dict[str, bytes]:
    return tiny_mnist_files()


@pytest.fixture
def tiny_mirror(tmp_path: Path, tiny_files: dict[str, bytes]) -> Path:
    return write_mirror(tmp_path / "mirror", tiny_files)


def copy_project(destination: Path) -> Path:
    """Copy the files git tracks (plus uncommitted edits) into ``destination``, as a new git
    repository, so DVC can run there without touching this checkout."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    subprocess.run(["git", "add", "-A"], cwd=destination, check=True)
    subprocess.run([*GIT, "commit", "-qm", "copy"], cwd=destination, check=True)
    return destination


def tiny_workspace(root: Path, project: bool = True) -> tuple[Path, Path]:
    """Under ``root``: a mirror directory of tiny MNIST-like files, and a copy of the project
    (or, with ``project=False``, an empty work directory) whose params.yaml expects them and
    trains in seconds. Returns (work directory, mirror)."""
    files = tiny_mnist_files()
    mirror = write_mirror(root / "mirror", files)
    workdir = copy_project(root / "project") if project else root / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(tiny_params(files), sort_keys=False))
    return workdir, mirror


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the project on tiny data after one full `dvc repro`, results committed:
    (project, mirror). Tests that change it put it back as they found it."""
    project, mirror = tiny_workspace(tmp_path_factory.mktemp("tiny"))
    result = dvc(project, "repro", env=venv_env(MNIST_MIRROR=str(mirror)))
    assert stages_run(result.stdout) == list(STAGES)
    commit_all(project, "tiny results")
    return project, mirror


@pytest.fixture
def tiny_project(tiny_pipeline) -> Iterator[tuple[Path, dict]]:
    """The shared tiny project and its environment; afterwards, even after a failed test, back
    at its branch and commit, without untracked files (own pictures, their .dvc file), its data
    checked out again."""
    project, mirror = tiny_pipeline
    env = venv_env(MNIST_MIRROR=str(mirror))
    head = git(project, "rev-parse", "HEAD")
    branch = git(project, "rev-parse", "--abbrev-ref", "HEAD")
    yield project, env
    git(project, "checkout", "-q", "-f", branch)
    git(project, "reset", "-q", "--hard", head)
    git(project, "clean", "-q", "-f", "-d")
    dvc(project, "checkout", "--force", env=env)
    assert git(project, "status", "--porcelain") == ""


def commit_all(project: Path, message: str) -> None:
    subprocess.run([*GIT, "add", "-A"], cwd=project, check=True)
    subprocess.run([*GIT, "commit", "-qm", message], cwd=project, check=True)


def venv_env(**extra: str) -> dict:
    """Environment in which ``python`` and ``dvc`` are this interpreter's (dvc.yaml runs
    ``python stages/...``)."""
    env = {k: v for k, v in os.environ.items() if k != "MNIST_MIRROR"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.update(extra)
    return env


def dvc(project: Path, *args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``dvc ARGS`` in ``project``; unless ``check`` is false, fail the test on an error."""
    result = subprocess.run(["dvc", *args], cwd=project, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def stages_run(dvc_output: str) -> list[str]:
    """The stages a `dvc repro` output says it ran, in order."""
    return re.findall(r"Running stage '(\w+)'", dvc_output)


CONSTANT_ANSWER = 3  # what the model of ``model_path`` says, whatever the picture


def saved_model(model, tmp_path_factory, name: str) -> Path:
    """``model`` saved as training leaves a model (its optimizer built), for the commands
    that load one: predict, serve, the scripts."""
    from digits.saving import save_model

    model.optimizer.build(model.trainable_variables)
    path = tmp_path_factory.mktemp("model") / name
    save_model(model, path)
    return path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    return saved_model(constant_model(CONSTANT_ANSWER), tmp_path_factory, "constant.keras")


def linear_model(kernel: np.ndarray, bias: np.ndarray):
    """Flatten 28x28 -> Dense(10, softmax) with these weights, compiled as training leaves it."""
    import keras

    model = keras.Sequential(
        [keras.Input(shape=(28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.set_weights([kernel, bias])
    return model


def constant_model(answer: int):
    """A Keras model that ignores its input: zero weights, output bias log(27) for ``answer``
    (probability 0.75; the other nine 1/36 each)."""
    bias = np.zeros(10, np.float32)
    bias[answer] = np.log(27)
    return linear_model(np.zeros((28 * 28, 10), np.float32), bias)


BAND_WEIGHT = 0.2  # logit per unit of brightness in a digit's band of rows


def band_model():
    """A Keras model whose answer depends on every pixel of its input: the logit of digit k is
    ``BAND_WEIGHT`` x the summed brightness of the rows r with 10 r // 28 == k."""
    rows = np.repeat(np.arange(28), 28)  # each flattened pixel's row
    kernel = np.zeros((28 * 28, 10), np.float32)
    kernel[np.arange(28 * 28), rows * 10 // 28] = BAND_WEIGHT
    return linear_model(kernel, np.zeros(10, np.float32))


def band_probabilities(frame: np.ndarray) -> np.ndarray:
    """What ``band_model`` answers for uint8 (28, 28) ``frame``, worked out without Keras, from
    the frame scaled to 0-1 as the pipeline scales it."""
    row_sums = (frame.astype(np.float64) / 255).sum(axis=1)
    logits = BAND_WEIGHT * np.bincount(np.arange(28) * 10 // 28, weights=row_sums, minlength=10)
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


@pytest.fixture(scope="session")
def band_model_path(tmp_path_factory) -> Path:
    return saved_model(band_model(), tmp_path_factory, "bands.keras")


def start_serve(*args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    """`digits serve ARGS`, from the project root, its output readable line by line."""
    return subprocess.Popen(
        [DIGITS, "serve", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )


def ctrl_c_as_in_a_terminal() -> None:
    """For ``Popen(preexec_fn=...)`` of a command that a test stops with SIGINT, as Ctrl-C.

    A shell without job control starts background commands with SIGINT ignored, and their
    children inherit that (Python then raises no KeyboardInterrupt); a user's Ctrl-C reaches a
    command run from a terminal with the default. So the tests pass however pytest was started.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cannot_run(reason: str) -> NoReturn:
    """For a test that cannot run here: a failure under CI (``CI`` set, as GitHub Actions and
    CI runners set it; .ci/run itself does not), where it must run, since a check that silently
    did not run must not pass; elsewhere a skip that says why."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: this test must run there)")
    pytest.skip(reason)


def png_bytes(width: int, height: int, compressed: bytes) -> bytes:
    """A PNG file by hand: an 8-bit grayscale header claiming ``width`` x ``height`` and one
    IDAT chunk of ``compressed`` (zlib) rows, which need not match it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", compressed)
        + chunk(b"IEND", b"")
    )
