"""Multi-worker training: read ``TF_CONFIG``, pick the strategy, decide where each worker writes.

Without ``TF_CONFIG`` in the environment nothing here changes the train stage: no strategy, the
real output paths. With it, every worker runs the same stage command, for example two on one
machine (each in its own shell, from the project root):

    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]},
                "task": {"type": "worker", "index": 0}}' \\
        python stages/train.py --data-dir data/prepared --own-dir data/own_prepared \\
        --model data/model.keras --history plots/training.csv --live-dir dvclive
    # ... and the same with "index": 1

``train.batch_size`` stays the *global* batch: each step takes one seeded batch of that size,
each worker computes the gradients of its ``batch_size / n_workers`` share, and the update uses
their average, the mean gradient over the whole batch as on one worker. So the learning rate and
its schedule need no rescaling. A given number of workers gives the same bytes every run; they
differ from one worker's (float sums in another order, dropout masks drawn per worker, and Keras
reading one batch before training, which moves the seeded shuffle on by one epoch).
"""

import contextlib
import dataclasses
import json
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digits.errors import DigitsError
from digits.params import TrainParams
from digits.yamlfile import SHOWN_CHARS, shorten

log = logging.getLogger("distribute")

TF_CONFIG = "TF_CONFIG"
TRAINING_JOBS = ("chief", "worker")  # the jobs that train; "ps" and "evaluator" do not here
PEER_TIMEOUT_ENV = "DIGITS_PEER_TIMEOUT_S"
DEFAULT_PEER_TIMEOUT_S = 300.0  # workers started by hand on several hosts: a few minutes apart


class DistributeError(DigitsError):
    """``TF_CONFIG`` is not JSON, does not place this task among the training workers, or the
    batch does not split evenly between them."""


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster that ``TF_CONFIG`` describes."""

    task_type: str  # "chief" or "worker"
    index: int  # within task_type
    n_workers: int  # every task that trains: the chief, if any, plus the workers
    is_chief: bool  # the one task whose outputs are kept
    # "host:port" of every training task, this one's included, keyed like "worker 1"
    addresses: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.index}"


def parse_tf_config(text: str) -> Worker:
    """Read a ``TF_CONFIG`` value, e.g. ``{"cluster": {"worker": ["host1:2222", "host2:2222"]},
    "task": {"type": "worker", "index": 0}}``; raise ``DistributeError`` naming what is wrong.

    The chief is the "chief" task, or worker 0 when the cluster has no "chief" job (the rule
    TensorFlow's own multi-worker callbacks use)."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise DistributeError(f"{TF_CONFIG}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise DistributeError(
            f'{TF_CONFIG}: expected a JSON object {{"cluster": ..., "task": ...}}, '
            f"got {shorten(json.dumps(config), SHOWN_CHARS)}"
        )
    cluster = _mapping(config, "cluster")
    task = _mapping(config, "task")
    sizes = {}
    for job in TRAINING_JOBS:
        addresses = cluster.get(job, [])
        if not isinstance(addresses, list) or not all(_is_host_port(a) for a in addresses):
            raise _error(f"cluster.{job}", "a list of host:port strings", addresses)
        sizes[job] = len(addresses)
    task_type, index = task.get("type"), task.get("index")
    if task_type not in TRAINING_JOBS:
        raise _error("task.type", f"one of {', '.join(TRAINING_JOBS)}", task_type)
    if type(index) is not int or not 0 <= index < sizes[task_type]:
        expected = f"an index into cluster.{task_type} (0 to {sizes[task_type] - 1})"
        raise _error("task.index", expected, index)
    if sizes["chief"] > 1:
        raise _error("cluster.chief", "at most one address", cluster["chief"])
    is_chief = task_type == "chief" or (sizes["chief"] == 0 and index == 0)
    addresses = {
        f"{job} {position}": address
        for job in TRAINING_JOBS
        for position, address in enumerate(cluster.get(job, []))
    }
    return Worker(task_type, index, sizes["chief"] + sizes["worker"], is_chief, addresses)


