"""Bad input and interruption, stage by stage: each failure exits non-zero with a message naming
the file or key, and earlier outputs survive byte for byte."""

import hashlib
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import PROJECT_ROOT, ctrl_c_as_in_a_terminal, tiny_workspace, venv_env, write_mirror

from digits.idx import encode_idx

pytestmark = pytest.mark.integration

STAGE_COMMANDS = {
    name: shlex.split(stage["cmd"])
    for name, stage in yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"].items()
}


def run_stage(workdir: Path, stage: str, env: dict, **popen) -> subprocess.CompletedProcess:
    """Run ``stage`` the way dvc.yaml does, in ``workdir``, with this checkout's scripts."""
    return subprocess.run(stage_argv(stage), cwd=workdir, env=env, capture_output=True, text=True)


def stage_argv(stage: str) -> list[str]:
    _python, script, *args = STAGE_COMMANDS[stage]
    return [sys.executable, str(PROJECT_ROOT / script), *args]


def snapshot(directory: Path) -> dict[str, str]:
    """Relative path -> MD5 of every file under ``directory``."""
    return {
        str(path.relative_to(directory)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A workdir where all four stages ran directly on tiny data: (workdir, mirror, env)."""
    root = tmp_path_factory.mktemp("robust")
    workdir, mirror = tiny_workspace(root, project=False)
    env = venv_env(MNIST_MIRROR=str(mirror))
    for stage in STAGE_COMMANDS:
        result = run_stage(workdir, stage, env)
        assert result.returncode == 0, result.stderr
    return workdir, mirror, env


@pytest.fixture
def work(finished, tmp_path) -> tuple[Path, Path, dict]:
    """A private copy of the finished workdir, for one test to break."""
    workdir, mirror, env = finished
    copy = tmp_path / "work"
    shutil.copytree(workdir, copy)
    return copy, mirror, env


def assert_fails_naming(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, result.stderr
    assert any(line.startswith("error: ") for line in result.stderr.splitlines()), result.stderr
    for word in words:
        assert word in result.stderr, f"{word!r} not in: {result.stderr}"


def test_missing_mirror_directory(work, tmp_path):
    workdir, _, env = work
    before = snapshot(workdir)
    for path in (workdir / "data/raw").iterdir():
        path.unlink()  # force a fetch
    result = run_stage(workdir, "download", {**env, "MNIST_MIRROR": str(tmp_path / "nowhere")})
    assert_fails_naming(result, "MNIST_MIRROR=", "nowhere", "neither an existing directory")
    assert snapshot(workdir / "data/prepared") == {
        k.removeprefix("data/prepared/"): v
        for k, v in before.items()
        if k.startswith("data/prepared/")
    }


def test_checksum_mismatch_everywhere_lists_each_source(work, tmp_path):
    workdir, _, env = work
    bad_mirror = write_mirror(tmp_path / "bad", {"train_labels": encode_idx(np.arange(10))})
    target = workdir / "data/raw/train-labels-idx1-ubyte"
    target.unlink()
    result = run_stage(workdir, "download", {**env, "MNIST_MIRROR": str(bad_mirror)})
    assert_fails_naming(result, "could not fetch train-labels-idx1-ubyte.gz", "MD5")
    assert not target.exists()
    assert not list((workdir / "data/raw").glob(".*tmp*"))


def test_corrupt_raw_file_names_it(work):
    workdir, _, env = work
    raw = workdir / "data/raw/t10k-images-idx3-ubyte"
    raw.write_bytes(b"\x1f\x8b" + raw.read_bytes()[2:])
    before = snapshot(workdir / "data/prepared")
    result = run_stage(workdir, "preprocess", env)
    assert_fails_naming(result, "t10k-images-idx3-ubyte", "bad IDX magic number")
    assert snapshot(workdir / "data/prepared") == before


def test_missing_prepared_arrays_name_the_producing_stage(work):
    workdir, _, env = work
    (workdir / "data/prepared/x_validation.npy").unlink()
    before = snapshot(workdir / "data")
    result = run_stage(workdir, "train", env)
    assert_fails_naming(result, "x_validation.npy: missing", "dvc repro preprocess")
    assert snapshot(workdir / "data") == before


def test_a_corrupt_model_keeps_the_earlier_metrics(work):
    workdir, _, env = work
    (workdir / "data/model.keras").write_bytes(b"PK\x03\x04 truncated")
    before = snapshot(workdir / "metrics") | snapshot(workdir / "plots")
    assert_fails_naming(run_stage(workdir, "evaluate", env), "data/model.keras")
    assert snapshot(workdir / "metrics") | snapshot(workdir / "plots") == before


def test_evaluate_replaces_all_its_outputs_or_none(work):
    """A later output that cannot be written (a file where the images directory goes) leaves
    the earlier ones as they were, not a mix of old and new."""
    workdir, _, env = work
    shutil.rmtree(workdir / "plots/images")
    (workdir / "plots/images").write_text("not a directory")
    (workdir / "data/prepared/x_test.npy").write_bytes(  # so the new metrics would differ
        (workdir / "data/prepared/x_validation.npy").read_bytes()
    )
    (workdir / "data/prepared/y_test.npy").write_bytes(
        (workdir / "data/prepared/y_validation.npy").read_bytes()
    )
    before = snapshot(workdir / "metrics") | snapshot(workdir / "plots")
    result = run_stage(workdir, "evaluate", env)
    assert_fails_naming(result, "plots/images: is a file")
    assert snapshot(workdir / "metrics") | snapshot(workdir / "plots") == before


def test_a_live_log_that_cannot_be_written_is_one_error_line(work):
    workdir, _, env = work
    before = snapshot(workdir)
    (workdir / "not-a-directory").write_text("a file")
    argv = [arg if arg != "dvclive" else "not-a-directory/dvclive" for arg in stage_argv("train")]
    result = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
    assert_fails_naming(result, "not-a-directory/dvclive", "not-a-directory is not a directory")
    assert "Traceback" not in result.stderr
    (workdir / "not-a-directory").unlink()
    assert snapshot(workdir) == before


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("data/model.h5", "data/model.h5: a model is saved in Keras' .keras format"),
        (
            "data/model-dir.keras",
            "data/model-dir.keras: is a directory, but this output is a file",
        ),
    ],
)
def test_a_model_path_train_cannot_write_stops_it_before_training(work, model, expected):
    workdir, _, env = work
    (workdir / "data/model-dir.keras").mkdir()
    before = snapshot(workdir)
    argv = [arg if arg != "data/model.keras" else model for arg in stage_argv("train")]

    result = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)

    assert_fails_naming(result, expected)
    assert "epoch" not in result.stdout + result.stderr.lower()
    assert snapshot(workdir) == before


def test_only_train_refuses_a_model_too_large_for_this_machine(work):
    """A model trained on a larger machine (restored from the run cache, say) is evaluated here."""
    workdir, _, env = work
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["train"]["hidden_units"] = [2_000_000, 2_000_000]  # 16 TB to train
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))

    assert_fails_naming(run_stage(workdir, "train", env), "train.hidden_units", "of memory here")
    result = run_stage(workdir, "evaluate", env)
    assert result.returncode == 0, result.stderr


def test_bad_params_stop_before_any_data_is_read(work):
    workdir, _, env = work
    shutil.rmtree(workdir / "data")  # a stage that read data first would report missing files
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["train"]["dropout"] = 1.5
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in STAGE_COMMANDS:
        assert_fails_naming(run_stage(workdir, stage, env), "train.dropout", "[0, 1)")


def start_training(workdir: Path, env: dict, epochs: int) -> subprocess.Popen:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["train"].update(epochs=epochs, batch_size=8, hidden_units=[256])
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.Popen(
        stage_argv("train"),
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )


def wait_for_epoch(process: subprocess.Popen) -> None:
    for line in process.stdout:
        if line.startswith("train: epoch 2/"):
            return
    raise AssertionError(f"training ended before its second epoch: {process.wait()}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_leaves_earlier_outputs_intact(work, sig):
    workdir, _, env = work
    before = snapshot(workdir)
    process = start_training(workdir, env, epochs=10_000)  # far more than it runs
    wait_for_epoch(process)
    process.send_signal(sig)
    try:
        rest, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"training still running 120 s after {sig.name}") from None
    status = process.returncode
    if sig == signal.SIGKILL:
        assert status == -signal.SIGKILL
    else:  # Ctrl-C, and what CI runners and `timeout` send
        assert status == 130 and "interrupted" in rest
    after = snapshot(workdir)
    after.pop("params.yaml"), before.pop("params.yaml")
    leftovers = {k: v for k, v in after.items() if any(p.startswith(".") for p in Path(k).parts)}
    kept = {k: v for k, v in after.items() if k not in leftovers}
    if sig != signal.SIGKILL:
        assert kept == before
        assert leftovers == {}  # a clean interrupt removes its temporary files
        return
    # Killed: only DVCLive's log, written as training goes, is partly new; the previous one
    # waits beside it, whole.
    assert {k: v for k, v in kept.items() if not k.startswith("dvclive/")} == {
        k: v for k, v in before.items() if not k.startswith("dvclive/")
    }
    assert sorted(k.split("/", 1)[1] for k in leftovers if k.startswith(".dvclive.")) == sorted(
        k.split("/", 1)[1] for k in before if k.startswith("dvclive/")
    )


def test_download_killed_midway_leaves_no_file(work, tmp_path):
    """A stalled HTTP transfer killed with SIGKILL: the target never appears, not even partly."""
    workdir, _, env = work
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/"
    target = workdir / "data/raw/train-images-idx3-ubyte"
    target.unlink()
    others = snapshot(workdir / "data/raw")
    process = subprocess.Popen(
        stage_argv("download"), cwd=workdir, env={**env, "MNIST_MIRROR": url},
        stderr=subprocess.PIPE,
    )  # fmt: skip
    connection, _ = server.accept()
    connection.recv(4096)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"\x1f\x8b" * 500)
    time.sleep(0.5)  # it reads that much, then waits for the rest: killed midway
    process.kill()
    process.wait(timeout=30)
    connection.close()
    server.close()
    assert not target.exists()
    assert snapshot(workdir / "data/raw") == others  # no partial or temporary file either
