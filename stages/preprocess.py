"""Stage preprocess: parse the IDX files, deskew the digits, scale pixels to [0, 1], hold out a
validation split.

python stages/preprocess.py --raw-dir data/raw --out-dir data/prepared
"""

import logging

from digits.data import mnist_splits, save_split, scale_pixels
from digits.deskew import deskew
from digits.files import atomic_paths
from digits.params import load_params
from digits.stage import run_stage, stage_arguments

log = logging.getLogger("preprocess")


def main() -> None:
    args = stage_arguments(__doc__, "--raw-dir", "--out-dir")

    splits = mnist_splits(args.raw_dir, load_params(args.params), str(args.params))
    with atomic_paths(args.out_dir) as (out_tmp,):
        out_tmp.mkdir()
        for split, (images, labels) in splits.items():
            save_split(out_tmp, split, scale_pixels(deskew(images)), labels)
            log.info("%s: %d images %s", split, len(images), images.shape[1:])
    log.info("wrote %s", args.out_dir)


if __name__ == "__main__":
    run_stage(main)
