"""Push the run cache so that others restore a training instead of repeating it.

    digits share                # after `dvc repro` or `dvc exp run`; -r NAME for a remote

This is `dvc push --run-cache` plus the files DVC leaves behind. DVC 3.67's push sends the
run-cache records and the workspace's cached outputs only, so a record can point at files the
remote never gets: the plot and metric files (`cache: false`: kept in git, not pushed) of
every run, and the model of every run but the one in the workspace. Elsewhere, `dvc repro
--pull` or `dvc exp run --pull` finds the record, cannot fetch its files, and trains again. This
command also pushes every file the local run-cache records name and the local cache holds
(DVC warns, naming them, about files a record names that are in neither cache).
"""

import argparse
import logging
from pathlib import Path

from digits.errors import DigitsError
from digits.paths import project_root


def run_cache_entries(runs_dir: Path) -> list[tuple[str, str]]:
    """(stage key, entry) of every record under DVC's ``runs_dir`` (``runs/ab/KEY/ENTRY``),
    sorted: the pairs ``StageCache.get_used_objs`` takes."""
    if not runs_dir.is_dir():
        return []
    return sorted((entry.parent.name, entry.name) for entry in runs_dir.glob("*/*/*"))


def push_run_cache(root: Path, remote: str | None) -> tuple[int, int]:
    """`dvc push --run-cache` in the project at ``root``, then push every file its run-cache
    records name. Returns (files pushed by dvc push, run-cache records); raises
    ``DigitsError`` if any file could not be pushed."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    logging.getLogger("dvc").propagate = False  # DVC prints its own warnings; not twice
    try:
        with Repo(str(root)) as repo:
            pushed = repo.push(remote=remote, run_cache=True)
            entries = run_cache_entries(Path(repo.stage_cache.cache_dir))
            used = repo.stage_cache.get_used_objs(entries, remote=remote)
            failed = set()
            for odb, objects in used.items():
                failed |= repo.cloud.push(objects, remote=remote, odb=odb).failed
    except DvcException as error:
        raise DigitsError(f"dvc push --run-cache: {' '.join(str(error).split())}") from error
    if failed:
        raise DigitsError(f"{len(failed)} files of the run cache could not be pushed: {failed}")
    return pushed, len(entries)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-r", "--remote", help="the DVC remote to push to (default: the project's default)"
    )


def run(args: argparse.Namespace) -> None:
    pushed, records = push_run_cache(project_root(), args.remote)
    print(f"{pushed} files pushed, and the files of {records} run-cache records")
