"""Stage preprocess: parse the IDX files, scale pixels to [0, 1], hold out a validation split.

python stages/preprocess.py --raw-dir data/raw --out-dir data/prepared
"""

import logging
from pathlib import Path

from digits.data import save_split, scale_pixels, split_train_validation
from digits.files import atomic_paths, read_input_bytes
from digits.idx import check_same_count, parse_idx_images, parse_idx_labels
from digits.mnist import IMAGE_SHAPE
from digits.params import DownloadParams, load_params
from digits.stage import run_stage, stage_arguments

log = logging.getLogger("preprocess")


def read_mnist(raw_dir: Path, download: DownloadParams, kind: str):
    """Return (images uint8 (n, 28, 28), labels uint8 (n,)) for kind "train" or "test"."""
    images_path = raw_dir / download.files[f"{kind}_images"].stored_name
    labels_path = raw_dir / download.files[f"{kind}_labels"].stored_name
    images = parse_idx_images(
        read_input_bytes(images_path, "download"), str(images_path), image_shape=IMAGE_SHAPE
    )
    labels = parse_idx_labels(read_input_bytes(labels_path, "download"), str(labels_path))
    check_same_count(images, labels, str(images_path), str(labels_path))
    return images, labels


def main() -> None:
    args = stage_arguments(__doc__, "--raw-dir", "--out-dir")

    all_params = load_params(args.params)
    params = all_params.preprocess
    train_images, train_labels = read_mnist(args.raw_dir, all_params.download, "train")
    test_images, test_labels = read_mnist(args.raw_dir, all_params.download, "test")

    train_index, validation_index = split_train_validation(
        len(train_images), params.validation_fraction, params.seed, str(args.params)
    )
    splits = {
        "train": (train_images[train_index], train_labels[train_index]),
        "validation": (train_images[validation_index], train_labels[validation_index]),
        "test": (test_images, test_labels),
    }
    with atomic_paths(args.out_dir) as (out_tmp,):
        out_tmp.mkdir()
        for split, (images, labels) in splits.items():
            save_split(out_tmp, split, scale_pixels(images), labels)
            log.info("%s: %d images %s", split, len(images), images.shape[1:])
    log.info("wrote %s", args.out_dir)


if __name__ == "__main__":
    run_stage(main)
