"""Stage own: your own pictures (data/own/<label>/) as arrays beside MNIST's, split by a hash.

    python stages/own.py --own-dir data/own --version data/own_version.json \
        --out-dir data/own_prepared

Writes x_{train,test}.npy, y_{train,test}.npy as data/prepared's, each picture normalised as
`digits predict` sees it. The pictures are read only when the own_version stage found that DVC
tracks them (data/own.dvc, from `dvc add data/own`), so that what trained a model is in the
commit; without them the arrays are empty and training and evaluation are exactly what they are
without this stage.
"""

import logging

from digits.data import save_split, scale_pixels
from digits.files import atomic_paths, read_input_bytes
from digits.own import parse_version, read_tracked_pictures
from digits.params import load_params
from digits.stage import run_stage, stage_arguments

log = logging.getLogger("own")


def main() -> None:
    args = stage_arguments(__doc__, "--own-dir", "--version", "--out-dir")

    params = load_params(args.params).own
    version = parse_version(read_input_bytes(args.version, "own_version"), args.version)
    splits = read_tracked_pictures(args.own_dir, version, params)
    with atomic_paths(args.out_dir) as (out_tmp,):
        out_tmp.mkdir()
        for split, (frames, labels) in splits.items():
            save_split(out_tmp, split, scale_pixels(frames), labels)
            log.info("own-%s: %d pictures", split, len(frames))
    log.info("wrote %s", args.out_dir)


if __name__ == "__main__":
    run_stage(main)
