"""Live experiment tracking: DVCLive's Keras callback, set up the way this project keeps it."""

import logging
import math
from pathlib import Path


def live_logger(directory: Path):
    """DVCLive's Keras callback, logging to ``directory`` only: its summary (last epoch and
    step) and one TSV per metric, without timestamps. ``dvc.yaml`` stays hand-written, and no
    experiment is saved or named here (`dvc exp run` does that)."""
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    logging.getLogger("dvclive").setLevel(logging.WARNING)  # not its "Logging to experiment"
    live = Live(str(directory), dvcyaml=False, save_dvc_exp=False, report=None)
    return DVCLiveCallback(live=live)


def epoch_logger(log: logging.Logger, epochs: int):
    """A Keras callback that logs one line an epoch: its time, and loss and accuracy in training
    and validation. Keras' own lines count calls into TensorFlow as steps, and a call takes a
    chunk of steps (``network.Network``), so its "ms/step" would be per chunk."""
    import time

    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            log.info(
                "epoch %d/%d: %.1f s; loss %.4f, accuracy %.4f; "
                "validation loss %.4f, accuracy %.4f",
                epoch + 1,
                epochs,
                time.perf_counter() - self.started,
                *(
                    logs.get(key, math.nan)
                    for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                ),
            )

    return EpochLogger()
