"""Atomic file writes: an output either appears whole or not at all."""

import contextlib
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from digits.errors import DigitsError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    On any error (or Ctrl-C) the temporary file is removed and ``path`` keeps its previous
    content. The temporary name ends with ``path``'s own extension, for writers that insist on
    one (Keras wants ``.keras``).
    """
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*paths: Path) -> Iterator[tuple[Path, ...]]:
    """Yield one temporary path beside each of ``paths`` (files or directories); when the block
    succeeds, put all of them in place together, so that a stage's outputs are either all new
    or all old.

    Each earlier output is first moved aside; if putting any new one in place fails, those
    already placed are removed and the earlier ones moved back before the error is raised.
    An operating-system error about a temporary path (disk full while saving, say) is raised as
    ``OutputError`` naming the output it was for.
    """
    paths = tuple(Path(path) for path in paths)
    written_into = tuple(_written_into(path) for path in paths)
    places: dict[str, Path] = {}
    for path, into in zip(paths, written_into, strict=True):
        place = os.path.join(os.path.realpath(path.parent), path.name)
        if not into and places.setdefault(place, path) is not path:  # /dev/null twice is fine
            raise OutputError(f"{path}: one place for two outputs; give each its own")
    temporaries = tuple(
        _temporary_beside(Path(tempfile.gettempdir()) / path.name if into else path)
        for path, into in zip(paths, written_into, strict=True)
    )
    try:
        yield temporaries
        _replace_together(temporaries, written_into, paths)
    except OSError as error:
        output = _output_named_in(error, temporaries, paths)
        if output is None:
            raise
        raise OutputError(f"{output}: cannot write it: {error.strerror or error}") from None
    finally:
        for tmp in temporaries:
            if tmp.exists() or tmp.is_symlink():  # on a read-only disk even this check's
                _remove(tmp)  # unlink would fail, and hide the error that matters


DESCRIPTORS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def _written_into(path: Path) -> bool:
    """Whether the output ``path`` is written into rather than replaced: a device, FIFO or
    socket (``/dev/null``), or anything under /dev or /proc (``/dev/stdout`` even when it leads
    to a file), which a rename would replace with a file. Anything else is replaced, a symbolic
    link too, never written through: with DVC's symlink cache, an output links into the cache."""
    if str(path.absolute()).startswith(("/dev/", "/proc/")):
        return True
    try:
        mode = os.stat(path).st_mode  # follows links
    except OSError:  # nothing there yet; or a parent that is a file, which _temporary_beside names
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _write_into(target: Path, data: bytes) -> None:
    """Write ``data`` into a device, pipe or open descriptor: /dev/stdout is written through
    this process's own standard output, after what it has printed so far, not reopened (which
    would truncate a file it is redirected to)."""
    number = re.fullmatch(r"/(?:dev|proc/self)/fd/(\d+)", str(target))
    descriptor = DESCRIPTORS.get(str(target), int(number[1]) if number else None)
    if descriptor is None:
        with open(target, "wb") as sink:
            sink.write(data)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with open(descriptor, "wb", closefd=False) as sink:
        sink.write(data)


@contextlib.contextmanager
def live_path(path: Path) -> Iterator[Path]:
    """Yield ``path`` itself, for an output that must be read while it is written (the training
    log that `dvc exp show` and VS Code follow epoch by epoch), so it cannot wait for a rename.

    Its previous content is moved aside first; if the block fails (or Ctrl-C), what it wrote is
    removed and the previous content put back, so a failed run leaves it as old as the outputs
    of ``atomic_paths``. Only a killed process (SIGKILL) leaves it partly written. An
    operating-system error about ``path`` is raised as ``OutputError`` naming it.
    """
    path = Path(path)
    backup = _temporary_beside(path)  # a free name, and the parent is a directory
    if path.exists() or path.is_symlink():
        try:
            os.replace(path, backup)
        except OSError as error:
            raise OutputError(f"{path}: cannot replace it: {error.strerror or error}") from None
    try:
        yield path
    except BaseException as error:
        _remove(path)
        if backup.exists() or backup.is_symlink():
            os.replace(backup, path)
        if isinstance(error, OSError) and _output_named_in(error, (path,), (path,)):
            raise OutputError(f"{path}: cannot write it: {error.strerror or error}") from None
        raise
    _remove(backup)


def check_output_files(*paths: Path) -> None:
    """Raise ``OutputError`` now, not after the work, for an output file that could not be put
    in place at the end: its path is a directory."""
    for path in map(Path, paths):
        if path.is_dir():
            raise OutputError(f"{path}: is a directory, but this output is a file; remove it")


def _output_named_in(error: OSError, temporaries, paths) -> Path | None:
    """The output whose temporary (or anything inside it) ``error`` is about, if any."""
    for name in (error.filename, error.filename2):
        for tmp, path in zip(temporaries, paths, strict=True):
            if name is not None and str(name).startswith(str(tmp)):
                return path
    return None


def _temporary_beside(path: Path) -> Path:
    """A new name in ``path``'s directory (so renaming is atomic), nothing created there yet."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{path}: cannot write here: {path.parent} is not a directory") from None
    except OSError as error:  # read-only disk, no permission
        raise OutputError(f"{path}: cannot write here: {error.strerror or error}") from None
    token = secrets.token_hex(4)
    return path.parent / f".{path.name}.{token}.tmp{path.suffix}"


def _replace_together(
    temporaries: tuple[Path, ...], written_into: tuple[bool, ...], paths: tuple[Path, ...]
) -> None:
    for tmp, into, path in zip(temporaries, written_into, paths, strict=True):
        if not tmp.exists():
            raise OutputError(f"{path}: the stage finished without writing it")
        if into and tmp.is_dir():
            raise OutputError(f"{path}: is a device or pipe, but this output is a directory")
        if not into and path.exists() and path.is_dir() != tmp.is_dir():
            kind = "a directory" if path.is_dir() else "a file"
            raise OutputError(f"{path}: is {kind}, but this output is not; remove it and rerun")
    outputs = list(zip(temporaries, written_into, paths, strict=True))
    _rename_together([(tmp, path) for tmp, into, path in outputs if not into])
    for tmp, into, path in outputs:
        if into:  # after the renames: what went into a device cannot be taken back
            try:
                _write_into(path, tmp.read_bytes())
            except OSError as error:
                raise OutputError(f"{path}: cannot write it: {error.strerror or error}") from None


def _rename_together(pairs: list[tuple[Path, Path]]) -> None:
    """Rename each temporary onto its path: all of them, or none (the earlier ones back)."""
    backups: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for tmp, path in pairs:
            if path.exists() or path.is_symlink():
                backup = path.parent / f".{path.name}.{secrets.token_hex(4)}.old"
                os.replace(path, backup)
                backups.append((backup, path))
            os.replace(tmp, path)
            placed.append(path)
    except BaseException:
        for path in placed:
            _remove(path)
        for backup, path in backups:
            os.replace(backup, path)
        raise
    for backup, _ in backups:
        _remove(backup)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class OutputError(DigitsError):
    """An output cannot be written where the stage was told to write it."""


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
