"""Stage own: your own pictures (data/own/<label>/) as arrays beside MNIST's, split by a hash.

    python stages/own.py --own-dir data/own --out-dir data/own_prepared

Writes x_{train,test}.npy, y_{train,test}.npy as data/prepared's, each picture normalised as
`digits predict` sees it. The pictures are used only when DVC tracks them (data/own.dvc, from
`dvc add data/own`), so that what trained a model is in the commit; without them the arrays are
empty and training and evaluation are exactly what they are without this stage. dvc.yaml marks
the stage always changed: DVC cannot depend on a directory that may not exist.
"""

import logging

import numpy as np

from digits.data import save_split, scale_pixels
from digits.files import atomic_paths
from digits.images import printable_path
from digits.mnist import IMAGE_SHAPE
from digits.own import SPLITS, OwnPictureError, read_own_pictures
from digits.params import load_params
from digits.stage import run_stage, stage_arguments

log = logging.getLogger("own")


def main() -> None:
    args = stage_arguments(__doc__, "--own-dir", "--out-dir")

    params = load_params(args.params).own
    tracking_file = args.own_dir.with_name(args.own_dir.name + ".dvc")
    no_pictures = (np.zeros((0, *IMAGE_SHAPE), np.uint8), np.zeros(0, np.uint8))
    if tracking_file.is_file():
        if not args.own_dir.is_dir():
            raise OwnPictureError(
                f"{printable_path(args.own_dir)}: missing, though {printable_path(tracking_file)} "
                f"tracks it: `dvc pull {printable_path(args.own_dir)}` or `dvc checkout` first"
            )
        splits = read_own_pictures(args.own_dir, params)
    else:
        if args.own_dir.exists():
            log.warning(
                "warning: %s is not tracked by DVC (no %s): its pictures are not used; "
                "`dvc add %s` to train with them",
                printable_path(args.own_dir),
                printable_path(tracking_file),
                printable_path(args.own_dir),
            )
        splits = dict.fromkeys(SPLITS, no_pictures)
    with atomic_paths(args.out_dir) as (out_tmp,):
        out_tmp.mkdir()
        for split, (frames, labels) in splits.items():
            save_split(out_tmp, split, scale_pixels(frames), labels)
            log.info("own-%s: %d pictures", split, len(frames))
    log.info("wrote %s", args.out_dir)


if __name__ == "__main__":
    run_stage(main)
