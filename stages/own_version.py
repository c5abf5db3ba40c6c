"""Stage own_version: which version of your own pictures (data/own) DVC tracks, if any.

    python stages/own_version.py --own-dir data/own --out data/own_version.json

Writes the md5 and file count that `dvc add data/own` recorded in data/own.dvc (null without
it). DVC fails a stage whose dependency does not exist, and data/own is optional: so this stage,
which reads only data/own.dvc, runs on every `dvc repro` (dvc.yaml: always_changed) and takes
well under a second; the own stage depends on what it writes, and reruns only when the pictures
change.
"""

import json
import logging

from digits.files import atomic_path
from digits.own import pictures_version
from digits.params import load_params
from digits.stage import run_stage, stage_arguments

log = logging.getLogger("own_version")


def main() -> None:
    args = stage_arguments(__doc__, "--own-dir", "--out")

    load_params(args.params)  # reads none, but every stage stops on a bad params.yaml first
    version = pictures_version(args.own_dir)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(version, indent=2) + "\n", encoding="utf-8")
    log.info("%s: %s pictures, md5 %s", args.own_dir, version["nfiles"] or 0, version["md5"])


if __name__ == "__main__":
    run_stage(main)
