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

Nothing else runs: no activations, dropout, loss, data or Keras. It prints each time as a
multiple of the limit, measured with the same sgemm rate as the benchmark, before and after, and
the sum of the two parts: no training step on that path can be faster.
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

    return _fastest_epoch(step, images, batch_size, jit_compile)


def update_seconds(widths: list[int], batch_size: int, jit_compile: bool) -> float:
    """Seconds for one epoch of Adam's updates alone (``ApplyAdam`` on every weight and bias,
    with gradients that change every step), fastest of ``REPEATS``."""
    import tensorflow as tf

    shapes = [shape for pair in itertools.pairwise(widths) for shape in (pair, pair[1:])]
    weights, momentums, velocities = (
        [tf.Variable(tf.zeros(shape)) for shape in shapes] for _ in range(3)
    )
    gradients = [tf.random.stateless_normal(shape, [4, i]) for i, shape in enumerate(shapes)]

    def step(scale):
        for weight, momentum, velocity, gradient in zip(
            weights, momentums, velocities, gradients, strict=True
        ):
            tf.raw_ops.ResourceApplyAdam(
                var=weight.handle,
                m=momentum.handle,
                v=velocity.handle,
                beta1_power=0.9,
                beta2_power=0.999,
                lr=1e-3 * scale[0, 0],
                beta1=0.9,
                beta2=0.999,
                epsilon=1e-7,
                grad=gradient,
            )
        return 0.0

    return _fastest_epoch(step, tf.ones((1, 1)), batch_size, jit_compile)


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
    quiet_tensorflow()
    default = load_params(in_project(PARAMS)).train
    networks = {"seed": dataclasses.replace(default, **SEED_MODEL), "default": default}
    for name, params in networks.items():
        widths, batch_size = layer_widths(params.hidden_units), params.batch_size
        rate_before = sgemm_gflops()
        parts = {
            (part, jit): measure(widths, batch_size, jit)
            for part, measure in (("products", products_seconds), ("update", update_seconds))
            for jit in (False, True)
        }
        rate = statistics.mean([rate_before, sgemm_gflops()])
        limit = training_flops_per_epoch(params, TRAINING_IMAGES) / (rate * 1e9)
        print(
            f"{name:8s} {'-'.join(map(str, params.hidden_units)):>8s} batch {batch_size:4d}"
            f" | limit {limit:.3f} s/epoch at {rate:.0f} GFLOP/s",
            flush=True,
        )
        for jit, way in ((False, "op by op"), (True, "XLA")):
            products, update = parts["products", jit], parts["update", jit]
            print(
                f"    {way:8s} products {products:.3f} s ({products / limit:.2f}x)"
                f" + update {update:.3f} s ({update / limit:.2f}x)"
                f" = {products + update:.3f} s ({(products + update) / limit:.2f}x the limit)",
                flush=True,
            )


if __name__ == "__main__":
    main()
