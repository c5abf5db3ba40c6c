"""Stage download: fetch the four MNIST files, verify their MD5s, store them decompressed.

    python stages/download.py --out-dir data/raw

Tries $MNIST_MIRROR (a directory or URL) first when it is set, then download.mirrors.
"""

import logging
import os

from digits.stage import progress_on_terminal, run_stage, stage_arguments
from digits.fetch import candidate_sources, fetch_verified, md5_hex
from digits.files import write_bytes_atomic
from digits.params import load_params

log = logging.getLogger("download")


def main() -> None:
    args = stage_arguments(__doc__, "--out-dir")

    params = load_params(args.params).download
    sources = candidate_sources(os.environ.get("MNIST_MIRROR"), params.mirrors)
    for file in params.files.values():
        target = args.out_dir / file.stored_name
        if target.is_file() and md5_hex(target.read_bytes()) == file.md5:
            log.info("%s: already present, MD5 verified", target)
            continue
        data = fetch_verified(
            sources, file, params.timeout_s, params.retries, progress=progress_on_terminal()
        )
        write_bytes_atomic(target, data)
        log.info("%s: %d bytes, MD5 %s verified", target, len(data), file.md5)


if __name__ == "__main__":
    run_stage(main)
