"""The classifier: a dense Keras network on 28x28 images, and its training. Imports TensorFlow."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep CUDA-probe noise out of logs

import json  # noqa: E402
import math  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from digits.errors import DigitsError  # noqa: E402
from digits.files import atomic_path, rerun_hint  # noqa: E402
from digits.idx import IMAGE_SHAPE, N_CLASSES  # noqa: E402
from digits.params import TrainParams  # noqa: E402

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # earliest time a zip entry can hold


class ModelError(DigitsError):
    """The model file is missing or cannot be loaded."""


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(params: TrainParams, steps_per_epoch: int) -> keras.Sequential:
    """Return a compiled Sequential: Flatten -> [Dense(relu) -> Dropout] * n -> Dense(softmax)."""
    layers = [keras.Input(shape=IMAGE_SHAPE), keras.layers.Flatten()]
    for index, (units, rate) in enumerate(
        zip(params.hidden_units, params.dropout, strict=True), start=1
    ):
        layers.append(keras.layers.Dense(units, activation="relu", name=f"hidden_{index}"))
        if rate > 0:
            layers.append(keras.layers.Dropout(rate, name=f"dropout_{index}"))
    layers.append(keras.layers.Dense(N_CLASSES, activation="softmax", name="probabilities"))
    model = keras.Sequential(layers, name="digits")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate_schedule(params, steps_per_epoch)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=params.steps_per_execution,
        jit_compile=params.jit_compile,
    )
    return model


def learning_rate_schedule(params: TrainParams, steps_per_epoch: int):
    """The learning rate, constant or decaying to 0 along a cosine over all training steps."""
    if params.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            params.learning_rate, decay_steps=params.epochs * steps_per_epoch
        )
    return params.learning_rate


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


def train_model(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    params: TrainParams,
    callbacks: list,
    verbose: int | str,
) -> keras.callbacks.History:
    """Fit ``model`` on ``train`` = (x float32 (n, 28, 28), y uint8 (n,)); validate every epoch."""
    return model.fit(
        train[0],
        train[1],
        batch_size=params.batch_size,
        epochs=params.epochs,
        validation_data=validation,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )


def save_model(model: keras.Model, path: Path) -> None:
    """Save in Keras 3 ``.keras`` format, atomically, with bytes that depend only on the model."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        _strip_save_time(tmp)


def _strip_save_time(path: Path) -> None:
    """Rewrite a ``.keras`` zip without the save date (metadata.json, zip entry times), so that
    the same training gives the same file hash in dvc.lock."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, content in entries:
            if info.filename == "metadata.json":
                metadata = json.loads(content)
                metadata.pop("date_saved", None)
                content = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                content = json.dumps(_renumber_shared_objects(json.loads(content))).encode()
            stable = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            stable.compress_type = info.compress_type
            stable.external_attr = info.external_attr
            archive.writestr(stable, content)


def _renumber_shared_objects(config, numbers: dict | None = None):
    """Replace Keras' ``shared_object_id`` values (Python ``id()``s, memory addresses that change
    every run) with 1, 2, ... in order of appearance; loading only matches them to each other."""
    numbers = {} if numbers is None else numbers
    if isinstance(config, list):
        return [_renumber_shared_objects(item, numbers) for item in config]
    if not isinstance(config, dict):
        return config
    renumbered = {}
    for key, value in config.items():
        if key == "shared_object_id":
            renumbered[key] = numbers.setdefault(value, len(numbers) + 1)
        else:
            renumbered[key] = _renumber_shared_objects(value, numbers)
    return renumbered


def load_model(path: Path) -> keras.Model:
    """Load a model written by ``save_model``; safe_mode refuses embedded Python code."""
    path = Path(path)
    rerun = rerun_hint("train")
    if not path.is_file():
        raise ModelError(f"{path}: model file missing; {rerun}")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged zip or config
        raise ModelError(
            f"{path}: cannot load the model ({type(error).__name__}: {error}); {rerun}"
        ) from None
