"""The optimizer: FusedAdam takes Keras' Adam step; the schedule warms up and decays."""

import dataclasses

import keras
import numpy as np
import pytest
from conftest import TINY

from digits.optimizer import FusedAdam, learning_rate_schedule


def test_learning_rate_warms_up_then_decays_to_zero():
    params = dataclasses.replace(TINY, epochs=4, warmup_epochs=1)
    schedule = learning_rate_schedule(params, steps_per_epoch=10)
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(0.01)
    assert float(schedule(40)) == pytest.approx(0.0, abs=1e-9)


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
