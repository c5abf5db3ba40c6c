"""Training speed: the train stage's code against plain Keras and against the hardware.

    digits bench [--epochs 3] [--repeats 3] [--only seed|default]
    digits bench --serve http://127.0.0.1:8000 [--clients 1 8] [--requests 200]

With ``--serve``, it measures a running `digits serve` instead (src/digits/serve_bench.py):
requests/s and latency of /api/predict with concurrent clients.

For two configurations, ``seed`` (one hidden Dense 128, batch 32, Adam 1e-3) and ``default``
(params.yaml's train section), it times in one process (a) plain Keras: the same network and
hyperparameters with Keras' own Dropout and Adam, ``model.fit`` on NumPy arrays with Keras'
default settings, and (b) the project: ``build_model`` and ``train_model`` as the train stage
calls them. Both train on the train stage's data (data/prepared, from `dvc repro preprocess`).
What is timed is the network's training, so both sides train without the options around it
(``NETWORK_ONLY``: augmentation, label smoothing, weight averaging, max-norm, weight decay); the
train stage's own log gives the time with them.
Each measurement trains 1 + ``--epochs`` epochs, validating after each, and times the epochs
after the first (which traces and compiles); the two run ``--repeats`` times in alternating
order and the medians are reported, since the CPU may be shared.

The hardware limit is the network's training FLOPs per epoch (about 6 x the multiply-adds of one
forward pass, per image) divided by this machine's matrix-multiply rate in the type the network
multiplies in (float32, or bfloat16 for ``train.precision: mixed_bfloat16``), measured beside
every round. When those measurements disagree by more than ``SGEMM_SPREAD``, or either side's
rounds' s/epoch by more than ``TIMING_SPREAD`` (a machine slow all along keeps its sgemm rounds
alike but not its training runs), the machine was too busy to trust the figures, and the output
says which disagreed. The figures are this processor's (the output names it), and the last
line is one JSON object: ``{"seed": {"ratio_to_limit": ..., "busy_signs": [], ...}, "default":
{...}, "busy": false, "processor": "..."}``.
"""

import argparse
import dataclasses
import itertools
import json
import statistics
import time
from pathlib import Path

from digits.data import load_split
from digits.machine import this_processor
from digits.mnist import IMAGE_SHAPE, N_CLASSES
from digits.params import NO_AUGMENT, TrainParams, layer_widths, load_params, memory_limit
from digits.paths import PARAMS, PREPARED, in_project
from digits.serve_bench import server_url

# The seed project's model, with the speed settings that measure fastest for it: its steps 64 at
# a time in one loop that XLA compiles (``train.compiled_loop``: 0.58-0.80 s/epoch against
# 1.25-1.39 without XLA, Keras' fastest setting for it before, on an AMD EPYC Zen 3).
SEED_MODEL = {
    "hidden_units": (128,),
    "dropout": (0.0,),
    "batch_size": 32,
    "learning_rate": 1e-3,
    "lr_schedule": "constant",
    "warmup_epochs": 0,
    "steps_per_execution": 64,
    "jit_compile": True,
    "compiled_loop": True,
    "precision": "float32",
}
NETWORK_ONLY = {
    "augment": NO_AUGMENT,
    "label_smoothing": 0.0,
    "ema_momentum": 0.0,
    "max_norm": 0.0,
    "weight_decay": 0.0,
}
# Square sizes large enough for the BLAS to run at full speed, small enough to be quick; the
# faster of the two counts. Not powers of two: on an AMD EPYC (Zen 3) 2048 ran at 134 GFLOP/s
# against 174-180 for these, as if the machine were a quarter slower.
SGEMM_SIZES = (2304, 3000)
SGEMM_SPREAD = 1.15  # fastest / slowest sgemm round beyond this: something else used the CPU
# Slowest / fastest round's s/epoch of one side beyond this, likewise. Quiet runs spread up to 1.08
# (the default) and 1.20 (the seed's short epochs); 1.32-1.59 when the machine was busy.
TIMING_SPREAD = 1.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, help=f"default: {PARAMS} in the project")
    parser.add_argument("--data-dir", type=Path, help=f"default: {PREPARED} in the project")
    parser.add_argument(
        "--epochs", type=positive_int, default=3, help="timed epochs per measurement"
    )
    parser.add_argument("--repeats", type=positive_int, default=3, help="rounds of both timings")
    parser.add_argument("--only", choices=("seed", "default"), help="one configuration")
    serving = parser.add_argument_group("serving (digits serve)")
    serving.add_argument(
        "--serve",
        metavar="URL",
        type=server_url,
        help="load a running `digits serve` instead",
    )
    serving.add_argument(
        "--clients", type=positive_int, nargs="+", default=[1, 8], help="default: 1 8"
    )
    serving.add_argument(
        "--requests", type=positive_int, default=200, help="per client count (default: 200)"
    )
    serving.add_argument("--picture", type=Path, help="default: a 280x280 drawing of a 7")


