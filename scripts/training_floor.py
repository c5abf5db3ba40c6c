"""How close to `digits bench`'s hardware limit can any training step come? The floor: the work
every step must do whatever runs it, that is its matrix products and the optimizer's update.

    python scripts/training_floor.py

A tool, not a test. For the seed and default networks of `digits bench`, it times one epoch's
steps of each part alone, back to back in one TensorFlow loop, once op by op (oneDNN, TensorFlow's
kernels) and once compiled by XLA:

- products: per layer the forward product and the weights' gradient, and the input's gradient
  for every layer but the first (nothing needs the images' gradient, so training skips it; the
  limit counts it, so the products alone can come in under the limit);
- update: TensorFlow's one-pass Adam kernel on every weight and bias (what ``FusedAdam`` runs).

Nothing else runs: no activations, dropout, loss, data or Keras. It times the two parts alone and
both in one loop (the floor: no training step on that path can be faster), each as a multiple of
the limit, measured with the same sgemm rate as the benchmark, before and after.
"""

import argparse
import dataclasses
import itertools
import statistics
import sys
import time
from pathlib import Path

from digits.bench import SEED_MODEL, sgemm_gflops, training_flops_per_epoch
from digits.params import layer_widths, load_params
from digits.paths import PARAMS, in_project
from digits.stage import quiet_tensorflow, run_tool

TRAINING_IMAGES = 54_000
REPEATS = 5  # the fastest of these loops is reported


def products_step(widths: list[int]):
    """One step's matrix products, as a function of the batch (b, 784)."""
    import tensorflow as tf

    weights = [
        tf.random.stateless_normal(shape, [1, index]) * 0.05
        for index, shape in enumerate(itertools.pairwise(widths))
    ]

    def step(x):
        activations = [x]
        for w in weights:
            activations.append(tf.matmul(activations[-1], w))
        gradient, kept = activations[-1], 0.0
        for layer in reversed(range(len(weights))):
            weight_gradient = tf.matmul(activations[layer], gradient, transpose_a=True)
            kept += weight_gradient[0, 0]  # used, so that no product is optimised away
            if layer > 0:
                gradient = tf.matmul(gradient, weights[layer], transpose_b=True)
        return kept

    return step


def update_step(widths: list[int]):
    """One step of Adam's updates (``ApplyAdam`` on every weight and bias), as a function of the
    batch: the gradients are fixed tensors, which the kernel reads every step (under XLA, work
    on them alone could move out of the loop); the learning rate changes with the batch."""
    import tensorflow as tf

    shapes = [shape for pair in itertools.pairwise(widths) for shape in (pair, pair[1:])]
    weights, momentums, velocities = (
        [tf.Variable(tf.zeros(shape)) for shape in shapes] for _ in range(3)
    )
    gradients = [tf.random.stateless_normal(shape, [4, i]) for i, shape in enumerate(shapes)]

    def step(x):
        learning_rate = 1e-3 * x[0, 0]
        for weight, momentum, velocity, gradient in zip(
            weights, momentums, velocities, gradients, strict=True
        ):
            tf.raw_ops.ResourceApplyAdam(
                var=weight.handle,
                m=momentum.handle,
                v=velocity.handle,
                beta1_power=0.9,
                beta2_power=0.999,
                lr=learning_rate,
                beta1=0.9,
                beta2=0.999,
                epsilon=1e-7,
                grad=gradient,
            )
        return 0.0

    return step


def floor_seconds(widths: list[int], batch_size: int, jit_compile: bool) -> dict[str, float]:
    """Seconds for one epoch of the products alone, the update alone, and both in one loop."""
    import tensorflow as tf

    images = tf.random.stateless_uniform((batch_size, widths[0]), [2, 3])
    products, update = products_step(widths), update_step(widths)
    steps = {"products": products, "update": update, "both": lambda x: products(x) + update(x)}
    return {
        name: _fastest_epoch(step, images, batch_size, jit_compile) for name, step in steps.items()
    }


def _fastest_epoch(step, x, batch_size: int, jit_compile: bool) -> float:
    """Seconds of the fastest of ``REPEATS`` loops of ``step`` over one epoch's steps."""
    import tensorflow as tf

    steps = -(-TRAINING_IMAGES // batch_size)

    @tf.function(jit_compile=jit_compile)
    def epoch(x):
        return tf.while_loop(
            lambda i, total: i < steps,
            lambda i, total: (i + 1, total + step(x + tf.cast(i, tf.float32))),
            (0, 0.0),
        )

    epoch(x)  # trace and compile
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        epoch(x)[1].numpy()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, help=f"default: {PARAMS} in the project")
    args = parser.parse_args()
    quiet_tensorflow()
    default = load_params(args.params or in_project(PARAMS, "--params")).train
    networks = {"seed": dataclasses.replace(default, **SEED_MODEL), "default": default}
    for name, params in networks.items():
        widths, batch_size = layer_widths(params.hidden_units), params.batch_size
        rate_before = sgemm_gflops()
        seconds = {jit: floor_seconds(widths, batch_size, jit) for jit in (False, True)}
        rate = statistics.mean([rate_before, sgemm_gflops()])
        limit = training_flops_per_epoch(params, TRAINING_IMAGES) / (rate * 1e9)
        print(
            f"{name:8s} {'-'.join(map(str, params.hidden_units)):>8s} batch {batch_size:4d}"
            f" | limit {limit:.3f} s/epoch at {rate:.0f} GFLOP/s",
            flush=True,
        )
        for jit, way in ((False, "op by op"), (True, "XLA")):
            parts = " | ".join(
                f"{part} {time:.3f} s ({time / limit:.2f}x)" for part, time in seconds[jit].items()
            )
            print(f"    {way:8s} {parts}", flush=True)


if __name__ == "__main__":
    sys.exit(run_tool(main))
