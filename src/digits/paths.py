"""Where the pipeline keeps its files, as the tools' defaults.

The stages take their paths from ``dvc.yaml``; these are the same paths (tests/test_paths.py
checks that they match), relative to the project root, for the ``digits`` commands.
"""

from pathlib import Path

from digits.errors import DigitsError

PARAMS = Path("params.yaml")
RAW = Path("data/raw")  # download --out-dir: the MNIST files as downloaded
PREPARED = Path("data/prepared")  # preprocess --out-dir
OWN = Path("data/own")  # own --own-dir: a person's own pictures, data/own/<label>/
MODEL = Path("data/model.keras")  # train --model
CONFUSION = Path("plots/confusion.csv")  # evaluate --confusion
METRICS = Path("metrics/metrics.json")  # evaluate --metrics: the test metrics the gate reads
PLOT_IMAGES = Path("plots/images")  # evaluate --images-dir
LOCK = Path("dvc.lock")


def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: the current one) that holds
    ``dvc.yaml``; ``start`` itself when there is none."""
    start = (start or Path.cwd()).resolve()
    return next((d for d in (start, *start.parents) if (d / "dvc.yaml").is_file()), start)


def in_project(relative: Path, option: str | None = None) -> Path:
    """``relative`` (one of the paths above) under the project root; ``DigitsError`` outside
    a project, saying to give ``option`` (the command's option for that path, if it has one)
    instead."""
    root = project_root()
    if not (root / "dvc.yaml").is_file():
        alternative = f", or give {option}" if option else ""
        raise DigitsError(
            f"no digits project here (no dvc.yaml in {root} or above) to find {relative} in: "
            f"run this in the project{alternative}"
        )
    return root / relative
