"""Atomic file writes: an output either appears whole or not at all."""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from digits.errors import DigitsError


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file lives in the same directory so the rename is atomic; on any error
    (or Ctrl-C) it is removed and ``path`` keeps its previous content.
    ``suffix`` keeps an extension that a writer insists on (Keras wants ``.keras``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + suffix
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs are shared files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


class MissingInputError(DigitsError):
    """A file that an earlier stage writes is not there."""


def rerun_hint(stage: str) -> str:
    return f"it is written by the {stage} stage: run `dvc repro {stage}`"


def read_input_bytes(path: Path, stage: str) -> bytes:
    """Read a file written by ``stage``; if it is missing, say which stage makes it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise MissingInputError(f"{path}: missing; {rerun_hint(stage)}") from None
