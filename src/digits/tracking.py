"""Live experiment tracking: DVCLive's Keras callback, set up the way this project keeps it."""

import logging
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
