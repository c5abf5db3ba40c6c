"""`digits share`: which run-cache records it finds, and its error without a remote.
The round trip between two clones is in tests/test_remote.py."""

from pathlib import Path

import pytest
from dvc.repo import Repo

from digits.errors import DigitsError
from digits.runcache import push_run_cache, run_cache_entries


def test_run_cache_entries_are_key_and_entry_pairs(tmp_path):
    runs = tmp_path / "runs"
    for key, entry in [("ab12", "e2"), ("ab12", "e1"), ("cd34", "e3")]:
        (runs / key[:2] / key).mkdir(parents=True, exist_ok=True)
        (runs / key[:2] / key / entry).write_text("cmd: x\n")
    assert run_cache_entries(runs) == [("ab12", "e1"), ("ab12", "e2"), ("cd34", "e3")]


def test_no_run_cache_yet_is_no_entries(tmp_path):
    assert run_cache_entries(tmp_path / "runs") == []


def test_without_a_remote_the_error_says_so(tmp_path: Path):
    Repo.init(str(tmp_path), no_scm=True).close()
    with pytest.raises(DigitsError, match=r"^dvc push --run-cache: .*remote") as caught:
        push_run_cache(tmp_path, remote=None)
    assert "\n" not in str(caught.value)  # DVC's own message spans two lines
