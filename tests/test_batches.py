"""The batch source: every epoch is a seeded permutation of the training set, a new one each
epoch, with labels one-hot only when they are smoothed."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import ALL_OPTIONS, TINY, random_data

from digits.augment import distort_images
from digits.batches import (
    chunk_sizes,
    elements_per_epoch,
    epoch_plan,
    steps_per_epoch,
    training_batches,
    validation_batches,
)


def indexed_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose first pixel is their own index, so a batch shows which images it holds."""
    x = np.zeros((n, 28, 28), dtype=np.float32)
    x[:, 0, 0] = np.arange(n)
    return x, (np.arange(n) % 10).astype(np.uint8)


def epoch_orders(dataset, steps: int) -> list[list[int]]:
    """The image order of each epoch: the dataset's batches, ``steps`` an epoch."""
    batches = [[int(i) for i in x.numpy()[:, 0, 0]] for x, _ in dataset]
    return [sum(batches[first : first + steps], []) for first in range(0, len(batches), steps)]


def test_each_epoch_is_a_permutation_and_differs_from_the_last():
    """One pass of the dataset is every epoch of the run, as ``fit`` takes them."""
    params = dataclasses.replace(TINY, batch_size=16, epochs=3)
    steps = steps_per_epoch(100, 16)
    assert steps == elements_per_epoch(100, params) == 7  # the last batch of an epoch holds 4
    batches = list(training_batches(*indexed_images(100), params))
    assert [len(images) for images, _ in batches] == ([16] * 6 + [4]) * 3
    orders = epoch_orders(batches, steps)
    assert all(sorted(order) == list(range(100)) for order in orders)
    assert orders[0] != orders[1] != orders[2]


def test_labels_travel_with_their_images():
    x, y = indexed_images(50)
    for images, labels in training_batches(x, y, TINY):
        np.testing.assert_array_equal(labels.numpy(), images.numpy()[:, 0, 0] % 10)


def test_the_same_seed_gives_the_same_batches_whatever_else_seeded_tensorflow():
    data = indexed_images(64)
    tf.random.set_seed(0)
    first = epoch_orders(training_batches(*data, TINY), 4)
    assert len(first) == TINY.epochs == 2
    tf.random.set_seed(1)
    assert epoch_orders(training_batches(*data, TINY), 4) == first
    other = dataclasses.replace(TINY, seed=TINY.seed + 1)
    assert epoch_orders(training_batches(*data, other), 4) != first


def test_smoothed_labels_are_one_hot():
    smoothing = dataclasses.replace(TINY, label_smoothing=0.1)
    _, labels = next(iter(validation_batches(*indexed_images(12), smoothing)))
    assert labels.shape == (12, 10)
    np.testing.assert_array_equal(labels.numpy().argmax(axis=1), np.arange(12) % 10)


def test_every_worker_keeps_its_share_of_each_batch():
    """The DATA auto-shard policy: under a multi-worker strategy each worker takes part of every
    seeded batch (the default would look for input files to split first)."""
    policy = training_batches(*indexed_images(8), TINY).options().experimental_distribute
    assert policy.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


@pytest.mark.parametrize(
    ("n_examples", "batch_size", "steps_per_execution", "sizes"),
    [
        (156 * 360, 360, 64, [52, 52, 52]),  # the default: evenly, not 64 + 64 + 28
        (54_000, 32, 64, [63] * 26 + [49, 1]),  # the seed: 1687 full batches and one of 16
        (100, 16, 4, [3, 3, 1]),  # 6 full batches, one of 4
        (10, 16, 4, [1]),  # no full batch at all
        (64, 16, 100, [4]),  # one chunk holds the epoch
    ],
)
def test_chunks_spread_the_full_batches_evenly_and_keep_a_smaller_last_batch_apart(
    n_examples, batch_size, steps_per_execution, sizes
):
    params = dataclasses.replace(
        TINY, batch_size=batch_size, steps_per_execution=steps_per_execution
    )
    assert chunk_sizes(n_examples, params) == sizes
    assert sum(sizes) == steps_per_epoch(n_examples, batch_size)


@pytest.mark.parametrize(
    ("n_examples", "batch_size", "in_chunks", "rows"),
    [
        (100, 16, False, [[step, 1, 1] for step in range(7)]),  # one row a batch
        (100, 16, True, [[0, 3, 3], [3, 3, 3], [6, 1, 1]]),  # the batch of 4 unpadded
        (70, 10, True, [[0, 4, 4], [4, 3, 4]]),  # the short chunk padded to 4
        (10, 16, True, [[0, 1, 1]]),  # no full batch at all
    ],
)
def test_an_epochs_plan_has_a_row_per_element(n_examples, batch_size, in_chunks, rows):
    """(first step, batches, padded length) for each element of an epoch."""
    params = dataclasses.replace(TINY, batch_size=batch_size, steps_per_execution=4)
    plan = epoch_plan(n_examples, params, in_chunks)
    assert plan.dtype == np.int64 and plan.tolist() == rows
    assert len(plan) == elements_per_epoch(n_examples, params, in_chunks)


