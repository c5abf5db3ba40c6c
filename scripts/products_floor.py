"""How close to `digits bench`'s hardware limit can any training step come? The floor: its
matrix products alone.

    python scripts/products_floor.py

A tool, not a test. For the seed and default networks of `digits bench`, it runs the products
of every training step (per layer one forward, two backward: the input's and the weights'
gradients), in the network's shapes and the batch's size, back to back for one epoch's steps in
one TensorFlow loop: once op by op (oneDNN) and once compiled by XLA. Nothing else runs: no
activations, dropout, loss, optimizer, data or Keras. It prints each time as a multiple of the
limit, measured with the same sgemm rate as the benchmark, before and after.
"""

import dataclasses
import itertools
import statistics
import time

from digits.bench import SEED_MODEL, sgemm_gflops, training_flops_per_epoch
from digits.params import layer_widths, load_params
from digits.paths import PARAMS, in_project
from digits.stage import quiet_tensorflow

TRAINING_IMAGES = 54_000
REPEATS = 5  # the fastest of these loops is reported


def products_seconds(widths: list[int], batch_size: int, jit_compile: bool) -> float:
    """Seconds for one epoch of a step's matrix products alone, fastest of ``REPEATS``."""
    import tensorflow as tf

    weights = [
        tf.random.stateless_normal(shape, [1, index]) * 0.05
        for index, shape in enumerate(itertools.pairwise(widths))
    ]
    images = tf.random.stateless_uniform((batch_size, widths[0]), [2, 3])
    steps = TRAINING_IMAGES // batch_size

    def step(x):
        activations = [x]
        for w in weights:
            activations.append(tf.matmul(activations[-1], w))
        gradient, kept = activations[-1], 0.0
        for inputs, w in reversed(list(zip(activations[:-1], weights, strict=True))):
            weight_gradient = tf.matmul(inputs, gradient, transpose_a=True)
            gradient = tf.matmul(gradient, w, transpose_b=True)
            kept += weight_gradient[0, 0]  # used, so that no product is optimised away
        return kept + gradient[0, 0]

    @tf.function(jit_compile=jit_compile)
    def epoch(x):
        return tf.while_loop(
            lambda i, total: i < steps,
            lambda i, total: (i + 1, total + step(x + tf.cast(i, tf.float32))),
            (0, 0.0),
        )

    epoch(images)  # trace and compile
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        epoch(images)[1].numpy()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    quiet_tensorflow()
    default = load_params(in_project(PARAMS)).train
    networks = {"seed": dataclasses.replace(default, **SEED_MODEL), "default": default}
    for name, params in networks.items():
        widths, batch_size = layer_widths(params.hidden_units), params.batch_size
        rate_before = sgemm_gflops()
        seconds = {jit: products_seconds(widths, batch_size, jit) for jit in (False, True)}
        rate = statistics.mean([rate_before, sgemm_gflops()])
        limit = training_flops_per_epoch(params, TRAINING_IMAGES) / (rate * 1e9)
        print(
            f"{name:8s} {'-'.join(map(str, params.hidden_units)):>8s} batch {batch_size:4d}"
            f" | limit {limit:.3f} s/epoch at {rate:.0f} GFLOP/s"
            f" | products alone: op by op {seconds[False]:.3f} s ({seconds[False] / limit:.2f}x),"
            f" XLA {seconds[True]:.3f} s ({seconds[True] / limit:.2f}x)",
            flush=True,
        )


if __name__ == "__main__":
    main()
