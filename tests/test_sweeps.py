"""A queued parameter sweep with DVC's experiment queue, on tiny data: the documented
`dvc exp run --queue -S 'train.epochs=1,3'` + `dvc queue start` + `dvc exp show`."""

import json
import time
from pathlib import Path

import pytest
from conftest import dvc, venv_env

pytestmark = pytest.mark.integration

SWEEP_TIMEOUT_S = 600


def experiments(project: Path, env: dict) -> dict[str, dict]:
    """Name -> {"state", "epochs", "accuracy", "last_step"} of every experiment `dvc exp show`
    lists; the last step is DVCLive's, one an epoch from 0."""
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
                    "accuracy": test.get("accuracy"),
                    "last_step": live.get("step"),
                }
    return found


def test_queued_two_point_sweep_runs_and_is_listed(tiny_pipeline):
    project, mirror = tiny_pipeline
    env = venv_env(MNIST_MIRROR=str(mirror))

    queued = dvc(project, "exp", "run", "--queue", "-S", "train.epochs=1,3", env=env)
    assert queued.stdout.count("Queued experiment") == 2
    dvc(project, "queue", "start", "-j", "1", env=env)
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while time.monotonic() < deadline:
        found = experiments(project, env)
        if len(found) == 2 and all(e["state"] in ("success", "failed") for e in found.values()):
            break
        time.sleep(2)
    dvc(project, "queue", "stop", "--kill", env=env, check=False)
    assert sorted(e["epochs"] for e in found.values()) == [1, 3]
    assert all(e["state"] == "success" for e in found.values()), found
    baseline = json.loads((project / "metrics/metrics.json").read_text())["accuracy"]
    accuracy = {e["epochs"]: e["accuracy"] for e in found.values()}
    assert accuracy[3] > 0.5 and accuracy[3] != accuracy[1]  # each trained its own model
    assert baseline != accuracy[1]
    assert {e["epochs"]: e["last_step"] for e in found.values()} == {1: 0, 3: 2}
    table = dvc(project, "exp", "show", "--md", env=env).stdout
    assert table.count("Success") == 2
    dvc(project, "exp", "remove", "--all-commits", env=env)
