"""The one source of training batches: seeded, reshuffled and freshly augmented every epoch.

Every worker of a multi-worker run builds the same batches and keeps its share of each (the DATA
auto-shard policy; without a distribution strategy the option is ignored).
"""

import math
from functools import partial, reduce

import numpy as np
import tensorflow as tf

from digits.augment import distort_images
from digits.mnist import INFERENCE_BATCH, N_CLASSES
from digits.params import TrainParams

# tf.data hands the functions it maps to AutoGraph, which rewrites them and everything they call
# (the distortions) into generated Python before tracing them: building the default's batch
# source took 2.33 s instead of 0.64. None of them branches on a tensor, so they are traced as
# written; so is what ``epoch`` maps, since AutoGraph leaves alone what it does not convert.
_as_written = tf.autograph.experimental.do_not_convert


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


def one_hot_labels(params: TrainParams) -> bool:
    """Keras smooths labels only for one-hot targets, so label smoothing trains on those."""
    return params.label_smoothing > 0


def training_batches(
    x: np.ndarray, y: np.ndarray, params: TrainParams, in_chunks: bool = False
) -> tf.data.Dataset:
    """Batches of (x float32 (b, 28, 28), y) for one epoch, reshuffled and freshly augmented
    every time the dataset is iterated (Keras does once an epoch); the same ``params.seed``
    gives the same batches, whatever else has seeded TensorFlow.

    The arrays become tensors once. Each iteration takes the next epoch's seed, folded from
    ``params.seed`` and a count of iterations; it shuffles the indices in one op
    and gathers each batch by index: no per-image work in tf.data and no NumPy copy per epoch
    (Keras' NumPy adapter re-slices every epoch; a per-image ``shuffle`` costs ~0.2 s an epoch).

    ``in_chunks``: the same batches in chunks of about ``params.steps_per_execution``, for a
    model that takes the steps of a chunk in one call (``network.Network``); see ``_chunks``.
    """
    images, labels, digits = tf.constant(x), tf.constant(_labels(y, params)), tf.constant(y)
    size, augment = params.batch_size, params.augment

    def batches(order: tf.Tensor, pair: tf.Tensor, first: tf.Tensor, count: int = 1):
        """(images, labels) of ``count`` consecutive batches from step ``first`` on, as one
        batch; each batch augmented with its own seed (``count`` 1 when augmenting)."""
        indices = order[first * size : (first + count) * size]
        batch_images = tf.gather(images, indices)
        if augment.enabled:
            seed = tf.random.experimental.stateless_fold_in(pair, first)
            batch_images = distort_images(batch_images, seed, augment, tf.gather(digits, indices))
        return batch_images, tf.gather(labels, indices)

    @_as_written
    def epoch(pair: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(tf.range(len(x)), pair)
        if in_chunks:
            return _chunks(partial(batches, order, pair), len(x), params)
        return _steps(0, steps_per_epoch(len(x), size)).map(
            partial(batches, order, pair), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    seed = tf.constant([params.seed, 0], tf.int64)
    iterations = tf.Variable(0, dtype=tf.int64, trainable=False)

    @_as_written
    def next_epoch_seed(_) -> tf.Tensor:
        return tf.random.experimental.stateless_fold_in(seed, iterations.assign_add(1) - 1)

    length = len(chunk_sizes(len(x), params)) if in_chunks else steps_per_epoch(len(x), size)
    dataset = (
        tf.data.Dataset.from_tensors(0)
        .map(next_epoch_seed)
        .flat_map(epoch)
        .apply(tf.data.experimental.assert_cardinality(length))  # flat_map hides it from Keras
        .prefetch(tf.data.AUTOTUNE)
    )
    return _with_options(dataset)


def chunk_sizes(n_examples: int, params: TrainParams) -> list[int]:
    """The number of batches in each chunk of an epoch (``training_batches(in_chunks=True)``):
    the full batches in chunks of one size, as close to ``params.steps_per_execution`` as
    spreads them evenly, the last chunk maybe shorter; then a smaller last batch, if any."""
    full_steps, rest = divmod(n_examples, params.batch_size)
    chunk = math.ceil(full_steps / max(math.ceil(full_steps / params.steps_per_execution), 1))
    sizes = [min(chunk, full_steps - first) for first in range(0, full_steps, max(chunk, 1))]
    return sizes + [1] * (rest > 0)


def _chunks(batches, n_examples: int, params: TrainParams) -> tf.data.Dataset:
    """One epoch of ``batches(first, count)`` in chunks of ``chunk_sizes``: dicts of ``images``
    (k, b, 28, 28), ``labels`` (k, b, ...) and ``steps``, how many of the k batches to train on.
    A shorter chunk is padded with batches of zeros to the same k, so that XLA compiles the
    loop over the chunks once; a smaller last batch is a chunk of its own.

    Without augmentation a chunk is gathered in one op: tf.data costs about 0.25 ms of CPU per
    element, more than the training step of a small model. Augmented, each batch is a parallel
    element as without chunks (XLA runs one augmentation on one core), then stacked."""
    sizes = chunk_sizes(n_examples, params)
    stride, full_steps = sizes[0], n_examples // params.batch_size
    last_full = full_steps - full_steps % stride if full_steps else 0
    parts = [  # (first step, end, chunk length, padded)
        (0, last_full, stride, False),  # chunks of ``stride`` batches
        (last_full, full_steps, stride, True),  # the rest of the full batches
        (full_steps, steps_per_epoch(n_examples, params.batch_size), 1, False),  # a smaller one
    ]

    def chunks(first: int, end: int, length: int, padded: bool) -> tf.data.Dataset:
        def chunk(images: tf.Tensor, labels: tf.Tensor) -> dict:
            steps = tf.shape(images)[0]
            if padded:  # a copy of the chunk, which the others need not pay for
                images, labels = _padded(images, length), _padded(labels, length)
            return {"images": images, "labels": labels, "steps": steps}

        if params.augment.enabled:
            stacked = _steps(first, end).map(
                batches, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
            return stacked.batch(length).map(chunk)

        def gathered(start: tf.Tensor) -> dict:
            count = tf.minimum(end - start, length)  # int64, as the steps
            images, labels = batches(start, count)
            return chunk(_split(images, count), _split(labels, count))

        return _steps(first, end, length).map(gathered)

    return reduce(
        tf.data.Dataset.concatenate, [chunks(*part) for part in parts if part[1] > part[0]]
    )


def _steps(first: int, end: int, stride: int = 1) -> tf.data.Dataset:
    return tf.data.Dataset.range(first, end, stride)


def _split(tensor: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """(count b, ...) as (count, b, ...)."""
    count = tf.cast(count, tf.int32)
    return tf.reshape(tensor, tf.concat([[count, -1], tf.shape(tensor)[1:]], axis=0))


def _padded(tensor: tf.Tensor, length: int) -> tf.Tensor:
    """(k, ...) ``tensor`` with zeros appended along its first axis up to (length, ...)."""
    missing = length - tf.shape(tensor)[0]
    return tf.pad(tensor, [[0, missing]] + [[0, 0]] * (len(tensor.shape) - 1))


def validation_batches(x: np.ndarray, y: np.ndarray, params: TrainParams) -> tf.data.Dataset:
    """Fixed batches of (x, y) for scoring; cached, since they are the same every epoch."""
    batches = tf.data.Dataset.from_tensor_slices((x, _labels(y, params)))
    return _with_options(batches.batch(INFERENCE_BATCH).cache())


def _labels(y: np.ndarray, params: TrainParams) -> np.ndarray:
    if one_hot_labels(params):
        return np.eye(N_CLASSES, dtype=np.float32)[y]
    return y


def _with_options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """The options of every dataset here.

    - The DATA auto-shard policy: each worker keeps its share of every batch. The default,
      AUTO, looks for input files to split first; ours are in-memory tensors, so it would fall
      back to DATA with a warning.
    - No autotuning: tf.data's tuner, run beside training on a 2-core machine, made whole
      epochs take 1.25-1.3 s instead of 0.7-0.85 (about one epoch in three, measured with
      `digits bench`'s default network); the pipeline is small enough not to need it.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.autotune.enabled = False
    return dataset.with_options(options)
