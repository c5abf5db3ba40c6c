"""Multi-worker training: TF_CONFIG parsing, batch split, who keeps outputs, and two real workers
on 127.0.0.1 training the tiny data through stages/train.py."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml
from conftest import (
    PROJECT_ROOT,
    files_under,
    load_project_params,
    tiny_mnist_files,
    tiny_params,
    write_mirror,
)

from digits.data import save_split
from digits.distribute import (
    DistributeError,
    Worker,
    join_cluster,
    params_for_worker,
    parse_tf_config,
    peer_timeout_s,
    per_worker_batch_size,
    wait_for_peers,
    worker_from_env,
    worker_output,
)
from digits.params import parse_params

TWO_WORKERS = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}


def tf_config(cluster: dict, task_type: str, index) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize(
    ("cluster", "task_type", "index", "expected"),
    [
        (TWO_WORKERS, "worker", 0, Worker("worker", 0, n_workers=2, is_chief=True)),
        (TWO_WORKERS, "worker", 1, Worker("worker", 1, n_workers=2, is_chief=False)),
        # With a "chief" job, worker 0 is an ordinary worker and the chief counts as one more.
        ({"chief": ["h0:1"], **TWO_WORKERS}, "chief", 0, Worker("chief", 0, 3, is_chief=True)),
        ({"chief": ["h0:1"], **TWO_WORKERS}, "worker", 0, Worker("worker", 0, 3, is_chief=False)),
        # Jobs that do not train (parameter servers) are not counted.
        ({"ps": ["h9:1"], **TWO_WORKERS}, "worker", 1, Worker("worker", 1, 2, is_chief=False)),
    ],
)
def test_parse_tf_config(cluster, task_type, index, expected):
    worker = parse_tf_config(tf_config(cluster, task_type, index))
    assert dataclasses.replace(worker, addresses={}) == expected
    assert len(worker.addresses) == expected.n_workers
    assert worker.addresses[worker.name] == cluster[task_type][index]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "TF_CONFIG: not valid JSON"),
        ("[]", r"TF_CONFIG: expected a JSON object \{\"cluster\": .*, got \[\]"),
        ("null", r"TF_CONFIG: expected a JSON object .*, got null"),
        ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG: cluster: expected a JSON object"),
        (json.dumps({"cluster": TWO_WORKERS}), "TF_CONFIG: task: expected a JSON object"),
        (tf_config(TWO_WORKERS, "worker", 2), "task.index: expected an index into cluster.worker"),
        (tf_config(TWO_WORKERS, "worker", "0"), "task.index: expected an index"),
        (tf_config(TWO_WORKERS, "ps", 0), "task.type: expected one of chief, worker, got 'ps'"),
        (tf_config({"worker": "h1:1"}, "worker", 0), "cluster.worker: expected a list"),
        (tf_config({"chief": ["a:1", "b:1"]}, "chief", 0), "cluster.chief: expected at most one"),
    ],
)
def test_parse_tf_config_names_what_is_wrong(text, message):
    with pytest.raises(DistributeError, match=message):
        parse_tf_config(text)


def test_worker_from_env_is_none_without_tf_config():
    assert worker_from_env({}) is None
    assert worker_from_env({"TF_CONFIG": "  "}) is None
    assert worker_from_env({"TF_CONFIG": tf_config(TWO_WORKERS, "worker", 1)}).index == 1


def test_without_tf_config_nothing_changes(tmp_path):
    """No strategy, no scope, the params as they are, and every output at its own path."""
    params = parse_params(load_project_params()).train
    cluster = join_cluster(params, environ={})
    assert cluster.strategy is None and cluster.params is params and cluster.is_chief
    with cluster.scope():
        assert not tf.distribute.has_strategy()
    with cluster.output(tmp_path / "model.keras") as path:
        assert path == tmp_path / "model.keras"


def test_batch_size_is_global_and_must_split_evenly():
    assert per_worker_batch_size(128, 1) == 128
    assert per_worker_batch_size(128, 2) == 64
    with pytest.raises(DistributeError, match="train.batch_size 128 .* use a multiple of 3"):
        per_worker_batch_size(128, 3)


def test_workers_train_without_xla_one_step_per_call():
    params = parse_params(load_project_params()).train
    assert params.steps_per_execution > 1 and params.jit_compile
    on_worker = params_for_worker(params)
    assert on_worker == dataclasses.replace(
        params, jit_compile=False, compiled_loop=False, steps_per_execution=1
    )


def test_the_chief_writes_its_outputs_in_place(tmp_path):
    chief = Worker("worker", 0, n_workers=2, is_chief=True)
    with worker_output(chief, tmp_path / "plots/training.csv") as path:
        assert path == tmp_path / "plots/training.csv"


def test_other_workers_write_to_a_directory_that_is_removed(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    other = Worker("worker", 1, n_workers=2, is_chief=False)
    with worker_output(other, tmp_path / "data/model.keras") as path:
        assert path.name == "model.keras"
        assert path.parent.parent == scratch
        path.write_bytes(b"a worker's copy")
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "data").exists()


TRAIN_SCRIPT = PROJECT_ROOT / "stages/train.py"


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (the OS picks them; a race with another process is possible
    but unlikely)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_stage(script: str, *args: str, cwd: Path, env: dict) -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "stages" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stderr}"


@pytest.mark.integration
def test_two_workers_train_and_only_the_chief_keeps_outputs(tmp_path):
    files = tiny_mnist_files()
    mirror = write_mirror(tmp_path / "mirror", files)
    params = tiny_params(files)
    params["train"]["dropout"] = 0.2  # the default's dropout, its seeds mirrored too
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(MNIST_MIRROR=str(mirror), CUDA_VISIBLE_DEVICES="-1")
    run_stage("download.py", "--out-dir", "data/raw", cwd=tmp_path, env=env)
    run_stage(
        "preprocess.py",
        "--raw-dir",
        "data/raw",
        "--out-dir",
        "data/prepared",
        cwd=tmp_path,
        env=env,
    )
    version = ("--own-dir", "data/own", "--out", "data/own_version.json")
    run_stage("own_version.py", *version, cwd=tmp_path, env=env)
    own = ("--own-dir", "data/own", "--version", "data/own_version.json")
    run_stage("own.py", *own, "--out-dir", "data/own_prepared", cwd=tmp_path, env=env)

    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        out, scratch = tmp_path / f"worker{index}", tmp_path / f"tmp{index}"
        scratch.mkdir()
        worker_env = dict(env, TF_CONFIG=tf_config(cluster, "worker", index), TMPDIR=str(scratch))
        command = [
            sys.executable,
            str(TRAIN_SCRIPT),
            *("--params", "params.yaml", "--data-dir", "data/prepared"),
            *("--own-dir", "data/own_prepared"),
            *("--model", str(out / "data/model.keras")),
            *("--history", str(out / "plots/training.csv")),
            *("--live-dir", str(out / "dvclive")),
        ]
        log = (tmp_path / f"worker{index}.log").open("w")
        process = subprocess.Popen(
            command, cwd=tmp_path, env=worker_env, stdout=log, stderr=subprocess.STDOUT
        )
        workers.append(process)
    try:
        codes = [process.wait(timeout=100) for process in workers]
    finally:
        for process in workers:
            process.kill()
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n\n".join(logs)

    assert "worker 0 of 2 training tasks (chief: keeps the outputs): 16 of every 32" in logs[0]
    assert "worker 1 of 2 training tasks: 16 of every 32" in logs[1]
    assert (tmp_path / "worker0/data/model.keras").stat().st_size > 1000
    curves = (tmp_path / "worker0/plots/training.csv").read_text().splitlines()
    assert curves[0].startswith("epoch,accuracy,loss,val_accuracy,val_loss")
    assert len(curves) == 1 + params["train"]["epochs"]
    live = json.loads((tmp_path / "worker0/dvclive/metrics.json").read_text())
    assert live["step"] == params["train"]["epochs"] - 1  # the chief's DVCLive log, only
    assert files_under(tmp_path / "worker1") == []
    assert files_under(tmp_path / "tmp1") == []


def worker_of_two(tmp_ports: list[int], index: int = 0) -> Worker:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in tmp_ports]}
    return parse_tf_config(tf_config(cluster, "worker", index))


def test_waiting_for_a_peer_that_never_starts_names_it():
    worker = worker_of_two(free_ports(2))
    with pytest.raises(
        DistributeError, match=r"worker 1 \(127\.0\.0\.1:\d+\) did not start within 0.5 s"
    ):
        wait_for_peers(worker, timeout_s=0.5, poll_s=0.05)


def test_waiting_ends_when_the_peer_listens():
    ports = free_ports(2)
    with socket.create_server(("127.0.0.1", ports[1])):
        wait_for_peers(worker_of_two(ports), timeout_s=5, poll_s=0.05)


@pytest.mark.parametrize("value", ["0", "-3", "soon", "inf"])
def test_peer_timeout_must_be_a_positive_number(value):
    with pytest.raises(DistributeError, match="DIGITS_PEER_TIMEOUT_S"):
        peer_timeout_s({"DIGITS_PEER_TIMEOUT_S": value})
    assert peer_timeout_s({}) > 0


@pytest.mark.integration
def test_a_worker_waiting_for_its_peer_stops_on_sigterm(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    env = dict(os.environ, TF_CONFIG=tf_config(cluster, "worker", 0))
    params = tmp_path / "params.yaml"
    params.write_text((PROJECT_ROOT / "params.yaml").read_text())
    images = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    labels = np.arange(4, dtype=np.uint8)
    for split in ("train", "validation"):
        save_split(tmp_path / "data", split, images, labels)
    save_split(tmp_path / "own", "train", images[:0], labels[:0])
    process = subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), "--params", str(params), "--data-dir", "data",
         "--own-dir", "own", "--model", "m.keras", "--history", "h.csv", "--live-dir", "live"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_until_listening(ports[0], process)  # it listens on its own port while it waits
    process.terminate()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and "interrupted" in err


@pytest.mark.integration
def test_a_worker_without_its_data_fails_before_waiting_for_its_peer(tmp_path):
    """Not after the others have come up and moved on to TensorFlow's set-up, which cannot be
    interrupted."""
    ports = free_ports(2)
    env = dict(
        os.environ, TF_CONFIG=tf_config({"worker": [f"127.0.0.1:{p}" for p in ports]}, "worker", 0)
    )
    params = tmp_path / "params.yaml"
    params.write_text((PROJECT_ROOT / "params.yaml").read_text())
    result = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), "--params", str(params), "--data-dir", "absent",
         "--own-dir", "absent", "--model", "m.keras", "--history", "h.csv", "--live-dir", "live"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: absent/x_train.npy: missing; it is written by the own stage: run `dvc repro own`"
    )


def wait_until_listening(port: int, process: subprocess.Popen, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the worker did not listen on port {port} within {limit_s} s")


def test_a_port_in_use_names_the_worker_and_the_port():
    ports = free_ports(2)
    with socket.create_server(("", ports[0])):
        with pytest.raises(DistributeError, match=rf"worker 0 \(127.0.0.1:{ports[0]}\): cannot"):
            wait_for_peers(worker_of_two(ports), timeout_s=1, poll_s=0.05)
