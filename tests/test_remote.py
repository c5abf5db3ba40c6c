"""DVC remote storage round trips on tiny data: `dvc push` from one copy of the project, `git
clone` it, `dvc pull` into the clone, and the clone has the same data, a clean `dvc status` and
nothing to reproduce. Against a directory remote, and an S3 remote served by moto on 127.0.0.1
(the network is never used)."""

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from conftest import (
    ALWAYS_RUN,
    DIGITS,
    GIT,
    NOTHING_CHANGED,
    STAGES,
    commit_all,
    dvc,
    file_contents,
    md5_hex,
    stages_run,
    venv_env,
)
from moto.server import ThreadedMotoServer

pytestmark = pytest.mark.integration

BUCKET = "digits-test"
# Fake credentials: moto accepts any; real ones must never be picked up from this machine.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def isolated_env(root: Path, **extra: str) -> dict:
    """venv_env without any AWS_* setting of this machine, with fake credentials, no AWS config
    files, no proxy for 127.0.0.1 and no DVC analytics."""
    env = {k: v for k, v in venv_env(**extra).items() if not k.startswith("AWS_")}
    env.update(
        FAKE_AWS,
        AWS_CONFIG_FILE=str(root / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(root / "no-aws-credentials"),
        NO_PROXY="127.0.0.1",
        no_proxy="127.0.0.1",
        DVC_NO_ANALYTICS="1",
    )
    return env


def s3_client(endpoint: str, env: dict):
    """A boto3 S3 client of ``endpoint`` that sees ``env``'s AWS settings and no others."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [key for key in os.environ if key.startswith("AWS_")]:
            patch.delenv(key)
        for key in [key for key in env if key.startswith("AWS_")]:
            patch.setenv(key, env[key])
        return boto3.client("s3", endpoint_url=endpoint)


def data_files(project: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file DVC tracks under data/ (raw, prepared, model)."""
    return file_contents(project, ("data",), leave_out=("data/.gitignore",))


@pytest.fixture(scope="module")
def private_project(tiny_pipeline, tmp_path_factory) -> tuple[Path, dict]:
    """This module's own clone of the shared tiny project (the remotes these tests add and
    commit stay here), its data checked out from the shared cache; with an environment that
    sees no real AWS settings."""
    shared, mirror = tiny_pipeline
    env = isolated_env(tmp_path_factory.mktemp("aws"), MNIST_MIRROR=str(mirror))
    project = tmp_path_factory.mktemp("remote") / "project"
    subprocess.run(["git", "clone", "-q", str(shared), str(project)], check=True)
    dvc(project, "cache", "dir", "--local", str(shared / ".dvc" / "cache"), env=env)
    dvc(project, "checkout", env=env)
    assert data_files(project) == data_files(shared)
    return project, env


@pytest.fixture(scope="module")
def s3_endpoint(private_project) -> Iterator[str]:
    """URL of a moto S3 server on a free 127.0.0.1 port, with an empty bucket BUCKET."""
    _, env = private_project
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3_client(endpoint, env).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def push_and_clone(project: Path, clone: Path, env: dict, local_config: list[str]) -> Path:
    """Commit the remote's settings, `dvc push`, `git clone` the project into ``clone`` and
    apply there the machine-local ``dvc remote modify --local`` arguments, if any."""
    commit_all(project, "remote storage")
    dvc(project, "push", env=env)
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    if local_config:
        dvc(clone, "remote", "modify", "--local", *local_config, env=env)
    return clone


def assert_pull_restores(project: Path, clone: Path, env: dict) -> None:
    assert data_files(clone) == {}, "a fresh clone has no data before `dvc pull`"
    dvc(clone, "pull", env=env)
    assert json.loads(dvc(clone, "status", "--json", env=env).stdout) == NOTHING_CHANGED
    assert data_files(clone) == data_files(project)
    assert stages_run(dvc(clone, "repro", env=env).stdout) == ALWAYS_RUN


def test_directory_remote_round_trip(private_project, tmp_path):
    project, env = private_project
    storage = tmp_path / "dvc-storage"
    dvc(project, "remote", "add", "-d", "local", str(storage), env=env)
    clone = push_and_clone(project, tmp_path / "clone", env, local_config=[])
    assert any(path.is_file() for path in storage.rglob("*")), "dvc push wrote nothing"
    assert_pull_restores(project, clone, env)


def test_s3_remote_round_trip(private_project, s3_endpoint, tmp_path):
    project, env = private_project
    endpoint = ["storage", "endpointurl", s3_endpoint]
    dvc(project, "remote", "add", "-d", "storage", f"s3://{BUCKET}/digits", env=env)
    dvc(project, "remote", "modify", "--local", *endpoint, env=env)  # per machine: not in git
    clone = push_and_clone(project, tmp_path / "clone", env, local_config=endpoint)
    assert "endpointurl" not in (clone / ".dvc/config").read_text()
    listed = s3_client(s3_endpoint, env).list_objects_v2(Bucket=BUCKET, Prefix="digits/")
    assert listed["KeyCount"] > 0, "dvc push wrote nothing to the bucket"
    assert_pull_restores(project, clone, env)


def test_the_model_is_fetched_by_name_from_a_directory_remote(private_project, tmp_path):
    """The model registry: a clone that shares the tiny project's cache pushes the model to a
    directory remote and tags a version; `dvc artifacts get` of the name, from a third
    directory, downloads exactly the model dvc.lock records."""
    project, env = private_project
    env = dict(env, DVC_STUDIO_OFFLINE="1")  # this repository's registry only, never Studio
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    cache = dvc(project, "cache", "dir", env=env).stdout.strip()  # the shared tiny project's
    dvc(clone, "cache", "dir", "--local", cache, env=env)
    dvc(clone, "remote", "add", "-d", "models", str(tmp_path / "dvc-storage"), env=env)
    commit_all(clone, "model storage")
    dvc(clone, "push", "data/model.keras", env=env)
    tag = ["tag", "-a", "digits-classifier@v1.0.0", "-m", "the tiny model"]
    subprocess.run([*GIT, *tag], cwd=clone, check=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dvc(elsewhere, "artifacts", "get", str(clone), "digits-classifier", env=env)
    outs = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train"]["outs"]
    locked = next(out["md5"] for out in outs if out["path"] == "data/model.keras")
    assert md5_hex((elsewhere / "model.keras").read_bytes()) == locked
    assert md5_hex((project / "data/model.keras").read_bytes()) == locked


# A params variant of the tiny project: what one clone trains and the other must not.
VARIANT = ("-S", "train.epochs=3")
RESULTS = ("metrics/metrics.json", "plots/training.csv", "plots/confusion.csv", "data/model.keras")


def clone_with_remote(project: Path, clone: Path, env: dict, remote: list[list[str]]) -> Path:
    """`git clone` the project into ``clone`` (no data, no cache) and run each ``dvc remote``
    command of ``remote`` there (the clone may carry remotes the tests above committed: ours
    becomes the default)."""
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    for arguments in remote:
        dvc(clone, "remote", *arguments, env=env)
    return clone


def cached_stages(dvc_output: str) -> list[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it restored from the run cache."""
    return re.findall(r"Stage '(\w+)' is cached - skipping run", dvc_output)


def push_run_cache(project: Path, env: dict) -> None:
    pushed = subprocess.run(
        [DIGITS, "share"], cwd=project, env=env, capture_output=True, text=True
    )
    assert pushed.returncode == 0, pushed.stderr


def assert_run_cache_shared(
    project: Path, root: Path, env: dict, remote: list[list[str]], plain_push_first=False
):
    """Clone A trains VARIANT and pushes its run cache; clone B, fresh, runs the same variant
    with `--pull`, gets the data and the run-cache records from the remote and trains nothing.
    With ``plain_push_first``, A first pushes with `dvc push --run-cache` alone, with which
    another clone B0 still trains (DVC 3.67 does not push the files the records name)."""
    trainer = clone_with_remote(project, root / "a", env, remote)
    trained = dvc(trainer, "exp", "run", *VARIANT, env=env)
    assert stages_run(trained.stdout) == list(STAGES)
    if plain_push_first:
        dvc(trainer, "push", "--run-cache", env=env)
        retrainer = clone_with_remote(project, root / "b0", env, remote)
        retrained = dvc(retrainer, "exp", "run", "--pull", *VARIANT, env=env)
        assert stages_run(retrained.stdout) == [*ALWAYS_RUN, "train", "evaluate"], retrained.stdout
    push_run_cache(trainer, env)

    reuser = clone_with_remote(project, root / "b", env, remote)
    restored = dvc(reuser, "exp", "run", "--pull", *VARIANT, env=env)
    assert stages_run(restored.stdout) == ALWAYS_RUN, restored.stdout
    assert cached_stages(restored.stdout) == ["train", "evaluate"], restored.stdout
    for name in RESULTS:
        assert (reuser / name).read_bytes() == (trainer / name).read_bytes(), name
    images = sorted(path.name for path in (trainer / "plots/images").iterdir())
    assert images and sorted(path.name for path in (reuser / "plots/images").iterdir()) == images
    assert json.loads(dvc(reuser, "status", "--json", env=env).stdout) == NOTHING_CHANGED


def test_run_cache_shared_through_a_directory_remote(private_project, tmp_path):
    project, env = private_project
    remote = [["add", "--force", "-d", "team", str(tmp_path / "dvc-storage")]]
    assert_run_cache_shared(project, tmp_path, env, remote, plain_push_first=True)


def test_run_cache_shared_through_s3(private_project, s3_endpoint, tmp_path):
    project, env = private_project
    prefix = f"run-cache-{tmp_path.name}"
    remote = [
        ["add", "--force", "-d", "team", f"s3://{BUCKET}/{prefix}"],
        ["modify", "--local", "team", "endpointurl", s3_endpoint],
    ]
    assert_run_cache_shared(project, tmp_path, env, remote)
    listed = s3_client(s3_endpoint, env).list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/runs/")
    assert listed["KeyCount"] > 0, "no run-cache records in the bucket"
