"""The optimizer: FusedAdam takes Keras' Adam step; the schedule warms up and decays."""

import dataclasses

import keras
import numpy as np
import pytest
from conftest import TINY

from digits.optimizer import FusedAdam, adam, learning_rate_schedule


def test_learning_rate_warms_up_then_decays_to_zero():
    params = dataclasses.replace(TINY, epochs=4, warmup_epochs=1)
    schedule = learning_rate_schedule(params, steps_per_epoch=10)
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(0.01)
    assert float(schedule(40)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("warmup_epochs", [0, 1])
def test_the_decay_follows_a_cosine_from_the_end_of_the_warm_up(warmup_epochs):
    """The default (no warm-up) included: full rate at the first step after the warm-up, half
    way along a cosine to 0 in the middle of the rest, a quarter at three quarters."""
    params = dataclasses.replace(TINY, epochs=5, warmup_epochs=warmup_epochs)
    schedule = learning_rate_schedule(params, steps_per_epoch=10)
    start, decay_steps = 10 * warmup_epochs, 50 - 10 * warmup_epochs
    for along in (0, 0.25, 0.5, 0.75, 1):
        expected = 0.01 * 0.5 * (1 + np.cos(np.pi * along))
        assert float(schedule(start + along * decay_steps)) == pytest.approx(expected, abs=1e-9)


def test_constant_learning_rate_after_warm_up_stays_constant():
    params = dataclasses.replace(TINY, lr_schedule="constant", epochs=4, warmup_epochs=1)
    schedule = learning_rate_schedule(params, steps_per_epoch=10)
    assert float(schedule(5)) == pytest.approx(0.005)
    assert float(schedule(39)) == pytest.approx(0.01)


@pytest.mark.parametrize("weight_decay", [None, 0.1], ids=["adam", "adamw"])
def test_fused_adam_matches_keras_adam(weight_decay):
    """Same update as Keras' Adam (and AdamW), up to float rounding."""

    def weights_after_updates(optimizer) -> np.ndarray:
        weights = keras.Variable(np.linspace(-1, 1, 60, dtype=np.float32).reshape(6, 10))
        optimizer.build([weights])
        for step in range(5):
            gradient = np.full((6, 10), step - 2, dtype=np.float32) + weights.numpy()
            optimizer.apply([gradient], [weights])
        return weights.numpy()

    fused = weights_after_updates(FusedAdam(0.01, weight_decay=weight_decay))
    plain = weights_after_updates(keras.optimizers.Adam(0.01, weight_decay=weight_decay))
    np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-6)


def test_ema_momentum_leaves_the_running_average_in_the_weights():
    """With ``ema_momentum``, the optimizer averages the weights after every step, and finalizing
    (what ``fit`` does last) puts that average in the model instead of the last weights."""
    params = dataclasses.replace(TINY, lr_schedule="constant", ema_momentum=0.5)
    optimizer = adam(params, steps_per_epoch=10)
    weights = keras.Variable(np.zeros(3, dtype=np.float32))
    optimizer.build([weights])
    trajectory = []
    for _ in range(4):
        optimizer.apply([np.ones(3, dtype=np.float32)], [weights])
        trajectory.append(weights.numpy().copy())
    average = trajectory[0]  # the first step starts the average
    for step in trajectory[1:]:
        average = 0.5 * average + 0.5 * step
    optimizer.finalize_variable_values([weights])
    np.testing.assert_allclose(weights.numpy(), average, rtol=1e-6)
    assert not np.allclose(average, trajectory[-1])


def test_the_weights_average_holds_the_max_norm_cap():
    """Keras averages the weights before it applies their constraints, so without FusedAdam's
    own cap the average (what fit leaves) is one of weights the cap never held."""
    params = dataclasses.replace(TINY, lr_schedule="constant", learning_rate=0.5, ema_momentum=0.5)
    optimizer = adam(params, steps_per_epoch=10)
    weights = keras.Variable(np.zeros((4, 2), np.float32))
    weights.constraint = keras.constraints.MaxNorm(1)  # as Dense sets its kernel's
    optimizer.build([weights])
    for _ in range(5):
        optimizer.apply([-np.ones((4, 2), np.float32)], [weights])  # every step: grow
        assert np.linalg.norm(weights.numpy(), axis=0).max() <= 1 + 1e-6
    optimizer.finalize_variable_values([weights])
    norms = np.linalg.norm(weights.numpy(), axis=0)
    assert 0.5 < norms.max() <= 1 + 1e-6


def test_no_ema_momentum_keeps_the_last_weights():
    optimizer = adam(TINY, steps_per_epoch=10)
    weights = keras.Variable(np.zeros(3, dtype=np.float32))
    optimizer.build([weights])
    optimizer.apply([np.ones(3, dtype=np.float32)], [weights])
    last = weights.numpy().copy()
    optimizer.finalize_variable_values([weights])
    np.testing.assert_array_equal(weights.numpy(), last)
