"""The pipeline through real `dvc repro`, in a copy of the project: tiny synthetic data (fast),
then the real MNIST from $MNIST_MIRROR (slow)."""

import ast
import csv
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import (
    ALWAYS_RUN,
    NOTHING_CHANGED,
    PROJECT_ROOT,
    STAGES,
    cannot_run,
    copy_project,
    dvc,
    file_contents,
    load_project_params,
    md5_hex,
    stages_run,
    venv_env,
)

from digits.machine import this_processor


def set_param(project: Path, section: str, key: str, value) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def outputs(project: Path) -> dict[str, bytes]:
    """Every file under data/, metrics/, plots/ and dvclive/ but temporary ones, with its
    bytes."""
    return file_contents(project, ("data", "metrics", "plots", "dvclive"))


def restore(project: Path, env: dict) -> None:
    """Back to the committed good state: git for params, lock, metrics and plot data; DVC for
    data and model."""
    subprocess.run(["git", "checkout", "--", "."], cwd=project, check=True)
    dvc(project, "checkout", "--force", env=env)


@pytest.mark.integration
def test_tiny_pipeline_writes_every_declared_output(tiny_project):
    project, _ = tiny_project
    metrics = json.loads((project / "metrics/metrics.json").read_text())
    assert metrics["accuracy"] >= 0.5  # the tiny digits are easy: far above chance
    assert sorted(metrics["per_class_accuracy"]) == [str(d) for d in range(10)]
    assert (
        (project / "plots/training.csv")
        .read_text()
        .startswith("epoch,accuracy,loss,val_accuracy,val_loss")
    )
    assert (project / "plots/confusion.csv").read_text().startswith("actual,predicted\n")
    assert_live_log_matches_history(project)
    for name in ("confusion_matrix.png", "learning_curves.png", "misclassified.png"):
        assert (project / "plots/images" / name).stat().st_size > 1000
    assert (project / "data/model.keras").is_file()
    assert sorted(p.name for p in (project / "data/raw").iterdir()) == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ]


def assert_live_log_matches_history(project: Path) -> None:
    """DVCLive's log holds the epochs of plots/training.csv: a TSV per metric (step and value,
    no timestamp) and the last epoch with its step in dvclive/metrics.json."""
    history = list(csv.DictReader((project / "plots/training.csv").open()))
    live = project / "dvclive"
    for split, prefix in (("train", ""), ("eval", "val_")):
        for metric in ("loss", "accuracy"):
            rows = list(
                csv.reader((live / f"plots/metrics/{split}/{metric}.tsv").open(), "excel-tab")
            )
            assert rows[0] == ["step", metric]
            assert [int(step) for step, _ in rows[1:]] == list(range(len(history)))
            logged = [float(value) for _, value in rows[1:]]
            assert logged == pytest.approx([float(row[prefix + metric]) for row in history])
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == len(history) - 1
    assert summary["eval"]["accuracy"] == pytest.approx(float(history[-1]["val_accuracy"]))


@pytest.mark.integration
def test_second_repro_runs_nothing(tiny_project):
    project, env = tiny_project
    result = dvc(project, "repro", env=env)
    assert stages_run(result.stdout) == ALWAYS_RUN
    assert json.loads(dvc(project, "status", "--json", env=env).stdout) == NOTHING_CHANGED


@pytest.mark.integration
def test_plots_show_renders_both_confusion_matrices_and_the_live_curves(tiny_project):
    project, env = tiny_project
    shown = json.loads(dvc(project, "plots", "show", "--json", env=env).stdout)["data"]
    normalized = json.dumps(shown["confusion_normalized"][0]["content"])
    assert "percent_of_y" in normalized  # DVC's confusion_normalized template
    assert '"field": "actual"' in normalized  # a row per actual digit: rows sum to 1
    for name in ("loss", "accuracy"):
        values = shown[name][0]["content"]["data"]["values"]
        assert {value["filename"] for value in values} == {f"train/{name}.tsv", f"eval/{name}.tsv"}
    assert "dvclive/plots/metrics/eval/loss.tsv" in shown


@pytest.mark.integration
def test_params_change_reruns_only_downstream_stages_and_training_names_its_processor(
    tiny_project,
):
    project, env = tiny_project
    set_param(project, "train", "epochs", 1)
    status = json.loads(dvc(project, "status", "--json", env=env).stdout)
    assert sorted(status) == ["evaluate", "own_version", "train"]
    result = dvc(project, "repro", env=env)
    assert stages_run(result.stdout) == [*ALWAYS_RUN, "train", "evaluate"]
    assert f"train: on {this_processor()}: its kind decides the bytes" in result.stderr
    restore(project, env)


@pytest.mark.integration
def test_misspelt_param_fails_repro_with_a_suggestion(tiny_project):
    project, env = tiny_project
    before = outputs(project)
    set_param(project, "train", "epoch", 3)
    result = dvc(project, "repro", env=env, check=False)
    assert result.returncode != 0
    assert "train.epoch: unknown key; did you mean 'train.epochs'?" in result.stderr
    restore(project, env)
    assert outputs(project) == before


@pytest.mark.integration
def test_unknown_section_fails_repro_though_no_stage_reads_it(tiny_project):
    project, env = tiny_project
    before = outputs(project)
    path = project / "params.yaml"
    path.write_text(path.read_text() + "trian:\n  epochs: 3\n")
    result = dvc(project, "repro", env=env, check=False)
    assert result.returncode != 0
    assert stages_run(result.stdout) == ALWAYS_RUN  # the first stage to run reads params.yaml
    assert "trian: unknown key; did you mean 'train'?" in result.stderr
    restore(project, env)
    assert outputs(project) == before


