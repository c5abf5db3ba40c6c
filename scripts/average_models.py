"""Would an ensemble help? Validation and test accuracy of trained models, alone and averaged.

    python scripts/average_models.py MODEL.keras MODEL.keras [...] [--data-dir data/prepared]

A tool, not a test. For every model, then every pair and all of them together, it prints the
accuracy of the averaged probabilities on the validation split (to choose by) and on the test
split (for the record). Models of earlier experiments are in the DVC cache: `dvc exp show`
names them, `dvc exp apply` + `dvc checkout` or the md5 in an experiment's dvc.lock finds them.
"""

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from digits.data import load_split
from digits.mnist import INFERENCE_BATCH
from digits.paths import PREPARED, in_project
from digits.stage import quiet_tensorflow, run_tool

SPLITS = ("validation", "test")


def accuracy(probabilities: list[np.ndarray], labels: np.ndarray) -> float:
    """Accuracy of the mean of ``probabilities`` (each (n, 10)) against ``labels`` (n,)."""
    return float(np.mean(np.mean(probabilities, axis=0).argmax(axis=1) == labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help=".keras files")
    parser.add_argument("--data-dir", type=Path, help=f"default: {PREPARED} in the project")
    args = parser.parse_args()
    data_dir = args.data_dir or in_project(PREPARED, "--data-dir")
    quiet_tensorflow()
    from digits.saving import load_model

    data = {split: load_split(data_dir, split) for split in SPLITS}
    probabilities = {}
    for path in args.models:
        model = load_model(path)
        probabilities[path.name] = {
            split: model.predict(x, batch_size=INFERENCE_BATCH, verbose=0)
            for split, (x, _) in data.items()
        }
    names = list(probabilities)
    groups = [(name,) for name in names] + list(itertools.combinations(names, 2))
    if len(names) > 2:
        groups.append(tuple(names))
    for group in groups:
        figures = [
            f"{split} {accuracy([probabilities[name][split] for name in group], y):.2%}"
            for split, (_, y) in data.items()
        ]
        print(f"{' + '.join(group)}: {', '.join(figures)}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
