"""Atomic outputs: all new or all old, and nothing left behind."""

import os
import stat
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digits.files import OutputError, atomic_path, atomic_paths, check_output_files, live_path


def test_atomic_path_replaces_the_file_when_the_block_succeeds(tmp_path):
    target = tmp_path / "out" / "model.keras"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".keras")
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.keras"]


def test_atomic_path_leaves_nothing_behind_on_an_exception(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_outputs_are_replaced_together_or_not_at_all(tmp_path):
    first, second = tmp_path / "metrics.json", tmp_path / "images"
    first.write_text("old")
    second.mkdir()
    (second / "a.png").write_text("old")
    with (
        pytest.raises(OutputError, match="images: is a directory"),
        atomic_paths(first, second) as (first_tmp, second_tmp),
    ):
        first_tmp.write_text("new")
        second_tmp.write_text("a file where the directory was")
    assert first.read_text() == "old" and (second / "a.png").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "metrics.json"]


def test_a_failed_rename_puts_the_earlier_outputs_back(tmp_path, monkeypatch):
    import digits.files

    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("old a")
    second.write_text("old b")
    real_replace = digits.files.os.replace

    def failing_replace(source, target):
        if str(target) == str(second) and ".tmp" in str(source):  # the new b.csv only
            raise OSError(28, "No space left on device", str(target))
        real_replace(source, target)

    monkeypatch.setattr(digits.files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"), atomic_paths(first, second) as tmps:
        for tmp in tmps:
            tmp.write_text("new")
    assert (first.read_text(), second.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


def test_a_write_error_names_the_output_not_its_temporary(tmp_path):
    target = tmp_path / "model.keras"
    with pytest.raises(OutputError, match=r"model.keras: cannot write it: No space left"):
        with atomic_path(target) as tmp:
            raise OSError(28, "No space left on device", str(tmp))
    assert list(tmp_path.iterdir()) == []


def test_directories_are_replaced_whole(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "stale.png").write_text("old")
    with atomic_paths(images) as (tmp,):
        tmp.mkdir()
        (tmp / "new.png").write_text("new")
    assert [p.name for p in images.iterdir()] == ["new.png"]


def test_an_output_under_a_regular_file_is_one_clear_error(tmp_path):
    (tmp_path / "plots").write_text("a file")
    with pytest.raises(OutputError, match="plots is not a directory"):
        with atomic_path(tmp_path / "plots" / "training.csv"):
            pass


def live_log(root, text: str):
    """A DVCLive-like directory under ``root`` whose files hold ``text``."""
    live = root / "dvclive"
    (live / "plots").mkdir(parents=True)
    (live / "metrics.json").write_text(text)
    (live / "plots" / "loss.tsv").write_text(text)
    return live


def test_a_live_output_is_written_in_place_and_replaces_the_old_one(tmp_path):
    live = live_log(tmp_path, "old")
    with live_path(live) as path:
        assert path == live and not live.exists()  # the old log is out of sight
        path.mkdir()
        (path / "metrics.json").write_text("epoch 1")
        assert (live / "metrics.json").read_text() == "epoch 1"  # readable while written
    assert [p.name for p in live.iterdir()] == ["metrics.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["dvclive"]


@pytest.mark.parametrize("error", [RuntimeError("diverged"), KeyboardInterrupt()])
def test_a_failed_run_puts_the_old_live_output_back(tmp_path, error):
    live = live_log(tmp_path, "old")
    with pytest.raises(type(error)), live_path(live) as path:
        path.mkdir()
        (path / "metrics.json").write_text("half")
        raise error
    assert {p.name: p.read_text() for p in live.rglob("*") if p.is_file()} == {
        "metrics.json": "old",
        "loss.tsv": "old",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["dvclive"]


def test_a_write_error_in_a_live_output_names_it(tmp_path):
    live = tmp_path / "dvclive"
    with pytest.raises(OutputError, match=r"dvclive: cannot write it: Permission denied"):
        with live_path(live) as path:
            raise PermissionError(13, "Permission denied", str(path / "plots" / "loss.tsv"))
    assert list(tmp_path.iterdir()) == []


def test_a_live_output_under_a_regular_file_is_one_clear_error(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(OutputError, match="out is not a directory"):
        with live_path(tmp_path / "out" / "dvclive"):
            pass


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["file", "directory"]), min_size=1, max_size=4),
    fail_at=st.integers(min_value=0, max_value=12),
)
def test_any_failure_leaves_all_old_or_all_new(tmp_path_factory, kinds, fail_at):
    """Whichever write or rename fails (or none), the outputs are all old or all new."""
    import digits.files

    root = tmp_path_factory.mktemp("outputs")
    paths = [root / f"out{i}" for i in range(len(kinds))]
    for path, kind in zip(paths, kinds, strict=True):
        write_output(path, kind, "old")
    calls = {"replace": 0}
    injected = []
    real_replace = os.replace

    def replace(source, target):
        calls["replace"] += 1
        if calls["replace"] == fail_at:
            injected.append("rename")
            raise OSError(28, "No space left on device", str(target))
        real_replace(source, target)

    digits.files.os.replace = replace
    raised = False
    try:
        with atomic_paths(*paths) as temporaries:
            for index, (tmp, kind) in enumerate(zip(temporaries, kinds, strict=True)):
                if index + 1 == fail_at - 8:  # some runs fail while writing, not renaming
                    injected.append("write")
                    raise OSError(28, "No space left on device", str(tmp))
                write_output(tmp, kind, "new")
    except (OSError, OutputError):
        raised = True
    finally:
        digits.files.os.replace = real_replace
    contents = {read_output(path, kind) for path, kind in zip(paths, kinds, strict=True)}
    assert raised == bool(injected)  # a failure is reported, never swallowed
    assert contents == ({"old"} if injected else {"new"})
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in paths)


def write_output(path, kind: str, text: str) -> None:
    if kind == "file":
        path.write_text(text)
        return
    path.mkdir()
    (path / "a.png").write_text(text)


def read_output(path, kind: str) -> str:
    return (path if kind == "file" else path / "a.png").read_text()


def test_an_output_file_whose_path_is_a_directory_is_refused_before_any_work(tmp_path):
    (tmp_path / "model.keras").mkdir()
    (tmp_path / "history.csv").write_text("old")

    check_output_files(tmp_path / "history.csv", tmp_path / "new.csv")  # a file, nothing yet
    with pytest.raises(
        OutputError, match="model.keras: is a directory, but this output is a file"
    ):
        check_output_files(tmp_path / "history.csv", tmp_path / "model.keras")


def test_an_output_that_is_a_link_is_replaced_not_written_through(tmp_path):
    """With DVC's symlink cache an output links into the cache, which must keep its bytes."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ab12").write_text("cached")
    link = tmp_path / "model.keras"
    link.symlink_to(cache / "ab12")

    with atomic_path(link) as tmp:
        tmp.write_text("new")

    assert not link.is_symlink() and link.read_text() == "new"
    assert (cache / "ab12").read_text() == "cached"


def test_an_output_that_is_a_pipe_or_device_is_written_into_not_replaced(tmp_path):
    """`--markdown /dev/stdout` as root once replaced the system's /dev/stdout with a file."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()

    with atomic_path(fifo) as tmp:
        tmp.write_text("report")
    reader.join(timeout=10)

    assert received == ["report"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_one_place_for_two_outputs_is_refused_before_any_work(tmp_path):
    (tmp_path / "sub").mkdir()
    report = tmp_path / "report.md"
    for twice in [(report, report), (report, tmp_path / "sub" / ".." / "report.md")]:
        with pytest.raises(OutputError, match="report.md: one place for two outputs"):
            with atomic_paths(*twice):
                raise AssertionError("the block ran")


def test_dev_stdout_redirected_to_a_file_gets_the_output_after_what_was_printed(tmp_path):
    """`digits compare --markdown /dev/stdout > report` as root once replaced /dev/stdout."""
    program = (
        "from pathlib import Path\n"
        "from digits.files import atomic_path\n"
        "print('before')\n"
        "with atomic_path(Path('/dev/stdout')) as tmp:\n"
        "    tmp.write_text('report\\n')\n"
        "print('after')\n"
    )
    captured = tmp_path / "captured.txt"
    with open(captured, "w") as sink:
        subprocess.run([sys.executable, "-c", program], stdout=sink, check=True)

    assert captured.read_text() == "before\nreport\nafter\n"
    assert os.path.islink("/dev/stdout") or stat.S_ISCHR(os.lstat("/dev/stdout").st_mode)
