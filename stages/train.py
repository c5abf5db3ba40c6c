"""Stage train: fit the dense network on the training split, validating every epoch.

    python stages/train.py --data-dir data/prepared --model data/model.keras \
        --history plots/training.csv

With TF_CONFIG set, trains as one of several workers (see stages/digits/distribute.py).
"""

import logging
import time

from digits import distribute
from digits.cli import progress_on_terminal, run_stage, stage_arguments
from digits.data import load_split
from digits.files import atomic_path
from digits.params import load_params

log = logging.getLogger("train")


def main() -> None:
    args = stage_arguments(__doc__, "--data-dir", "--model", "--history")

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

    worker = distribute.worker_from_env()  # None unless TF_CONFIG is set
    strategy = distribute.make_strategy(worker, params.batch_size)
    params = distribute.params_for_worker(worker, params)
    make_deterministic(params.seed)
    with distribute.strategy_scope(strategy):
        model = build_model(params, steps_per_epoch(len(train[0]), params.batch_size))
    log.info(
        "model %s: %d parameters; %d training, %d validation images",
        "-".join(map(str, params.hidden_units)),
        model.count_params(),
        len(train[0]),
        len(validation[0]),
    )

    started = time.perf_counter()
    with (
        distribute.worker_output(worker, args.history) as history_path,
        atomic_path(history_path, suffix=".csv") as history_tmp,
    ):
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
    with distribute.worker_output(worker, args.model) as model_path:
        save_model(model, model_path)
    if distribute.is_chief(worker):
        log.info("wrote %s and %s", args.model, args.history)


if __name__ == "__main__":
    run_stage(main)
