"""The measuring scripts in scripts/ (which no stage runs): each starts, and eval_predict scores
every style it renders with the model it is given."""

import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT

SCRIPTS = sorted((PROJECT_ROOT / "scripts").glob("*.py"))


def run_script(script, *args, cwd=PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.integration
@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_each_script_starts(script):
    result = run_script(script, "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")


@pytest.mark.integration
def test_eval_predict_scores_every_style_and_overall(model_path):
    from digits.renderings import STYLES

    result = run_script(
        PROJECT_ROOT / "scripts/eval_predict.py",
        "--source",
        "elsewhere",
        "--count",
        10,
        "--model",
        model_path,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"10 elsewhere digits per style, model {model_path}"
    assert [line.split("  ")[0].strip() for line in lines[1:]] == [*STYLES, "overall"]
    assert "(0 unreadable" in lines[1]


@pytest.mark.integration
def test_eval_predict_outside_a_project_asks_for_the_model(tmp_path):
    result = run_script(PROJECT_ROOT / "scripts/eval_predict.py", "--count", 1, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: no digits project here")
    assert "or give --model" in result.stderr and "Traceback" not in result.stderr
