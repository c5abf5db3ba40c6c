"""Stage download: fetch the four MNIST files, verify their MD5s, store them decompressed.

    python stages/download.py --out-dir data/raw

Tries $MNIST_MIRROR (a directory or URL) first when it is set, then download.mirrors.
"""

import logging
import os

from digits.fetch import candidate_sources, fetch_verified, md5_hex
from digits.files import atomic_paths
from digits.params import load_params
from digits.stage import progress_on_terminal, run_stage, stage_arguments

log = logging.getLogger("download")


def main() -> None:
    args = stage_arguments(__doc__, "--out-dir")

    params = load_params(args.params).download
    sources = candidate_sources(os.environ.get("MNIST_MIRROR"), params.mirrors)
    fetched = {}  # every file first, then all are written together
    for file in params.files.values():
        target = args.out_dir / file.stored_name
        if target.is_file() and md5_hex(target.read_bytes()) == file.md5:
            log.info("%s: already present, MD5 verified", target)
            continue
        fetched[target] = fetch_verified(
            sources, file, params.timeout_s, params.retries, progress=progress_on_terminal()
        )
        log.info("%s: %d bytes, MD5 %s verified", target, len(fetched[target]), file.md5)
    with atomic_paths(*fetched) as temporaries:
        for tmp, data in zip(temporaries, fetched.values(), strict=True):
            tmp.write_bytes(data)


if __name__ == "__main__":
    run_stage(main)
