"""Benchmark training speed: the project's train function against a naive Keras ``model.fit``.

    python scripts/bench_train.py [--epochs 3] [--repeats 3]

For two configurations, ``seed`` (one hidden Dense 128, batch 32, Adam 1e-3) and ``default``
(params.yaml's train section), it times in this one process (a) plain Keras: the same model and
hyperparameters, ``model.fit`` on NumPy arrays with default settings, (b) the train stage's
``digits.model.train_model``, and, to show what our training loop buys, (c) the same with
``train.training_loop: keras_fit`` (and without XLA if the model has dropout, since Keras' XLA
step draws dropout masks ~50x slower on CPU: model.fit at its fastest). Each measurement trains
1 + ``--epochs`` epochs, validating after each, and a callback times the epochs after the first
(the warm-up, which traces the TensorFlow functions). The three run ``--repeats`` times in
rotating order and the median seconds per epoch is reported, since the CPU may be shared. The
hardware limit is the model's training FLOPs per epoch (about 6 x the multiply-adds of one
forward pass, per image) divided by this machine's float32 matrix-multiply rate.

Data: data/prepared/*.npy when present, else parsed from the gz files in $MNIST_MIRROR.
The last line printed is one JSON object {"seed": {...}, "default": {...}}.
"""

import argparse
import dataclasses
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

from digits.data import load_split, scale_pixels  # noqa: E402
from digits.idx import parse_idx_images, parse_idx_labels  # noqa: E402
from digits.params import TrainParams, load_params  # noqa: E402

# The seed model with the speed settings that measure fastest for it: 64 steps per call, and no
# XLA (in our loop, launching the compiled step costs more than its fusions save at this size).
SEED_MODEL = {
    "hidden_units": (128,),
    "dropout": (0.0,),
    "batch_size": 32,
    "learning_rate": 1e-3,
    "lr_schedule": "constant",
    "warmup_epochs": 0,
    "steps_per_execution": 64,
    "jit_compile": False,
}
SGEMM_SIZE = 2048  # large enough for the BLAS to run at full speed, small enough to be quick
N_VALIDATION = 6000  # when parsing the raw files: the same split sizes as preprocess makes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "prepared")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the three timings")
    parser.add_argument("--only", choices=("seed", "default"), help="one configuration")
    args = parser.parse_args()

    from digits.model import make_deterministic

    default = dataclasses.replace(load_params(args.params).train, epochs=args.epochs)
    configs = {"seed": dataclasses.replace(default, **SEED_MODEL), "default": default}
    if args.only:
        configs = {args.only: configs[args.only]}
    make_deterministic(default.seed)
    train, validation = load_data(args.data_dir)
    print(f"data: {len(train[0])} training, {len(validation[0])} validation images")

    results = {}
    for name, params in configs.items():
        results[name] = compare(params, train, validation, args.repeats)
        print_row(name, params, results[name])
    print(json.dumps(results, sort_keys=True))


def load_data(data_dir: Path):
    """(train, validation) as (x float32 (n, 28, 28), y uint8 (n,)) pairs."""
    if (data_dir / "x_train.npy").is_file():
        return load_split(data_dir, "train"), load_split(data_dir, "validation")
    mirror = os.environ.get("MNIST_MIRROR")
    if not mirror:
        sys.exit(f"error: no {data_dir}/x_train.npy and MNIST_MIRROR is not set")
    images_path = Path(mirror) / "train-images-idx3-ubyte.gz"
    labels_path = Path(mirror) / "train-labels-idx1-ubyte.gz"
    images = parse_idx_images(gzip.decompress(images_path.read_bytes()), str(images_path))
    labels = parse_idx_labels(gzip.decompress(labels_path.read_bytes()), str(labels_path))
    x = scale_pixels(images)
    return (x[N_VALIDATION:], labels[N_VALIDATION:]), (x[:N_VALIDATION], labels[:N_VALIDATION])


def sgemm_gflops(repeats: int = 10) -> float:
    """Median float32 matrix-multiply rate of TensorFlow on this machine, in GFLOP/s."""
    import tensorflow as tf

    a = tf.random.stateless_uniform([SGEMM_SIZE, SGEMM_SIZE], seed=[1, 2])
    b = tf.random.stateless_uniform([SGEMM_SIZE, SGEMM_SIZE], seed=[3, 4])
    tf.matmul(a, b).numpy()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        tf.matmul(a, b).numpy()
        times.append(time.perf_counter() - started)
    return 2 * SGEMM_SIZE**3 / statistics.median(times) / 1e9


def training_flops_per_epoch(params: TrainParams, n_images: int) -> float:
    """About 6 FLOPs per weight per image: 2 forward, 4 backward (input and weight gradients)."""
    widths = [28 * 28, *params.hidden_units, 10]
    multiply_adds = sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    return 6.0 * multiply_adds * n_images


