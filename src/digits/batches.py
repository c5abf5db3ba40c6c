"""The one source of training batches: seeded, reshuffled and freshly augmented every epoch.

Every worker of a multi-worker run builds the same batches and keeps its share of each (the DATA
auto-shard policy; without a distribution strategy the option is ignored).
"""

import math

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


def elements_per_epoch(n_examples: int, params: TrainParams, in_chunks: bool = False) -> int:
    """How many elements ``training_batches`` yields an epoch: batches, or chunks of them."""
    if in_chunks:
        return len(chunk_sizes(n_examples, params))
    return steps_per_epoch(n_examples, params.batch_size)


def one_hot_labels(params: TrainParams) -> bool:
    """Keras smooths labels only for one-hot targets, so label smoothing trains on those."""
    return params.label_smoothing > 0


def training_batches(
    x: np.ndarray, y: np.ndarray, params: TrainParams, in_chunks: bool = False
) -> tf.data.Dataset:
    """Batches of (x float32 (b, 28, 28), y) for all ``params.epochs`` epochs, one after the
    other, each epoch reshuffled and freshly augmented; the same ``params.seed`` gives the same
    batches, whatever else has seeded TensorFlow. ``fit`` takes them with
    ``steps_per_epoch=elements_per_epoch(...)`` and keeps one iterator for the whole run.

    One iterator, since making one instantiates every function the dataset maps, and TensorFlow
    optimizes each again: 0.13 s for the default's distortions, 0.03-0.05 s without, at the
    start of every epoch when Keras made one an epoch. So each epoch's dataset is made of
    tensors only (``epoch_plan``'s rows beside the epoch's seed and order), and the functions
    run on the stream of all epochs.

    The arrays become tensors once. Epoch e's seed is folded from ``params.seed`` and e; it
    shuffles the indices in one op, and each batch is gathered by index: no per-image work in
    tf.data and no NumPy copy per epoch (a per-image ``shuffle`` costs ~0.2 s an epoch). Each
    batch is distorted with the epoch's seed folded with the batch's step.

    ``in_chunks``: the same batches in chunks of about ``params.steps_per_execution``, for a
    model that takes the steps of a chunk in one call (``network.Network``): dicts of
    ``images`` (k, b, 28, 28), ``labels`` (k, b, ...) and ``steps``, how many of the k batches
    to train on. A shorter chunk is padded with batches of zeros to the same k, so that XLA
    compiles the loop over the chunks once; a smaller last batch is a chunk of its own
    (``chunk_sizes``). Without augmentation a chunk is gathered in one op: tf.data costs about
    0.25 ms of CPU per element, more than the training step of a small model.
    """
    images, labels, digits = tf.constant(x), tf.constant(_labels(y, params)), tf.constant(y)
    size, augment = params.batch_size, params.augment
    seed = tf.constant([params.seed, 0], tf.int64)
    plan = epoch_plan(len(x), params, in_chunks)

    @_as_written
    def epoch(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Epoch ``index``'s seed and image order."""
        pair = tf.random.experimental.stateless_fold_in(seed, index)
        return pair, tf.random.experimental.stateless_shuffle(tf.range(len(x)), pair)

    @_as_written
    def epoch_parts(pair: tf.Tensor, order: tf.Tensor) -> tf.data.Dataset:
        """The epoch's plan, each row beside its seed and order: tensors, no functions."""
        state = tf.data.Dataset.from_tensors((pair, order)).repeat()
        return tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(plan), state)

    def batches(order: tf.Tensor, pair: tf.Tensor, first: tf.Tensor, count: tf.Tensor):
        """(images, labels) of ``count`` consecutive batches from step ``first`` on, as one
        batch; distorted with the batch's own seed (``count`` 1 when augmenting)."""
        indices = order[first * size : (first + count) * size]
        batch_images = tf.gather(images, indices)
        if augment.enabled:
            batch_seed = tf.random.experimental.stateless_fold_in(pair, first)
            batch_images = distort_images(
                batch_images, batch_seed, augment, tf.gather(digits, indices)
            )
        return batch_images, tf.gather(labels, indices)

    @_as_written
    def element(part: tf.Tensor, state: tuple[tf.Tensor, tf.Tensor]):
        (pair, order), (first, count, length) = state, tf.unstack(part)
        if not in_chunks:
            return batches(order, pair, first, count)
        if augment.enabled:  # batch by batch, each with its own seed
            chunk = tf.map_fn(
                lambda step: batches(order, pair, step, tf.constant(1, tf.int64)),
                tf.range(first, first + count),
                fn_output_signature=(
                    tf.TensorSpec([None, *images.shape[1:]], images.dtype),
                    tf.TensorSpec([None, *labels.shape[1:]], labels.dtype),
                ),
            )
        else:
            chunk = [_split(tensor, count) for tensor in batches(order, pair, first, count)]
        chunk_images, chunk_labels = (_padded(tensor, length) for tensor in chunk)
        return {"images": chunk_images, "labels": chunk_labels, "steps": tf.cast(count, tf.int32)}

    dataset = (
        tf.data.Dataset.range(params.epochs)
        .map(epoch)
        .flat_map(epoch_parts)
        .map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    return _with_options(dataset)


def epoch_plan(n_examples: int, params: TrainParams, in_chunks: bool = False) -> np.ndarray:
    """An epoch's elements as rows (first step, batches, padded length): one row a batch, or
    one a chunk of ``chunk_sizes``."""
    if not in_chunks:
        steps = np.arange(steps_per_epoch(n_examples, params.batch_size), dtype=np.int64)
        return np.stack([steps, np.ones_like(steps), np.ones_like(steps)], axis=1)
    sizes = chunk_sizes(n_examples, params)
    smaller_last = n_examples % params.batch_size > 0 and len(sizes) > 1
    lengths = [sizes[0]] * (len(sizes) - smaller_last) + [1] * smaller_last
    firsts = np.cumsum([0, *sizes[:-1]])
    return np.stack([firsts, sizes, lengths], axis=1).astype(np.int64)


def chunk_sizes(n_examples: int, params: TrainParams) -> list[int]:
    """The number of batches in each chunk of an epoch (``training_batches(in_chunks=True)``):
    the full batches in chunks of one size, as close to ``params.steps_per_execution`` as
    spreads them evenly, the last chunk maybe shorter; then a smaller last batch, if any."""
    full_steps, rest = divmod(n_examples, params.batch_size)
    chunk = math.ceil(full_steps / max(math.ceil(full_steps / params.steps_per_execution), 1))
    sizes = [min(chunk, full_steps - first) for first in range(0, full_steps, max(chunk, 1))]
    return sizes + [1] * (rest > 0)


def _split(tensor: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """(count b, ...) as (count, b, ...)."""
    count = tf.cast(count, tf.int32)
    return tf.reshape(tensor, tf.concat([[count, -1], tf.shape(tensor)[1:]], axis=0))


def _padded(tensor: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """(k, ...) ``tensor`` with zeros appended along its first axis up to (length, ...); itself,
    not a copy, when it is that long already."""
    missing = tf.cast(length, tf.int32) - tf.shape(tensor)[0]
    return tf.cond(
        missing > 0,
        lambda: tf.pad(tensor, [[0, missing]] + [[0, 0]] * (len(tensor.shape) - 1)),
        lambda: tensor,
    )


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
