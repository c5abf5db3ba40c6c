"""File a picture of one of your own digits under its true label, for the next training run.

    digits add IMAGE... --label 7 [--own-dir data/own]

Copies each IMAGE into data/own/7/ under a name made from a hash of its bytes (the same
picture filed twice is one file), after checking that it is a picture with a digit in it. Then
`dvc add data/own && dvc repro` trains with it: see README "Your own digits". The own stage
(stages/own.py) reads data/own/<label>/ back, each picture normalised as `digits predict` sees
it, and splits it into own-train and own-test by a hash of its bytes.
"""

import argparse
import hashlib
import io
import json
import logging
import sys
from pathlib import Path

import numpy as np

from digits.errors import DigitsError
from digits.files import atomic_path, rerun_hint
from digits.images import (
    ImageError,
    decode_grayscale,
    image_suffix,
    mnist_frame,
    picture_frame,
    printable_path,
)
from digits.mnist import IMAGE_SHAPE, N_CLASSES
from digits.params import OwnParams
from digits.paths import OWN, in_project, project_root
from digits.stage import describe_os_error
from digits.yamlfile import load_yaml

log = logging.getLogger("own")

NAME_HASH_CHARS = 20  # hex digits of SHA-256 in a filed picture's name: 80 bits, no collisions
SPLITS = ("train", "test")


class OwnPictureError(DigitsError):
    """A picture under data/own cannot be used: not a picture, no digit, or not in a label
    folder."""


def file_picture(data: bytes, label: int, own_dir: Path) -> Path:
    """Store picture bytes ``data`` as ``own_dir/<label>/<hash><suffix>`` and return that path.

    The name is the first ``NAME_HASH_CHARS`` hex digits of the bytes' SHA-256 and the usual
    suffix of their format, so filing the same picture again changes nothing. Raises
    ``OwnPictureError`` for a label that is not a digit 0-9 or a picture already filed under
    another label, and ``ImageError`` for bytes that are not a picture with a digit in it. The
    file appears whole or not at all.
    """
    if type(label) is not int or not 0 <= label < N_CLASSES:
        raise OwnPictureError(f"label {label!r}: expected a digit 0-{N_CLASSES - 1}")
    name = hashlib.sha256(data).hexdigest()[:NAME_HASH_CHARS] + image_suffix(data, "the picture")
    target = Path(own_dir) / str(label) / name
    for other in range(N_CLASSES):
        filed = Path(own_dir) / str(other) / name
        if other != label and filed.is_file():
            raise OwnPictureError(
                f"{printable_path(filed)}: this picture is already filed as a {other}; "
                f"remove that file first to file it as a {label}"
            )
    if target.is_file():
        return target
    # a picture without a digit in it is refused before anything, even a folder, is written
    mnist_frame(decode_grayscale(io.BytesIO(data), "the picture"), "the picture")
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target


def split_of(data: bytes, test_fraction: float, seed: int) -> str:
    """The side, "train" or "test", of picture bytes ``data``: "test" with chance
    ``test_fraction``, decided by a hash of ``seed`` and the bytes alone, so that a picture
    stays on its side whatever other pictures are added or removed."""
    digest = hashlib.sha256(seed.to_bytes(8, "big") + data).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return "test" if draw < test_fraction else "train"


def picture_label(path: Path, own_dir: Path) -> int:
    """The label of picture ``path`` under ``own_dir``: the name of the folder directly under
    ``own_dir`` that holds it (at any depth: ``7/phone/a.jpg`` is a 7), one of 0-9;
    ``OwnPictureError`` naming ``path`` otherwise."""
    parts = path.relative_to(own_dir).parts
    where = f"expected {printable_path(own_dir)}/<label>/<picture>, label 0-{N_CLASSES - 1}"
    if len(parts) < 2:
        raise OwnPictureError(f"{printable_path(path)}: not in a label folder ({where})")
    if parts[0] not in {str(digit) for digit in range(N_CLASSES)}:
        raise OwnPictureError(
            f"{printable_path(path)}: folder {parts[0]!r} is not a label ({where})"
        )
    return int(parts[0])


def picture_paths(own_dir: Path) -> list[Path]:
    """Every file under ``own_dir``, in a fixed order; hidden ones (``.DS_Store``, editors'
    swap files) are not pictures and are left out."""
    return sorted(
        path
        for path in Path(own_dir).rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(own_dir).parts)
    )