def _is_host_port(address: Any) -> bool:
    if not isinstance(address, str) or ":" not in address:
        return False
    host, port = address.rsplit(":", 1)
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def _mapping(config: Any, key: str) -> Mapping:
    value = config.get(key) if isinstance(config, dict) else None
    if not isinstance(value, dict):
        raise _error(key, "a JSON object", value)
    return value


def _error(key: str, expected: str, got: Any) -> DistributeError:
    return DistributeError(f"{TF_CONFIG}: {key}: expected {expected}, got {got!r}")


def worker_from_env(environ: Mapping[str, str] = os.environ) -> Worker | None:
    """This process's ``Worker`` from ``$TF_CONFIG``; None when it is unset or empty."""
    text = environ.get(TF_CONFIG, "").strip()
    return parse_tf_config(text) if text else None


def is_chief(worker: Worker | None) -> bool:
    """Whether this process keeps its outputs: the chief, or the only process without TF_CONFIG."""
    return worker is None or worker.is_chief


def per_worker_batch_size(batch_size: int, n_workers: int) -> int:
    """The images each worker takes from every global batch of ``batch_size``.

    An uneven split would weight the workers' gradients unequally (each averages over its own
    share), so it is refused rather than rounded."""
    if batch_size % n_workers:
        raise DistributeError(
            f"train.batch_size {batch_size} does not split evenly between {n_workers} workers: "
            f"use a multiple of {n_workers}"
        )
    return batch_size // n_workers


@dataclass(frozen=True)
class Cluster:
    """Where this process trains: alone (no ``TF_CONFIG``) or as one worker of several."""

    worker: Worker | None
    strategy: Any  # tf.distribute.Strategy, or None when training alone
    params: TrainParams  # the train params as this worker must use them

    @property
    def is_chief(self) -> bool:
        """Whether this process keeps its outputs: the chief, or the only process."""
        return is_chief(self.worker)

    def scope(self) -> contextlib.AbstractContextManager:
        """Build the model inside this: under a strategy its variables are mirrored on every
        worker; alone, a no-op."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def output(self, path: Path) -> contextlib.AbstractContextManager[Path]:
        """Where this process writes the output ``path``: see ``worker_output``."""
        return worker_output(self.worker, path)


def join_cluster(params: TrainParams, environ: Mapping[str, str] = os.environ) -> Cluster:
    """Read ``$TF_CONFIG`` and set this process up to train: alone when it is unset, else as a
    worker under ``MultiWorkerMirroredStrategy``. Call it before TensorFlow runs any op: the
    strategy configures the collective ops that exchange gradients, which only works at startup.
    """
    worker = worker_from_env(environ)
    if worker is None:
        return Cluster(None, None, params)
    per_worker_batch_size(params.batch_size, worker.n_workers)  # before waiting for anyone
    wait_for_peers(worker, peer_timeout_s(environ))
    return Cluster(worker, make_strategy(worker, params.batch_size), params_for_worker(params))


def peer_timeout_s(environ: Mapping[str, str] = os.environ) -> float:
    """How long to wait for the other workers: ``$DIGITS_PEER_TIMEOUT_S``, else the default."""
    text = environ.get(PEER_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_PEER_TIMEOUT_S
    try:
        timeout = float(text)
    except ValueError:
        timeout = math.nan
    if not 0 < timeout < math.inf:
        raise DistributeError(f"{PEER_TIMEOUT_ENV}={text!r}: expected a number of seconds > 0")
    return timeout


def wait_for_peers(worker: Worker, timeout_s: float, poll_s: float = 0.2) -> None:
    """Return once every other training task of the cluster accepts connections; raise
    ``DistributeError`` naming the ones that do not within ``timeout_s``.

    TensorFlow's own wait for the cluster happens inside a C++ call that holds the interpreter:
    a missing peer would block forever, deaf to SIGTERM and Ctrl-C. So every task first listens
    on its own address here, where signals work, until it can reach all the others; then it
    hands the port to TensorFlow. A peer still waiting here sees the port either way.
    """
    own = worker.addresses[worker.name]
    pending = {name: address for name, address in worker.addresses.items() if address != own}
    deadline = time.monotonic() + timeout_s
    with _listen(worker.name, own) as listener:
        listener.setblocking(False)
        while pending:
            _answer_waiting_peers(listener)
            pending = {name: a for name, a in pending.items() if not _reachable(a, poll_s)}
            if pending and time.monotonic() > deadline:
                missing = ", ".join(f"{name} ({address})" for name, address in pending.items())
                raise DistributeError(
                    f"{TF_CONFIG}: {missing} did not start within {timeout_s:g} s: start it "
                    f"with the same command and its own task index, or set {PEER_TIMEOUT_ENV}"
                )
            time.sleep(poll_s)
    log.info("%s: all %d training tasks are up", worker.name, worker.n_workers)


def _listen(name: str, address: str) -> socket.socket:
    """A listening socket on ``address``'s port, IPv6 and IPv4 where the system has both."""
    port = int(address.rsplit(":", 1)[1])
    dual = socket.has_dualstack_ipv6()
    try:
        if dual:
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(("", port))
    except OSError as error:
        raise DistributeError(
            f"{TF_CONFIG}: {name} ({address}): cannot listen on port {port}: "
            f"{error.strerror or error}"
        ) from None


