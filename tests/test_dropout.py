"""Both dropout layers keep Dropout's contract: the expected fraction dropped, the rest scaled."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from digits.dropout import (
    HashedDropout,
    PhiloxDropout,
    drop,
    dropout_layer,
    dropout_seed,
    hashed_bits,
    mix,
    philox_bits,
)

LAYERS = [HashedDropout, PhiloxDropout]
BIT_SOURCES = [hashed_bits, philox_bits]


@pytest.mark.parametrize("layer_class", LAYERS)
@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_drops_the_expected_fraction_and_scales_the_rest(rate, layer_class):
    layer = layer_class(rate, seed=3)
    out = np.asarray(layer(np.ones((200, 500), dtype=np.float32), training=True))
    kept = out != 0
    assert abs(1 - kept.mean() - rate) < 0.01  # 100,000 units: the standard error is < 0.002
    np.testing.assert_allclose(out[kept], 1 / (1 - rate), rtol=1e-6)


@pytest.mark.parametrize("layer_class", LAYERS)
def test_is_the_identity_at_inference(layer_class):
    x = np.random.default_rng(0).random((4, 8), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(layer_class(0.5, seed=1)(x)), x)


@pytest.mark.parametrize("layer_class", LAYERS)
def test_masks_are_seeded_and_change_every_call(layer_class):
    x = np.ones((8, 64), dtype=np.float32)
    first, second = layer_class(0.5, seed=1), layer_class(0.5, seed=1)
    a = np.asarray(first(x, training=True))
    np.testing.assert_array_equal(a, np.asarray(second(x, training=True)))
    assert not np.array_equal(a, np.asarray(first(x, training=True)))


@pytest.mark.parametrize("random_bits", BIT_SOURCES)
def test_both_halves_of_each_random_draw_decide_their_own_unit(random_bits):
    """Units 2k and 2k+1 share one 32-bit draw: both are dropped with probability rate^2 only if
    each half decides independently."""
    ones = np.ones((100, 1000), dtype=np.float32)
    out = np.asarray(drop(ones, 0.5, np.array([4, 5]), random_bits))
    pairs = out.reshape(-1, 2) == 0
    assert abs(pairs.all(axis=1).mean() - 0.25) < 0.01  # 50,000 pairs: standard error 0.002


@pytest.mark.parametrize("random_bits", BIT_SOURCES)
@pytest.mark.parametrize("shape", [(3, 5), (1, 1), (7,)])
def test_odd_sizes_and_bfloat16_keep_shape_and_type(shape, random_bits):
    x = tf.ones(shape, tf.bfloat16)
    out = drop(x, 0.2, np.array([1, 2]), random_bits)
    assert out.shape == shape and out.dtype == tf.bfloat16
    assert set(np.unique(out.numpy().astype(np.float32))) <= {0.0, 1.25}


# Two replicas on two logical CPUs must be set up before TensorFlow starts: a process of its own.
MASKS_ON_TWO_REPLICAS = """
import json
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from digits.dropout import LAYER
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    layer = LAYER(0.5, seed=43)
    layer.build((64, 256))
batch = tf.data.Dataset.from_tensors(tf.ones((128, 256))).unbatch().batch(128)
masks = tf.function(lambda x: strategy.run(lambda x: layer(x, training=True), args=(x,)))(
    next(iter(strategy.experimental_distribute_dataset(batch)))
)
first, second = (m.numpy() > 0 for m in strategy.experimental_local_results(masks))
print(json.dumps({"shapes": [first.shape, second.shape], "agreement": (first == second).mean()}))
"""


@pytest.mark.parametrize("layer_class", LAYERS)
def test_each_replica_drops_other_units_of_its_share_of_the_batch(layer_class):
    """Replicas (workers) advance the same seed generator in step: without their own index in
    the seed they would drop the same units of their shares, and image i of one share would
    always share image i's mask in the other."""
    result = subprocess.run(
        [sys.executable, "-c", MASKS_ON_TWO_REPLICAS.replace("LAYER", layer_class.__name__)],
        capture_output=True,
        text=True,
        check=True,
    )
    masks = json.loads(result.stdout)
    assert masks["shapes"] == [[64, 256], [64, 256]]
    assert 0.4 < masks["agreement"] < 0.6  # independent masks at rate 0.5 agree on half the units


def test_no_two_seeds_and_layers_share_their_masks():
    seeds = [dropout_seed(seed, layer) for seed in range(300) for layer in range(6)]

    assert len(set(seeds)) == len(seeds)
    assert all(0 <= seed < 2**31 for seed in seeds)
    assert dropout_seed(42, 1) == dropout_seed(42, 1)


def test_random_bits_are_balanced_and_independent_of_their_neighbours_and_seeds():
    """Each bit of the hash is 1 half the time, and neither neighbouring numbers nor the numbers
    of the next seed (the next training step) are correlated with them."""
    count = 1 << 20  # standard errors: 0.0005 for a bit position's mean, 0.001 for correlations
    bits = hashed_bits(count, np.array([5, 0])).numpy()
    next_step = hashed_bits(count, np.array([5, 1])).numpy()

    positions = np.unpackbits(bits.view(np.uint8)).reshape(count, 32).mean(axis=0)
    assert np.abs(positions - 0.5).max() < 0.0025
    units = bits.view(np.uint16).astype(np.float64)  # what drop compares, two per number
    assert abs(np.corrcoef(units[:-1], units[1:])[0, 1]) < 0.005
    assert abs(np.corrcoef(bits.astype(np.float64), next_step.astype(np.float64))[0, 1]) < 0.005


def test_mix_is_the_published_lowbias32():
    values = [0, 1, 2, 0xDEADBEEF, 0xFFFFFFFF]
    assert mix(tf.constant(values, tf.uint32)).numpy().tolist() == list(map(lowbias32, values))


def lowbias32(x: int) -> int:
    """Chris Wellons' lowbias32 in plain Python integers, as its C source reads."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_xla_steps_get_hashed_masks_and_op_by_op_steps_philox():
    assert dropout_layer(jit_compile=True) is HashedDropout
    assert dropout_layer(jit_compile=False) is PhiloxDropout


def test_philox_masks_are_those_every_model_before_the_hash_was_trained_with():
    """PhiloxDropout's bits are TensorFlow's Philox draws for the seed, unchanged: models trained
    op by op (best-bf16) keep their weights, and saved models their layer."""
    expected = tf.random.stateless_uniform(
        [6], [3, 4], minval=None, maxval=None, dtype=tf.uint32, alg="philox"
    )
    np.testing.assert_array_equal(philox_bits(6, np.array([3, 4])), expected)