def read_own_pictures(
    own_dir: Path, params: OwnParams
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The pictures under ``own_dir``/<label>/ as {"train": (x, y), "test": (x, y)}: x uint8
    (n, 28, 28) as ``picture_frame`` makes them, y uint8 (n,), in file order.

    A bad picture (no digit, unreadable, not in a label folder) raises ``OwnPictureError``
    naming it when ``params.bad_pictures`` is "stop"; with "skip" it is logged as a warning
    line and left out.
    """
    frames: dict[str, list] = {split: [] for split in SPLITS}
    labels: dict[str, list] = {split: [] for split in SPLITS}
    for path in picture_paths(own_dir):
        try:
            label = picture_label(path, own_dir)
            frame = picture_frame(path)
        except (OwnPictureError, ImageError) as error:
            if params.bad_pictures == "stop":
                raise OwnPictureError(
                    f"{error}; fix or remove it, or set own.bad_pictures: skip"
                ) from None
            log.warning("warning: %s; skipped", error)
            continue
        split = split_of(path.read_bytes(), params.test_fraction, params.seed)
        frames[split].append(frame)
        labels[split].append(label)
    return {
        split: (
            np.array(frames[split], dtype=np.uint8).reshape(-1, *IMAGE_SHAPE),
            np.array(labels[split], dtype=np.uint8),
        )
        for split in SPLITS
    }


def pictures_version(own_dir: Path) -> dict:
    """Which version of the pictures in ``own_dir`` DVC tracks, from the ``<own_dir>.dvc`` file
    that ``dvc add`` writes beside it: {"dvc_file", "md5" (of the directory, DVC's), "nfiles"},
    md5 and nfiles None when there is no such file. Pictures DVC does not track are not used
    (every model is trained on pictures a commit can bring back): a warning line says so if
    ``own_dir`` holds some. ``OwnPictureError`` if the file is not what ``dvc add`` writes."""
    own_dir = Path(own_dir)
    tracking_file = own_dir.with_name(own_dir.name + ".dvc")
    version = {"dvc_file": tracking_file.as_posix(), "md5": None, "nfiles": None}
    if not tracking_file.exists():
        if own_dir.exists():
            name = printable_path(own_dir)
            log.warning(
                "warning: %s is not tracked by DVC (no %s): its pictures are not used; "
                "`dvc add %s` to train with them",
                name,
                printable_path(tracking_file),
                name,
            )
        return version
    document = load_yaml(tracking_file) if tracking_file.is_file() else None
    outs = document.get("outs") if isinstance(document, dict) else None
    out = outs[0] if isinstance(outs, list) and len(outs) == 1 else {}
    if not isinstance(out, dict) or out.get("path") != own_dir.name or "md5" not in out:
        raise OwnPictureError(
            f"{printable_path(tracking_file)}: not the file `dvc add {printable_path(own_dir)}` "
            "writes (one out with its path and md5); run that command again"
        )
    return version | {"md5": out["md5"], "nfiles": out.get("nfiles")}


def parse_version(data: bytes, source: str) -> dict:
    """The version ``pictures_version`` found, from the JSON the own_version stage wrote;
    ``OwnPictureError`` naming ``source`` if it is anything else."""
    try:
        version = json.loads(data)
    except ValueError:
        version = None
    if not (
        isinstance(version, dict)
        and isinstance(version.get("dvc_file"), str)
        and (version.get("md5") is None or isinstance(version.get("md5"), str))
        and "nfiles" in version
    ):
        raise OwnPictureError(
            f"{printable_path(source)}: not what the own_version stage writes (JSON with "
            f"dvc_file, md5 and nfiles); {rerun_hint('own_version')}"
        )
    return version


def read_tracked_pictures(
    own_dir: Path, version: dict, params: OwnParams
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``read_own_pictures`` when ``version`` (from ``pictures_version``) says DVC tracks
    ``own_dir``; otherwise no pictures, arrays of length 0. ``OwnPictureError`` if it is
    tracked but not there (a clone that has not pulled it), or not as DVC tracks it (pictures
    added, changed or removed since `dvc add`): a model trains only on pictures that a commit
    can bring back."""
    own_dir = Path(own_dir)
    if version["md5"] is None:
        empty = (np.zeros((0, *IMAGE_SHAPE), np.uint8), np.zeros(0, np.uint8))
        return dict.fromkeys(SPLITS, empty)
    name = printable_path(own_dir)
    if not own_dir.is_dir():
        raise OwnPictureError(
            f"{name}: missing, though {version['dvc_file']} tracks it: `dvc pull {name}` "
            "or `dvc checkout`"
        )
    md5, nfiles = directory_md5(own_dir)
    if md5 != version["md5"]:
        raise OwnPictureError(
            f"{name}: not what {version['dvc_file']} records ({version['nfiles']} files, md5 "
            f"{version['md5']}; here {nfiles} files, md5 {md5}): `dvc add {name}` to train "
            f"with it as it is, or `dvc checkout {version['dvc_file']}` to go back"
        )
    return read_own_pictures(own_dir, params)


def directory_md5(directory: Path) -> tuple[str, int]:
    """The md5 that `dvc add` records for ``directory`` (DVC's own tree hash, with the
    project's .dvcignore files applied) and how many files it holds."""
    from dvc.ignore import DvcIgnoreFilter
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs import LocalFileSystem, MemoryFileSystem

    files = LocalFileSystem()
    ignore = DvcIgnoreFilter(files, str(project_root(Path(directory))))
    unused = HashFileDB(MemoryFileSystem(), "memory://digits")  # a dry run stores nothing
    _, meta, tree = build(
        unused, str(Path(directory).resolve()), files, "md5", dry_run=True, ignore=ignore
    )
    return tree.hash_info.value, meta.nfiles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    parser.add_argument(
        "--label",
        type=int,
        choices=range(N_CLASSES),
        metavar="DIGIT",
        required=True,
        help="the digit the pictures show, 0-9",
    )
    parser.add_argument(
        "--own-dir", type=Path, help=f"where own pictures are kept (default: {OWN} in the project)"
    )


def run(args: argparse.Namespace) -> None:
    """File each picture; one ``error:`` line for each that cannot be (the others are still
    filed), then exit status 1 if any could not."""
    own_dir = args.own_dir or in_project(OWN, "--own-dir")
    failed = 0
    for image in args.images:
        try:
            picture_frame(image)  # names IMAGE if it is not a readable picture with a digit
            filed = file_picture(image.read_bytes(), args.label, own_dir)
        except (DigitsError, OSError) as error:
            failed += 1
            reason = error if isinstance(error, DigitsError) else describe_os_error(error)
            print(f"error: {reason}", file=sys.stderr)
            continue
        print(f"{printable_path(image)}\t{printable_path(filed)}")
    if failed < len(args.images):
        log.info("next: dvc add %s && dvc repro", printable_path(own_dir))
    if failed:
        raise DigitsError(f"{failed} of {len(args.images)} pictures could not be filed")
