"""The batch source: every epoch is a seeded permutation of the training set, a new one each
epoch, with labels one-hot only when they are smoothed."""

import dataclasses

import numpy as np
import tensorflow as tf
from conftest import TINY

from digits.batches import steps_per_epoch, training_batches, validation_batches


def indexed_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose first pixel is their own index, so a batch shows which images it holds."""
    x = np.zeros((n, 28, 28), dtype=np.float32)
    x[:, 0, 0] = np.arange(n)
    return x, (np.arange(n) % 10).astype(np.uint8)


def epoch_orders(dataset, epochs: int) -> list[list[int]]:
    """The image order of each epoch: one iteration of the dataset each, as Keras does."""
    return [[int(i) for x, _ in dataset for i in x.numpy()[:, 0, 0]] for _ in range(epochs)]


def test_each_epoch_is_a_permutation_and_differs_from_the_last():
    params = dataclasses.replace(TINY, batch_size=16, epochs=3)
    steps = steps_per_epoch(100, 16)
    assert steps == 7  # the last batch of an epoch holds 4
    batches = training_batches(*indexed_images(100), params)
    assert len(list(batches)) == steps
    orders = epoch_orders(batches, 3)
    assert all(sorted(order) == list(range(100)) for order in orders)
    assert orders[0] != orders[1] != orders[2]


def test_labels_travel_with_their_images():
    x, y = indexed_images(50)
    for images, labels in training_batches(x, y, TINY):
        np.testing.assert_array_equal(labels.numpy(), images.numpy()[:, 0, 0] % 10)


def test_the_same_seed_gives_the_same_batches_whatever_else_seeded_tensorflow():
    data = indexed_images(64)
    tf.random.set_seed(0)
    first = epoch_orders(training_batches(*data, TINY), 2)
    tf.random.set_seed(1)
    assert epoch_orders(training_batches(*data, TINY), 2) == first
    other = dataclasses.replace(TINY, seed=TINY.seed + 1)
    assert epoch_orders(training_batches(*data, other), 2) != first


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
