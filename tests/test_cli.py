"""The `digits` command lists its tools and turns their errors into one line and a status."""

import subprocess

import pytest
from conftest import DIGITS

from digits.cli import COMMANDS, build_parser
from digits.errors import DigitsError
from digits.stage import run_tool


def test_help_lists_every_tool():
    help_text = build_parser().format_help()
    for name in ("predict", "add", "compare", "bench", "preset", "serve", "share", "sweep"):
        assert name in COMMANDS and f"    {name} " in help_text


@pytest.mark.integration
def test_console_script_is_installed_and_runs():
    done = subprocess.run([DIGITS, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "predict" in done.stdout


def test_a_project_error_is_one_line_and_status_1(capsys):
    def fails():
        raise DigitsError("params.yaml: train.epochs: expected >= 1, got 0")

    assert run_tool(fails) == 1
    assert capsys.readouterr().err == "error: params.yaml: train.epochs: expected >= 1, got 0\n"


def test_an_os_error_names_the_path(capsys, tmp_path):
    def fails():
        (tmp_path / "missing" / "out.json").write_text("x")

    assert run_tool(fails) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing/out.json: No such file or directory" in err
    assert len(err.splitlines()) == 1


def test_ctrl_c_is_status_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert run_tool(interrupted) == 130
    assert capsys.readouterr().err.startswith("interrupted")


def test_an_unforeseen_exception_is_one_line_too(capsys, monkeypatch):
    monkeypatch.delenv("DIGITS_DEBUG", raising=False)

    def buggy():
        raise TypeError("unsupported operand")

    assert run_tool(buggy) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: unexpected TypeError: unsupported operand")
        and "DIGITS_DEBUG" in err
    )
    assert len(err.splitlines()) == 1
