"""The batch source: every epoch is a seeded permutation of the training set, a new one each
epoch, with labels one-hot only when they are smoothed."""

import dataclasses

import numpy as np
import tensorflow as tf
from test_model import TINY

from digits.batches import steps_per_epoch, training_batches, validation_batches


def indexed_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose first pixel is their own index, so a batch shows which images it holds."""
    x = np.zeros((n, 28, 28), dtype=np.float32)
    x[:, 0, 0] = np.arange(n)
    return x, (np.arange(n) % 10).astype(np.uint8)


def epoch_order(dataset) -> list[int]:
    return [int(i) for x, _ in dataset for i in x.numpy()[:, 0, 0]]


def test_each_epoch_is_a_permutation_and_differs_from_the_last():
    params = dataclasses.replace(TINY, batch_size=16)
    batches = training_batches(*indexed_images(100), params)
    first, second = epoch_order(batches), epoch_order(batches)
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != second
    assert len(list(batches)) == steps_per_epoch(100, 16) == 7  # the last batch holds 4


def test_labels_travel_with_their_images():
    x, y = indexed_images(50)
    for images, labels in training_batches(x, y, TINY):
        np.testing.assert_array_equal(labels.numpy(), images.numpy()[:, 0, 0] % 10)


def test_the_same_seed_gives_the_same_batches():
    data = indexed_images(64)
    again = epoch_order(training_batches(*data, TINY))
    assert epoch_order(training_batches(*data, TINY)) == again
    other = dataclasses.replace(TINY, seed=TINY.seed + 1)
    assert epoch_order(training_batches(*data, other)) != again


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