def _reachable(address: str, timeout_s: float) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def _answer_waiting_peers(listener: socket.socket) -> None:
    """Accept and close the connections other tasks made to see whether this one is up."""
    while True:
        try:
            connection, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        connection.close()


def params_for_worker(params: TrainParams) -> TrainParams:
    """``params`` to train with as one of several workers: without XLA (untested under this
    strategy) and with one step per call into TensorFlow: Keras 3 runs
    ``steps_per_execution`` > 1 as a loop inside one TensorFlow function, and under this
    strategy that loop fails on its first step ("You must feed a value for placeholder
    tensor"). The setting only groups steps: the same training up to float rounding (on MNIST,
    3 epochs: 97.66 % test accuracy either way)."""
    on_workers = {"jit_compile": False, "compiled_loop": False, "steps_per_execution": 1}
    for key, value in on_workers.items():
        if getattr(params, key) != value:
            log.info("train.%s %s -> %s on workers", key, getattr(params, key), value)
    return dataclasses.replace(params, **on_workers)


def make_strategy(worker: Worker, batch_size: int):
    """``tf.distribute.MultiWorkerMirroredStrategy`` for ``worker`` (it reads the cluster from
    ``$TF_CONFIG``)."""
    share = per_worker_batch_size(batch_size, worker.n_workers)
    strategy = _multi_worker_strategy_class()()
    log.info(
        "%s %d of %d training tasks%s: %d of every %d-image batch",
        worker.task_type,
        worker.index,
        worker.n_workers,
        " (chief: keeps the outputs)" if worker.is_chief else "",
        share,
        batch_size,
    )
    return strategy


def _multi_worker_strategy_class() -> type:
    """``tf.distribute.MultiWorkerMirroredStrategy``, with two workarounds for Keras 3's ``fit``
    on several workers (keras-team/keras#20585, tensorflow/tensorflow#72388), which otherwise
    fails before its first step:

    - Before training, ``fit`` reduces a whole (x, y) batch only to learn its shapes and dtypes;
      the multi-worker reduce takes one tensor, not a tuple, and its collectives refuse our uint8
      labels. A tuple gets this worker's own share instead: same shapes and dtypes, no collective.
    - After each step, ``fit`` averages every logged scalar (loss, accuracy) over the workers
      along axis 0, which a scalar does not have; a scalar is averaged as it is.
    """
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            if tf.nest.is_nested(value):
                return tf.nest.map_structure(
                    lambda v: self.experimental_local_results(v)[0], value
                )
            if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
                axis = None
            return super().reduce(reduce_op, value, axis)

    return MultiWorkerMirroredStrategy


@contextlib.contextmanager
def worker_output(worker: Worker | None, path: Path) -> Iterator[Path]:
    """Yield where this worker writes the output ``path``: ``path`` itself on the chief (and
    without TF_CONFIG); on other workers the same name in a temporary directory, removed when the
    block ends. Every worker still writes (saving may read mirrored variables in step with the
    others), but only the chief's copy is kept."""
    if is_chief(worker):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix=f"digits-{worker.task_type}{worker.index}-") as tmp:
        yield Path(tmp) / Path(path).name
    log.info("%s %d: discarded its copy of %s", worker.task_type, worker.index, path)
