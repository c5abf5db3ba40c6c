"""Keras' Dropout with masks drawn cheaply, in the way that suits what runs the training step.

Keras draws dropout masks with TensorFlow's automatic choice of random algorithm; under XLA on
CPU that choice is about 50x slower than Philox (35 ms vs 0.7 ms for a 256 x 768 mask), enough
to make the compiled training step slower than the uncompiled one. Both layers here compare 16
random bits per unit with a threshold (``drop``); they differ in where the bits come from:

- ``HashedDropout``, for steps that XLA compiles: a keyed hash of each unit's index, integer
  arithmetic that XLA vectorizes and fuses into the loop that applies the mask. XLA runs
  Philox's ten rounds as a loop of their own on one thread: 0.72 against 0.04 ms a step for
  the default's 360 x 512 mask (README "Speed").
- ``PhiloxDropout``, op by op: TensorFlow's Philox kernel, one op, where the hash is a dozen
  (1.2 against 1.8 ms for a 256 x 1536 bfloat16 mask).
"""

import keras
import numpy as np
import tensorflow as tf

RNG_ALGORITHM = "philox"
RATE_STEPS = 2**16  # a unit is dropped when its 16 random bits fall below rate x RATE_STEPS


def dropout_seed(seed: int, layer: int) -> int:
    """The seed of hidden layer ``layer``'s dropout masks in a network trained with ``seed``,
    drawn from both (NumPy's ``SeedSequence``): no two pairs share their masks, as they did when
    it was ``seed + layer`` (seed S's second layer drew seed S + 1's first layer's masks).
    Below 2**31, as every seed Keras takes."""
    return int(np.random.SeedSequence([seed, layer]).generate_state(1)[0] >> 1)


def dropout_layer(jit_compile: bool):
    """The dropout layer for a training step that XLA compiles, or one that runs op by op."""
    return HashedDropout if jit_compile else PhiloxDropout


def philox_bits(count: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """``count`` random uint32 from TensorFlow's Philox kernel. ``seed`` is int64 (2,)."""
    return tf.random.stateless_uniform(
        [count], seed, minval=None, maxval=None, dtype=tf.uint32, alg=RNG_ALGORITHM
    )


def hashed_bits(count: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """``count`` random uint32: each one's index hashed with two keys drawn from ``seed``,
    ``mix(mix(index ^ key_1) ^ key_2)``. A counter-based generator, as Philox is, with a mixing
    function instead of Philox's ten rounds. ``seed`` is int64 (2,)."""
    keys = philox_bits(2, seed)
    index = tf.bitcast(tf.range(count), tf.uint32)
    return mix(tf.bitwise.bitwise_xor(mix(tf.bitwise.bitwise_xor(index, keys[0])), keys[1]))


def mix(x: tf.Tensor) -> tf.Tensor:
    """A bijection of uint32 in which every input bit flips each output bit with probability
    close to 1/2: Chris Wellons' ``lowbias32`` (github.com/skeeto/hash-prospector)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def drop(inputs: tf.Tensor, rate: float, seed: tf.Tensor, random_bits=hashed_bits) -> tf.Tensor:
    """Zero each element of ``inputs`` with probability ``rate`` (to the nearest multiple of
    1 / ``RATE_STEPS``) and scale the rest by 1 / (1 - rate), as Keras does.

    One 32-bit number from ``random_bits(count, seed)`` decides two elements, by its two 16-bit
    halves, and no floats are drawn. ``seed`` is int64 (2,)."""
    threshold = min(round(rate * RATE_STEPS), RATE_STEPS - 1)
    count = tf.size(inputs)
    halves = tf.reshape(tf.bitcast(random_bits((count + 1) // 2, seed), tf.uint16), [-1])
    kept = tf.reshape(halves[:count] >= threshold, tf.shape(inputs))
    scale = tf.cast(1 / (1 - rate), inputs.dtype)
    return tf.where(kept, inputs * scale, tf.zeros_like(inputs))


class _SeededDropout(keras.layers.Dropout):
    """``keras.layers.Dropout``: in training, zero each unit with probability ``rate`` and scale
    the rest by 1 / (1 - rate); at inference, the identity. The mask comes from the layer's own
    seed generator (advanced once per call, saved with the model) through ``drop`` and the
    class's ``random_bits``. With several replicas (workers), each folds its own index into the
    seed: they advance the same generator in step, and would otherwise drop the same units of
    their shares of a batch."""

    random_bits = None  # each subclass's source of bits: count, seed -> uint32

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            replica_id = tf.cast(replica.replica_id_in_sync_group, tf.int64)
            seed = tf.random.experimental.stateless_fold_in(seed, replica_id)
        return drop(inputs, self.rate, seed, type(self).random_bits)


@keras.saving.register_keras_serializable(package="digits")
class HashedDropout(_SeededDropout):
    """Dropout whose bits are ``hashed_bits``: for training steps that XLA compiles."""

    random_bits = staticmethod(hashed_bits)


@keras.saving.register_keras_serializable(package="digits")
class PhiloxDropout(_SeededDropout):
    """Dropout whose bits are ``philox_bits``: for training steps that run op by op. Every
    dropout layer before 2026-11-28 was this one."""

    random_bits = staticmethod(philox_bits)
