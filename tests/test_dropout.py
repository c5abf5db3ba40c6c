"""PhiloxDropout keeps Dropout's contract: the expected fraction dropped, the rest scaled."""

import numpy as np
import pytest
import tensorflow as tf

from digits.dropout import PhiloxDropout, drop


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_drops_the_expected_fraction_and_scales_the_rest(rate):
    layer = PhiloxDropout(rate, seed=3)
    out = np.asarray(layer(np.ones((200, 500), dtype=np.float32), training=True))
    kept = out != 0
    assert abs(1 - kept.mean() - rate) < 0.01  # 100,000 units: the standard error is < 0.002
    np.testing.assert_allclose(out[kept], 1 / (1 - rate), rtol=1e-6)


def test_is_the_identity_at_inference():
    x = np.random.default_rng(0).random((4, 8), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(PhiloxDropout(0.5, seed=1)(x)), x)


def test_masks_are_seeded_and_change_every_call():
    x = np.ones((8, 64), dtype=np.float32)
    first, second = PhiloxDropout(0.5, seed=1), PhiloxDropout(0.5, seed=1)
    a = np.asarray(first(x, training=True))
    np.testing.assert_array_equal(a, np.asarray(second(x, training=True)))
    assert not np.array_equal(a, np.asarray(first(x, training=True)))


def test_both_halves_of_each_random_draw_decide_their_own_unit():
    """Units 2k and 2k+1 share one 32-bit draw: both are dropped with probability rate^2 only if
    each half decides independently."""
    out = np.asarray(drop(np.ones((100, 1000), dtype=np.float32), 0.5, np.array([4, 5])))
    pairs = out.reshape(-1, 2) == 0
    assert abs(pairs.all(axis=1).mean() - 0.25) < 0.01  # 50,000 pairs: standard error 0.002


@pytest.mark.parametrize("shape", [(3, 5), (1, 1), (7,)])
def test_odd_sizes_and_bfloat16_keep_shape_and_type(shape):
    x = tf.ones(shape, tf.bfloat16)
    out = drop(x, 0.2, np.array([1, 2]))
    assert out.shape == shape and out.dtype == tf.bfloat16
    assert set(np.unique(out.numpy().astype(np.float32))) <= {0.0, 1.25}
