"""PhiloxDropout keeps Dropout's contract: the expected fraction dropped, the rest scaled."""

import numpy as np
import pytest

from digits.dropout import PhiloxDropout


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
