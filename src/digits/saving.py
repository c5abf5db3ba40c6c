"""Save a trained model with bytes that depend only on the model, and load it back safely."""

import json
import zipfile
from pathlib import Path

import keras

import digits.dropout  # noqa: F401  registers the dropout layers for loading
import digits.network  # noqa: F401  registers Network for loading
import digits.optimizer  # noqa: F401  registers FusedAdam for loading
from digits.errors import DigitsError
from digits.files import rerun_hint
from digits.mnist import IMAGE_SHAPE, N_CLASSES
from digits.paths import MODEL, project_root

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # earliest time a zip entry can hold


class ModelError(DigitsError):
    """The model file is missing or cannot be loaded."""


MODEL_SUFFIX = ".keras"  # the format save_model writes and load_model reads


def check_model_path(path: Path) -> None:
    """Raise ``ModelError`` now, not after training, if ``save_model`` could not write ``path``."""
    if Path(path).suffix != MODEL_SUFFIX:
        raise ModelError(
            f"{path}: a model is saved in Keras' {MODEL_SUFFIX} format; name it *{MODEL_SUFFIX}"
        )


def save_model(model: keras.Model, path: Path) -> None:
    """Save in Keras 3 ``.keras`` format (``path`` must end in .keras) with bytes that depend
    only on the model: the same training gives the same file hash in dvc.lock."""
    model.save(path)
    _strip_save_time(path)


def load_model(path: Path) -> keras.Model:
    """Load a model written by ``save_model``; safe_mode refuses embedded Python code."""
    path = Path(path)
    pipeline_model = path.resolve() == (project_root() / MODEL).resolve()
    if path.is_dir():
        raise ModelError(f"{path}: a directory, not a model file (data/model.keras, say)")
    if not path.is_file():
        where = rerun_hint("train") if pipeline_model else "check the path"
        raise ModelError(f"{path}: model file missing; {where}")
    fix = (
        f"restore it with `dvc checkout --force {path}` or retrain with `dvc repro train`"
        if pipeline_model
        else "expected a model that the train stage saved (a .keras file)"
    )
    if not zipfile.is_zipfile(path):  # Keras itself would say "File not found"
        raise ModelError(
            f"{path}: cannot load the model: not a .keras (zip) file, damaged?; {fix}"
        )
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged zip or config
        reason = f"{type(error).__name__}: {str(error)[:200]}"
        raise ModelError(f"{path}: cannot load the model ({reason}); {fix}") from None
    takes, gives = tuple(model.input_shape[1:]), model.output_shape[-1]
    if takes != IMAGE_SHAPE or gives != N_CLASSES:
        raise ModelError(
            f"{path}: a model from {takes} pictures to {gives} classes, not a digits model "
            f"({IMAGE_SHAPE} to {N_CLASSES}); {fix}"
        )
    return model


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