def run(args: argparse.Namespace) -> None:
    if args.serve is not None:
        from digits import serve_bench

        serve_bench.run(args.serve, args.clients, args.requests, args.picture)
        return
    default = load_params(
        args.params or in_project(PARAMS, "--params"), memory_bytes=memory_limit()
    ).train
    default = dataclasses.replace(default, epochs=args.epochs, **NETWORK_ONLY)
    configs = {"seed": dataclasses.replace(default, **SEED_MODEL), "default": default}
    if args.only:
        configs = {args.only: configs[args.only]}
    data_dir = args.data_dir or in_project(PREPARED, "--data-dir")
    train, validation = load_split(data_dir, "train"), load_split(data_dir, "validation")
    print(f"data: {len(train[0])} training, {len(validation[0])} validation images")
    processor = this_processor()
    print(f"machine: {processor}")

    results: dict = {}
    for name, params in configs.items():
        results[name] = measure(params, train, validation, args.repeats)
        print_row(name, params, results[name])
    reasons = [
        f"{name}: {reason}" for name, result in results.items() for reason in result["busy_signs"]
    ]
    if reasons:
        print(f"the machine was busy ({'; '.join(reasons)}): rerun")
    busy = bool(reasons)
    print(json.dumps({**results, "busy": busy, "processor": processor}, sort_keys=True))


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def measure(params: TrainParams, train, validation, repeats: int) -> dict:
    """Time plain Keras and the project ``repeats`` times each, alternating, with the sgemm
    rate measured beside each round so that a busy CPU slows the limit as much as the runs."""
    # Each model trains repeats x (1 + epochs) epochs: its learning-rate schedule spans them all.
    span = dataclasses.replace(params, epochs=repeats * (1 + params.epochs))
    models = {"baseline": plain_keras_model(span, train), "project": project_model(span, train)}
    fits = {"baseline": fit_plain_keras, "project": fit_project}
    times: dict[str, list[float]] = {name: [] for name in models}
    rates = []
    for round_index in range(repeats):
        rates.append(sgemm_gflops(multiply_dtype(params)))
        names = list(models) if round_index % 2 == 0 else list(models)[::-1]
        for name in names:
            times[name].append(fits[name](models[name], params, train, validation))
    seconds = {name: statistics.median(runs) for name, runs in times.items()}
    gflops = statistics.median(rates)
    flops = training_flops_per_epoch(params, len(train[0]))
    limit_s = flops / (gflops * 1e9)
    return {
        "baseline_s_per_epoch": round(seconds["baseline"], 3),
        "project_s_per_epoch": round(seconds["project"], 3),
        "ratio": round(seconds["project"] / seconds["baseline"], 3),
        "limit_s_per_epoch": round(limit_s, 3),
        "ratio_to_limit": round(seconds["project"] / limit_s, 3),
        "baseline_runs": [round(t, 3) for t in times["baseline"]],
        "project_runs": [round(t, 3) for t in times["project"]],
        "training_gflop_per_epoch": round(flops / 1e9),
        "sgemm_gflops": round(gflops, 1),
        "sgemm_dtype": multiply_dtype(params),
        "sgemm_gflops_runs": [round(rate) for rate in rates],
        "busy_signs": busy_signs(rates, times["baseline"], times["project"]),
    }


def busy_signs(rates: list[float], baseline: list[float], project: list[float]) -> list[str]:
    """What says the machine was busy while measuring: each set of repeated measurements
    (sgemm GFLOP/s, plain Keras' and the project's s/epoch) that spread too far, with its range."""
    signs = []
    for what, runs, unit, limit in (
        ("sgemm rounds", rates, "GFLOP/s", SGEMM_SPREAD),
        ("plain Keras' rounds", baseline, "s/epoch", TIMING_SPREAD),
        ("the project's rounds", project, "s/epoch", TIMING_SPREAD),
    ):
        spread = max(runs) / min(runs)
        if spread > limit:
            extent = f"{min(runs):.3g}-{max(runs):.3g} {unit}"
            signs.append(f"{what} {extent}, {spread:.2f}x apart (over {limit}x)")
    return signs