@pytest.mark.integration
def test_damaged_files_come_back_with_the_documented_commands(tiny_project):
    """The README's fixes for a damaged raw file and a damaged model, run exactly as written."""
    project, env = tiny_project
    before = outputs(project)
    (project / "data/model.keras").write_bytes(b"PK\x03\x04 truncated")
    (project / "data/raw/train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01 damaged")
    readme = (PROJECT_ROOT / "README.md").read_text()
    for command in ("dvc checkout --force data/raw", "dvc checkout --force data/model.keras"):
        assert f"`{command}`" in readme
        dvc(project, *command.split()[1:], env=env)
    assert outputs(project) == before


@pytest.mark.integration
def test_interrupted_repro_is_undone_by_the_commands_it_prints(tiny_project):
    """Ctrl-C during `dvc repro` mid-training: DVC has removed train's outputs; the two
    commands the stage prints bring every earlier output back byte for byte, and the next
    `dvc repro` has nothing left to do."""
    project, env = tiny_project
    before = outputs(project)
    set_param(project, "train", "epochs", 500)
    repro = subprocess.Popen(
        ["dvc", "repro"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    for line in repro.stdout:
        if line.startswith("train: epoch 3/"):
            break
    os.killpg(repro.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    printed = repro.communicate(timeout=120)[0]
    advice = re.search(
        r"interrupted: .*`(dvc checkout --force)` and `(git checkout -- [^`]+)`", printed
    )
    assert advice, printed
    for command in advice.groups():
        subprocess.run(command.split(), cwd=project, env=env, check=True, capture_output=True)
    assert outputs(project) == before
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=project, check=True)
    assert stages_run(dvc(project, "repro", env=env).stdout) == ALWAYS_RUN


@pytest.mark.slow
def test_real_pipeline_reproduces_committed_results(tmp_path):
    if not os.environ.get("MNIST_MIRROR"):
        cannot_run("MNIST_MIRROR is unset: this test needs the real MNIST files, not the network")
    project = copy_project(tmp_path / "project")
    committed = {
        path: path.read_bytes()
        for top in ("metrics", "plots", "dvclive")
        for path in (project / top).rglob("*")
        if path.is_file()
    }
    for path in committed:  # else DVC sees evaluate's outputs match and rightly skips it
        path.unlink()
    mirror = os.environ["MNIST_MIRROR"]
    if "://" not in mirror:  # a directory relative to here, not to the copy the test runs in
        mirror = str(Path(mirror).resolve())
    env = venv_env(MNIST_MIRROR=mirror)

    result = dvc(project, "repro", env=env)
    assert stages_run(result.stdout) == list(STAGES)
    metrics = json.loads((project / "metrics/metrics.json").read_text())
    committed_metrics = json.loads((PROJECT_ROOT / "metrics/metrics.json").read_text())
    # First the readable difference. Another kind of processor trains other bytes: README
    # "Which machine" names the kind that committed these.
    assert metrics["accuracy"] == committed_metrics["accuracy"], f"trained on {this_processor()}"
    for path, content in committed.items():
        assert path.read_bytes() == content, f"{path.name} differs from the committed one"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    committed_lock = yaml.safe_load((PROJECT_ROOT / "dvc.lock").read_text())
    for stage in STAGES:
        assert lock["stages"][stage]["outs"] == committed_lock["stages"][stage]["outs"], stage

    again = dvc(project, "repro", env=env)
    assert stages_run(again.stdout) == ALWAYS_RUN

    set_param(project, "train", "epochs", 1)
    assert stages_run(dvc(project, "repro", env=env).stdout) == [*ALWAYS_RUN, "train", "evaluate"]


def test_committed_lock_matches_the_code_params_and_results():
    """main carries dvc.lock, metrics and plot data from a real run of its own code and
    params.yaml: a change to either without `dvc repro` and a commit of the results fails."""
    lock = yaml.safe_load((PROJECT_ROOT / "dvc.lock").read_text())
    params = load_project_params()
    stale = []
    for name, stage in lock["stages"].items():
        for entry in stage.get("deps", []) + stage.get("outs", []):
            path = PROJECT_ROOT / entry["path"]
            tracked_by_git = entry in stage.get("deps", []) or not path.is_relative_to(
                PROJECT_ROOT / "data"
            )
            if path.is_file() and tracked_by_git and md5_hex(path.read_bytes()) != entry["md5"]:
                stale.append(f"{name}: {entry['path']}")
        for key, value in stage.get("params", {}).get("params.yaml", {}).items():
            node = params
            for part in key.split("."):
                node = node[part]
            if node != value:
                stale.append(f"{name}: params {key}")
    assert stale == [], f"dvc.lock does not match (run `dvc repro` and commit): {stale}"


def imported_modules(path: Path) -> set[str]:
    """The ``src/digits/*.py`` files that ``path`` imports, directly or through each other."""
    found: set[str] = set()
    pending = [path]
    while pending:
        tree = ast.parse(pending.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.startswith("digits.")]
            elif isinstance(node, ast.ImportFrom) and node.module == "digits":
                names = [f"digits.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("digits."):
                names = [node.module]
            for name in names:
                module = f"src/{name.replace('.', '/')}.py"
                if module not in found:
                    found.add(module)
                    pending.append(PROJECT_ROOT / module)
    return found


def test_each_stage_declares_the_code_it_runs():
    """dvc.yaml is the map: a stage whose code changes must rerun, so every shared module a
    stage script imports (directly or not) is one of its deps."""
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        script = stage["cmd"].split()[1]
        declared = {dep for dep in stage["deps"] if dep.startswith(("stages/", "src/"))}
        needed = imported_modules(PROJECT_ROOT / script) | {script}
        assert needed <= declared, f"{name}: add {sorted(needed - declared)} to its deps"
        assert declared <= needed, f"{name}: {sorted(declared - needed)} are not used"