def compare(params: TrainParams, train, validation, repeats: int) -> dict:
    """Time each way ``repeats`` times, alternating, with the sgemm rate measured beside each
    round so that a busy shared CPU slows the limit as much as the trainings."""
    # build_model turns Keras' XLA step off for model.fit with dropout (~50x slower masks).
    keras_fit = dataclasses.replace(params, training_loop="keras_fit")
    # Each model trains repeats x (1 + epochs) epochs: its learning-rate schedule spans them all.
    span = repeats * (1 + params.epochs)
    models = {
        "baseline": (naive_model(params, len(train[0]), span), fit_naive, params),
        "project": (project_model_for(params, train, span), fit_project, params),
        "keras_fit": (project_model_for(keras_fit, train, span), fit_project, keras_fit),
    }
    times = {name: [] for name in models}
    rates = []
    for round_index in range(repeats):
        rates.append(sgemm_gflops())
        names = list(models)
        for name in names[round_index % 3 :] + names[: round_index % 3]:  # rotate the order
            model, fit, fit_params = models[name]
            times[name].append(fit(model, fit_params, train, validation, params.epochs))
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
        "keras_fit_s_per_epoch": round(seconds["keras_fit"], 3),
        "baseline_runs": [round(t, 3) for t in times["baseline"]],
        "project_runs": [round(t, 3) for t in times["project"]],
        "keras_fit_runs": [round(t, 3) for t in times["keras_fit"]],
        "training_gflop_per_epoch": round(flops / 1e9),
        "sgemm_gflops": round(gflops, 1),
        "sgemm_gflops_runs": [round(rate) for rate in rates],
    }


def naive_model(params: TrainParams, n_train: int, schedule_epochs: int):
    """The same network and optimizer in plain Keras, compiled with Keras' defaults."""
    import keras

    layers = [keras.Input(shape=(28, 28)), keras.layers.Flatten()]
    for units, rate in zip(params.hidden_units, params.dropout, strict=True):
        layers.append(keras.layers.Dense(units, activation="relu"))
        if rate > 0:
            layers.append(keras.layers.Dropout(rate))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    learning_rate = params.learning_rate
    if params.lr_schedule == "cosine":
        steps = -(-n_train // params.batch_size) * schedule_epochs
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def project_model_for(params: TrainParams, train, schedule_epochs: int):
    from digits.model import build_model, steps_per_epoch

    schedule = dataclasses.replace(params, epochs=schedule_epochs)
    return build_model(schedule, steps_per_epoch(len(train[0]), params.batch_size))


def epoch_timer():
    """A Keras callback keeping the time at the end of every epoch in ``.ends``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ends = []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

    return EpochTimer()


def steady_seconds_per_epoch(timer, epochs: int) -> float:
    """Seconds per epoch after the first, which traces the TensorFlow functions (warm-up)."""
    return (timer.ends[-1] - timer.ends[0]) / epochs


def fit_naive(model, params: TrainParams, train, validation, epochs: int) -> float:
    """Seconds per epoch of ``model.fit`` on NumPy arrays, after one warm-up epoch."""
    timer = epoch_timer()
    model.fit(
        *train,
        batch_size=params.batch_size,
        epochs=1 + epochs,
        validation_data=validation,
        callbacks=[timer],
        verbose=0,
    )
    return steady_seconds_per_epoch(timer, epochs)


def fit_project(model, params: TrainParams, train, validation, epochs: int) -> float:
    """Seconds per epoch of the train stage's ``train_model``, after one warm-up epoch."""
    from digits.model import train_model

    timer = epoch_timer()
    params = dataclasses.replace(params, epochs=1 + epochs)
    train_model(model, train, validation, params, callbacks=[timer], verbose=0)
    return steady_seconds_per_epoch(timer, epochs)


def print_row(name: str, params: TrainParams, result: dict) -> None:
    model = "-".join(map(str, params.hidden_units))
    print(
        f"{name:8s} {model:>8s} batch {params.batch_size:4d}"
        f" | plain Keras {result['baseline_s_per_epoch']:6.2f} s/epoch"
        f" | project {result['project_s_per_epoch']:6.2f} s/epoch"
        f" ({result['ratio']:.2f}x; with model.fit {result['keras_fit_s_per_epoch']:.2f})"
        f" | limit {result['limit_s_per_epoch']:5.2f} s/epoch"
        f" at {result['sgemm_gflops']:.0f} GFLOP/s"
        f" ({result['ratio_to_limit']:.2f}x the limit)",
        flush=True,
    )


if __name__ == "__main__":
    main()
