"""Parameter sweeps with DVC's experiment queue, on tiny data: the documented
`dvc exp run --queue -S 'train.epochs=1,3'` + `dvc queue start` + `dvc exp show`, and a sweep
spread over three clones that play three machines, sharing a git origin and a DVC remote."""

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import (
    ALWAYS_RUN,
    DIGITS,
    NOTHING_CHANGED,
    PROJECT_ROOT,
    dvc,
    git,
    md5_hex,
    stages_run,
    venv_env,
)

pytestmark = pytest.mark.integration

SWEEP_TIMEOUT_S = 600
# The README's comparison of experiments: metrics and the params that differ, best first.
COMPARISON = (
    *("exp", "show", "--only-changed", "--drop"),
    r"per_class|data/|src/|stages/|plots/|train\.(accuracy|loss)$|eval\.loss$|step$",
    *("--sort-by", "accuracy", "--sort-order", "desc"),
)


def experiments(project: Path, env: dict) -> dict[str, dict]:
    """Name -> {"state", "epochs", "seed", "accuracy", "last_step"} of every experiment
    `dvc exp show` lists; the last step is DVCLive's, one an epoch from 0."""
    shown = json.loads(dvc(project, "exp", "show", "--json", env=env).stdout)
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state")
            for rev in experiment["revs"]:
                data = rev.get("data") or {}
                params = data.get("params", {}).get("params.yaml", {}).get("data", {})
                metrics = data.get("metrics", {})
                test = metrics.get("metrics/metrics.json", {}).get("data", {})
                live = metrics.get("dvclive/metrics.json", {}).get("data", {})
                found[rev.get("name") or rev["rev"]] = {
                    "state": state,
                    "epochs": params.get("train", {}).get("epochs"),
                    "seed": params.get("train", {}).get("seed"),
                    "accuracy": test.get("accuracy"),
                    "last_step": live.get("step"),
                }
    return found


def run_queue(project: Path, env: dict, count: int) -> dict[str, dict]:
    """`dvc queue start -j 1`, wait until ``count`` experiments have finished, and return
    `experiments`; the queue's worker is stopped in any case."""
    dvc(project, "queue", "start", "-j", "1", env=env)
    return wait_for_queue(project, env, count)


def wait_for_queue(project: Path, env: dict, count: int) -> dict[str, dict]:
    """Wait until the started queue has finished ``count`` experiments, stop its worker, and
    return `experiments`."""
    try:
        deadline = time.monotonic() + SWEEP_TIMEOUT_S
        while time.monotonic() < deadline:
            found = experiments(project, env)
            finished = [e for e in found.values() if e["state"] in ("success", "failed")]
            if len(finished) == count:
                return found
            time.sleep(5)
        raise AssertionError(f"the queue did not finish {count} experiments: {found}")
    finally:
        dvc(project, "queue", "stop", "--kill", env=env, check=False)


def test_queued_two_point_sweep_runs_and_is_listed(tiny_pipeline):
    project, mirror = tiny_pipeline
    env = venv_env(MNIST_MIRROR=str(mirror))

    try:
        queued = dvc(project, "exp", "run", "--queue", "-S", "train.epochs=1,3", env=env)
        assert queued.stdout.count("Queued experiment") == 2
        found = run_queue(project, env, 2)
        assert sorted(e["epochs"] for e in found.values()) == [1, 3]
        assert all(e["state"] == "success" for e in found.values()), found
        baseline = json.loads((project / "metrics/metrics.json").read_text())["accuracy"]
        accuracy = {e["epochs"]: e["accuracy"] for e in found.values()}
        assert accuracy[3] > 0.5 and accuracy[3] != accuracy[1]  # each trained its own model
        assert baseline != accuracy[1]
        assert {e["epochs"]: e["last_step"] for e in found.values()} == {1: 0, 3: 2}
        table = dvc(project, "exp", "show", "--md", env=env).stdout
        assert table.count("Success") == 2
    finally:  # the shared project as it was, for the tests after this one
        dvc(project, "queue", "remove", "--all", env=env, check=False)
        dvc(project, "exp", "remove", "--all-commits", env=env, check=False)


def machine(origin: Path, storage: Path, clone: Path, env: dict) -> Path:
    """A fresh clone of ``origin`` whose DVC remote is ``storage`` (set up as README says)."""
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    dvc(clone, "remote", "add", "--local", "-d", "storage", str(storage), env=env)
    return clone