@pytest.mark.parametrize("params", [TINY, ALL_OPTIONS], ids=["plain", "augmented"])
def test_chunks_hold_the_same_batches_in_the_same_order_padded_with_zeros(params):
    """In chunks (gathered at once, or batch by batch when augmented) every epoch is the same
    batches as step by step, each chunk padded to the first's length."""
    params = dataclasses.replace(params, batch_size=16, steps_per_execution=4)
    data = indexed_images(100)  # 6 full batches in chunks of 3, then one of 4
    steps = list(training_batches(*data, params))
    chunks = list(training_batches(*data, params, in_chunks=True))
    assert chunk_sizes(100, params) == [3, 3, 1] and params.epochs == 2
    assert elements_per_epoch(100, params, in_chunks=True) == 3
    assert [int(chunk["steps"]) for chunk in chunks] == [3, 3, 1] * 2
    assert [chunk["images"].shape[0] for chunk in chunks] == [3, 3, 1] * 2
    unpacked = [
        (chunk["images"][step], chunk["labels"][step])
        for chunk in chunks
        for step in range(int(chunk["steps"]))
    ]
    assert len(unpacked) == len(steps)
    for (images, labels), (step_images, step_labels) in zip(unpacked, steps, strict=True):
        np.testing.assert_array_equal(images.numpy(), step_images.numpy())
        np.testing.assert_array_equal(labels.numpy(), step_labels.numpy())


def test_a_short_chunk_is_padded_with_zeros_that_are_not_steps():
    params = dataclasses.replace(TINY, batch_size=10, steps_per_execution=4)
    chunks = list(training_batches(*indexed_images(70), params, in_chunks=True))
    assert chunk_sizes(70, params) == [4, 3]
    last = chunks[-1]
    assert int(last["steps"]) == 3 and last["images"].shape == (4, 10, 28, 28)
    assert not last["images"][3].numpy().any() and not last["labels"][3].numpy().any()


@pytest.mark.parametrize(
    "augment",
    [dataclasses.replace(TINY.augment, shift_px=1), ALL_OPTIONS.augment],
    ids=["shifts", "every-distortion"],
)
def test_each_batch_is_its_images_distorted_with_the_batchs_own_seed(augment):
    """As the docstring says: the epoch's seed folded from the run's seed and the epoch, the
    epoch's order shuffled from it, each batch distorted with the epoch's seed folded with the
    batch's step; so no distortion can silently go missing from training."""
    x, y = random_data(64, 3)
    params = dataclasses.replace(TINY, augment=augment)
    steps = steps_per_epoch(64, TINY.batch_size)
    fold_in = tf.random.experimental.stateless_fold_in  # counts as int64: int32 folds otherwise
    batches = list(training_batches(x, y, params))
    assert len(batches) == TINY.epochs * steps == 8
    for index, (images, _) in enumerate(batches):
        epoch, step = divmod(index, steps)
        epoch_seed = fold_in(tf.constant([TINY.seed, 0], tf.int64), tf.constant(epoch, tf.int64))
        order = tf.random.experimental.stateless_shuffle(tf.range(64), epoch_seed)
        indices = order[step * TINY.batch_size : (step + 1) * TINY.batch_size]
        originals = tf.gather(x, indices)
        seed = fold_in(epoch_seed, tf.constant(step, tf.int64))
        expected = distort_images(originals, seed, augment, tf.gather(y, indices))
        np.testing.assert_allclose(images.numpy(), expected.numpy(), atol=1e-5)  # graph vs eager
        assert not np.allclose(images.numpy(), originals.numpy(), atol=0.01)


# Run in a fresh process: the script replaces TensorFlow functions with spies, and the two
# XLA-compiled distortions keep the traces that earlier tests made, which no spy would see.
AUTOGRAPH_CHECK = """
import dataclasses, inspect
import tensorflow as tf
from conftest import ALL_OPTIONS, TINY, random_data
from digits.batches import training_batches

# The names of AutoGraph's files (tensorflow/python/autograph/pyct/loader.py)
GENERATED = "__autograph_generated"
from_generated_code = []  # one entry per spied call: whether AutoGraph's code is on its stack

def spy(function):
    def called(*args, **kwargs):
        from_generated_code.append(any(GENERATED in f.filename for f in inspect.stack()))
        return function(*args, **kwargs)
    return called

# What the batch source calls: the seeds of every epoch and batch; tent weights (shifts, zoom,
# squares) and the elastic field's resize
fold_in = tf.random.experimental.stateless_fold_in
tf.random.experimental.stateless_fold_in = spy(fold_in)
tf.nn.relu, tf.einsum = spy(tf.nn.relu), spy(tf.einsum)
x, y = random_data(40, 3)
augments = [
    dataclasses.replace(TINY.augment, shift_px=1),
    dataclasses.replace(TINY.augment, scale=0.1),
    dataclasses.replace(TINY.augment, rotation_deg=10),
    ALL_OPTIONS.augment,
]
for augment in augments:
    for in_chunks in False, True:
        params = dataclasses.replace(TINY, augment=augment)
        for _ in training_batches(x, y, params, in_chunks=in_chunks):
            pass
ours = list(from_generated_code)


@tf.function
def control(x):  # rewritten by AutoGraph, which reads its source: so run from a file, not -c
    return tf.nn.relu(x)


control(tf.constant(1.0))
print(len(ours), sum(ours), sum(from_generated_code[len(ours):]))
"""


@pytest.mark.integration
def test_the_batches_are_traced_as_written_not_rewritten_by_autograph(tmp_path):
    """No TensorFlow call of the batch source or its distortions runs from AutoGraph's
    generated code, whatever the distortions and with chunks or without; a function that
    AutoGraph does rewrite is seen doing so."""
    script = tmp_path / "check.py"
    script.write_text(AUTOGRAPH_CHECK)
    tests = str(Path(__file__).parent)  # for conftest
    path = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    ran = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert ran.returncode == 0, ran.stderr
    calls, ours_from_generated_code, control_from_generated_code = map(int, ran.stdout.split())
    assert calls > 0
    assert control_from_generated_code == 1
    assert ours_from_generated_code == 0
