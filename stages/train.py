"""Stage train: fit the dense network on the training split, validating every epoch.

    python stages/train.py --data-dir data/prepared --model data/model.keras \
        --history plots/training.csv
"""

import argparse
import logging
import time
from pathlib import Path

from digits.cli import progress_on_terminal, run_stage
from digits.data import load_split
from digits.files import atomic_path
from digits.params import load_params

log = logging.getLogger("train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--history", type=Path, required=True)
    args = parser.parse_args()

    params = load_params(args.params).train
    train = load_split(args.data_dir, "train")
    validation = load_split(args.data_dir, "validation")

    import keras

    from digits.model import (
        build_model,
        make_deterministic,
        save_model,
        steps_per_epoch,
        train_model,
    )

    make_deterministic(params.seed)
    model = build_model(params, steps_per_epoch(len(train[0]), params.batch_size))
    log.info(
        "model %s: %d parameters; %d training, %d validation images",
        "-".join(map(str, params.hidden_units)),
        model.count_params(),
        len(train[0]),
        len(validation[0]),
    )

    started = time.perf_counter()
    with atomic_path(args.history, suffix=".csv") as history_tmp:
        train_model(
            model,
            train,
            validation,
            params,
            callbacks=[keras.callbacks.CSVLogger(str(history_tmp))],
            verbose=1 if progress_on_terminal() else 2,
        )
    elapsed = time.perf_counter() - started
    log.info(
        "trained %d epochs in %.1f s (%.2f s/epoch)",
        params.epochs,
        elapsed,
        elapsed / params.epochs,
    )
    save_model(model, args.model)
    log.info("wrote %s and %s", args.model, args.history)


if __name__ == "__main__":
    run_stage(main)