def digits(project: Path, *args: str, env: dict) -> str:
    done = subprocess.run([DIGITS, *args], cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sweep_spread_over_three_machines(tiny_pipeline, tmp_path):
    """A and B each queue and run half of a 2x2 grid and `dvc exp push origin`; C pulls them
    all, lists them with their metrics, promotes the best to a branch and pulls its model."""
    project, mirror = tiny_pipeline
    env = venv_env(MNIST_MIRROR=str(mirror))
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(origin)], check=True)
    storage = tmp_path / "dvc-storage"
    # Whoever committed the baseline pushed its data: here from the shared project's cache.
    publisher = machine(origin, storage, tmp_path / "publisher", env)
    dvc(publisher, "cache", "dir", "--local", str(project / ".dvc/cache"), env=env)
    dvc(publisher, "push", env=env)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"train": {"epochs": [1, 2], "seed": [1, 2]}}))

    workers = [machine(origin, storage, tmp_path / name, env) for name in ("a", "b")]
    for index, worker in enumerate(workers, start=1):  # the two machines run at once
        dvc(worker, "pull", env=env)
        queued = digits(worker, "sweep", str(grid), "--shard", f"{index}/2", env=env)
        assert queued.count("dvc exp run --queue") == 2
        dvc(worker, "queue", "start", "-j", "1", env=env)
    for worker in workers:
        ran = wait_for_queue(worker, env, 2)
        assert all(e["state"] == "success" for e in ran.values()), ran
        assert git(worker, "status", "--porcelain") == "", "queued runs leave the workspace"
        dvc(worker, "exp", "push", "origin", env=env)

    compare = machine(origin, storage, tmp_path / "c", env)
    dvc(compare, "exp", "pull", "origin", env=env)
    found = experiments(compare, env)
    assert sorted((e["epochs"], e["seed"]) for e in found.values()) == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]
    assert all(isinstance(e["accuracy"], float) for e in found.values()), found
    best = max(found, key=lambda name: found[name]["accuracy"])
    dvc(compare, "exp", "branch", best, "best", env=env)
    git(compare, "switch", "-q", "best")
    dvc(compare, "pull", env=env)
    lock = yaml.safe_load((compare / "dvc.lock").read_text())
    model = next(o for o in lock["stages"]["train"]["outs"] if o["path"] == "data/model.keras")
    assert md5_hex((compare / "data/model.keras").read_bytes()) == model["md5"]
    metrics = json.loads((compare / "metrics/metrics.json").read_text())
    assert metrics["accuracy"] == found[best]["accuracy"]
    assert json.loads(dvc(compare, "status", "--json", env=env).stdout) == NOTHING_CHANGED

    git(compare, "switch", "-q", "-")
    shown = dvc(compare, *COMPARISON, "--csv", env=env).stdout.splitlines()
    assert shown[0].split(",") == [
        *("Experiment", "rev", "typ", "Created", "eval.accuracy", "accuracy", "loss", "errors"),
        *("train.seed", "train.epochs"),  # only the params that differ
    ]
    rows = [line.split(",") for line in shown[3:]]  # after the workspace and baseline rows
    assert [row[0] for row in rows][0] == best
    assert [float(row[5]) for row in rows] == sorted(
        (e["accuracy"] for e in found.values()), reverse=True
    )
    assert len(dvc(compare, *COMPARISON, "--md", env=env).stdout) < 2000


def test_readme_shows_the_tested_comparison():
    assert f"dvc {shlex.join(COMPARISON)}" in (PROJECT_ROOT / "README.md").read_text()


def test_temp_run_leaves_the_workspace_and_a_plain_run_changes_it(tiny_pipeline):
    """As the README says: `dvc exp run --temp` leaves every file as it was; a plain `dvc exp
    run` applies its results; `git checkout -- . && dvc checkout` goes back."""
    project, mirror = tiny_pipeline
    env = venv_env(MNIST_MIRROR=str(mirror))
    before = git(project, "rev-parse", "HEAD")
    try:
        dvc(project, "exp", "run", "--temp", "-S", "train.epochs=4", env=env)
        assert git(project, "status", "--porcelain") == ""
        dvc(project, "exp", "run", "-S", "train.epochs=4", env=env)  # from the run cache
        changed = {line[3:] for line in git(project, "status", "--porcelain").splitlines()}
        assert {"params.yaml", "dvc.lock", "metrics/metrics.json"} <= changed
        git(project, "checkout", "--", ".")
        dvc(project, "checkout", env=env)
        assert git(project, "status", "--porcelain") == ""
        assert json.loads(dvc(project, "status", "--json", env=env).stdout) == NOTHING_CHANGED
        assert stages_run(dvc(project, "repro", env=env).stdout) == ALWAYS_RUN
    finally:
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=project, check=True)
        dvc(project, "checkout", "--force", env=env, check=False)
        dvc(project, "exp", "remove", "--all-commits", env=env, check=False)
        assert git(project, "rev-parse", "HEAD") == before