def multiply_dtype(params: TrainParams) -> str:
    """The type of the hidden layers' matrix products: Keras' compute dtype of the policy."""
    import keras

    return keras.DTypePolicy(params.precision).compute_dtype


def sgemm_gflops(dtype: str = "float32", repeats: int = 5) -> float:
    """TensorFlow's matrix-multiply rate on this machine in ``dtype``, in GFLOP/s: the faster
    of ``SGEMM_SIZES``' median rates."""
    import tensorflow as tf

    rates = []
    for size in SGEMM_SIZES:
        a = tf.cast(tf.random.stateless_uniform([size, size], seed=[1, 2]), dtype)
        b = tf.cast(tf.random.stateless_uniform([size, size], seed=[3, 4]), dtype)
        tf.matmul(a, b).numpy()  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            tf.matmul(a, b).numpy()
            times.append(time.perf_counter() - started)
        rates.append(2 * size**3 / statistics.median(times) / 1e9)
    return max(rates)


def training_flops_per_epoch(params: TrainParams, n_images: int) -> float:
    """About 6 FLOPs per weight per image: 2 forward, 4 backward (input and weight gradients)."""
    widths = layer_widths(params.hidden_units)
    multiply_adds = sum(a * b for a, b in itertools.pairwise(widths))
    return 6.0 * multiply_adds * n_images


def plain_keras_model(params: TrainParams, train):
    """The project's network and hyperparameters in plain Keras: Keras' own Dropout and Adam,
    the same dtype policy, compiled with Keras' defaults (one step per call, no XLA)."""
    import keras

    from digits.batches import steps_per_epoch
    from digits.model import PROBABILITIES_DTYPE
    from digits.optimizer import learning_rate_schedule

    keras.utils.set_random_seed(params.seed)
    layers = [keras.Input(shape=IMAGE_SHAPE), keras.layers.Flatten()]
    for units, rate in zip(params.hidden_units, params.dropout, strict=True):
        layers.append(keras.layers.Dense(units, activation="relu", dtype=params.precision))
        if rate > 0:
            layers.append(keras.layers.Dropout(rate, dtype=params.precision))
    layers.append(keras.layers.Dense(N_CLASSES, activation="softmax", dtype=PROBABILITIES_DTYPE))
    model = keras.Sequential(layers)
    schedule = learning_rate_schedule(params, steps_per_epoch(len(train[0]), params.batch_size))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def project_model(params: TrainParams, train):
    from digits.model import build_model

    return build_model(params, len(train[0]))


def fit_plain_keras(model, params: TrainParams, train, validation) -> float:
    """Seconds per epoch of ``model.fit`` on NumPy arrays, after one warm-up epoch."""
    timer = epoch_timer()
    model.fit(
        *train,
        batch_size=params.batch_size,
        epochs=1 + params.epochs,
        validation_data=validation,
        callbacks=[timer],
        verbose=0,
    )
    return timer.steady_seconds_per_epoch()


def fit_project(model, params: TrainParams, train, validation) -> float:
    """Seconds per epoch of the train stage's ``train_model``, after one warm-up epoch."""
    from digits.model import train_model

    timer = epoch_timer()
    params = dataclasses.replace(params, epochs=1 + params.epochs)
    train_model(model, train, validation, params, callbacks=[timer], verbose=0)
    return timer.steady_seconds_per_epoch()


def epoch_timer():
    """A Keras callback that keeps the time at the end of every epoch."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ends = []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

        def steady_seconds_per_epoch(self) -> float:
            """Seconds per epoch after the first (the warm-up, which traces and compiles)."""
            return (self.ends[-1] - self.ends[0]) / (len(self.ends) - 1)

    return EpochTimer()


def print_row(name: str, params: TrainParams, result: dict) -> None:
    model = "-".join(map(str, params.hidden_units))
    print(
        f"{name:8s} {model:>8s} batch {params.batch_size:4d}"
        f" | plain Keras {result['baseline_s_per_epoch']:6.2f} s/epoch"
        f" | project {result['project_s_per_epoch']:6.2f} s/epoch ({result['ratio']:.2f}x)"
        f" | limit {result['limit_s_per_epoch']:5.2f} s/epoch"
        f" at {result['sgemm_gflops']:.0f} GFLOP/s in {result['sgemm_dtype']}"
        f" ({result['ratio_to_limit']:.2f}x the limit)",
        flush=True,
    )
