"""Stage train: fit the dense network on the training split, validating every epoch.

    python stages/train.py --data-dir data/prepared --own-dir data/own_prepared \
        --model data/model.keras --history plots/training.csv --live-dir dvclive

DVCLive writes --live-dir as training goes, one step an epoch, for `dvc exp show`, the VS Code
extension and Studio to follow; the model and --history appear only when training has ended.

With TF_CONFIG set, trains as one of several workers (see src/digits/distribute.py).
"""

import logging
import time

from digits.data import load_split, mix_in, own_count
from digits.distribute import join_cluster
from digits.files import atomic_paths, check_output_files, live_path
from digits.machine import this_processor
from digits.params import load_params, memory_limit
from digits.stage import run_stage, stage_arguments
from digits.tracking import epoch_logger, live_logger

log = logging.getLogger("train")


def main() -> None:
    args = stage_arguments(
        __doc__, "--data-dir", "--own-dir", "--model", "--history", "--live-dir"
    )

    # The memory check only here, where training happens.
    params = load_params(args.params, memory_bytes=memory_limit()).train
    from digits.saving import check_model_path, save_model

    check_model_path(args.model)  # not after minutes of training (or of waiting for peers)
    check_output_files(args.model, args.history)
    own_train = load_split(args.own_dir, "train", stage="own", may_be_empty=True)
    mnist_train = load_split(args.data_dir, "train")
    validation = load_split(args.data_dir, "validation")
    cluster = join_cluster(params)  # alone unless TF_CONFIG is set
    params = cluster.params
    n_own = own_count(len(mnist_train[0]), len(own_train[0]), params.own_share, params.batch_size)
    train = mix_in(mnist_train, own_train, n_own)

    import keras

    from digits.model import build_model, train_model

    with cluster.scope():
        model = build_model(params, len(train[0]))
    own = f" ({n_own} of them from {len(own_train[0])} own pictures)" if n_own else ""
    log.info(
        "model %s: %d parameters; %d training images%s, %d validation images",
        "-".join(map(str, params.hidden_units)),
        model.count_params(),
        len(train[0]),
        own,
        len(validation[0]),
    )
    log.info('on %s: its kind decides the bytes (README "Which machine")', this_processor())

    with (
        cluster.output(args.model) as model_path,
        cluster.output(args.history) as history_path,
        cluster.output(args.live_dir) as live_dir,
        live_path(live_dir),
        atomic_paths(model_path, history_path) as (model_tmp, history_tmp),
    ):
        callbacks = [keras.callbacks.CSVLogger(str(history_tmp)), epoch_logger(log, params.epochs)]
        if cluster.is_chief:  # one live log however many workers train
            callbacks.append(live_logger(live_dir))
        started = time.perf_counter()
        train_model(model, train, validation, params, callbacks, verbose=0)
        elapsed = time.perf_counter() - started
        log.info("trained in %.1f s (%.2f s/epoch)", elapsed, elapsed / params.epochs)
        save_model(model, model_tmp)
    if cluster.is_chief:
        log.info("wrote %s, %s and %s", args.model, args.history, args.live_dir)


if __name__ == "__main__":
    run_stage(main)
