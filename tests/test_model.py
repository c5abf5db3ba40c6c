"""The dense classifier: structure from params, deterministic training, saving and loading."""

import dataclasses

import keras
import numpy as np
import pytest

from digits.augment import _sample_bilinear, distort_images
from digits.model import (
    FusedAdam,
    ModelError,
    build_model,
    learning_rate_schedule,
    load_model,
    make_deterministic,
    save_model,
    train_model,
)
from digits.params import AugmentParams, TrainParams

NO_AUGMENT = AugmentParams(shift_px=0, rotation_deg=0, scale=0, elastic_px=0)
TINY = TrainParams(
    seed=7,
    hidden_units=(8, 4),
    dropout=(0.5, 0.0),
    max_norm=0.0,
    learning_rate=0.01,
    lr_schedule="cosine",
    warmup_epochs=0,
    weight_decay=0.0,
    label_smoothing=0.0,
    batch_size=16,
    epochs=2,
    steps_per_execution=2,
    jit_compile=False,
    training_loop="in_graph",
    augment=NO_AUGMENT,
)
# Every option on at once: XLA, warm-up, AdamW, max-norm, one-hot labels, augmentation.
ALL_OPTIONS = dataclasses.replace(
    TINY,
    jit_compile=True,
    warmup_epochs=1,
    weight_decay=0.01,
    max_norm=3.0,
    label_smoothing=0.1,
    augment=AugmentParams(shift_px=2, rotation_deg=10, scale=0.1, elastic_px=1.5),
)


def tiny_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.uint8)


def trained(params: TrainParams, callbacks: tuple = ()) -> tuple[keras.Model, dict]:
    """Train on 64 tiny images in batches of 16 (4 steps an epoch), validating on 32."""
    make_deterministic(params.seed)
    model = build_model(params, steps_per_epoch=4)
    history = train_model(
        model, tiny_data(64, 1), tiny_data(32, 2), params, callbacks=list(callbacks), verbose=0
    )
    return model, history.history


def test_build_model_layers_follow_params():
    model = build_model(TINY, steps_per_epoch=4)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Flatten", "Dense", "Dropout", "Dense", "Dense"]  # no Dropout at rate 0
    assert [layer.units for layer in model.layers if hasattr(layer, "units")] == [8, 4, 10]
    assert model.get_layer("dropout_1").rate == 0.5
    assert model.get_layer("probabilities").activation.__name__ == "softmax"
    # weights + biases: 784*8 + 8, 8*4 + 4, 4*10 + 10
    assert model.count_params() == 6280 + 36 + 50


def test_max_norm_caps_hidden_layers_only():
    model = build_model(dataclasses.replace(TINY, max_norm=2.0), steps_per_epoch=4)
    assert model.get_layer("hidden_1").kernel_constraint.max_value == 2.0
    assert model.get_layer("probabilities").kernel_constraint is None


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


@pytest.mark.parametrize("params", [TINY, ALL_OPTIONS], ids=["plain", "all-options"])
def test_training_twice_gives_identical_weights_and_history(params):
    first_model, first_history = trained(params)
    second_model, second_history = trained(params)
    assert first_history == second_history
    for first, second in zip(first_model.get_weights(), second_model.get_weights(), strict=True):
        np.testing.assert_array_equal(first, second)
    assert set(first_history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


class CallRecorder(keras.callbacks.Callback):
    def __init__(self, stop_after_epoch: int | None = None, stop_after_batch: int | None = None):
        super().__init__()
        self.calls, self.stop_after_epoch, self.stop_after_batch = (
            [],
            stop_after_epoch,
            stop_after_batch,
        )

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch", batch, sorted(logs)))
        if batch == self.stop_after_batch:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch", epoch, sorted(logs)))
        if epoch == self.stop_after_epoch:
            self.model.stop_training = True


@pytest.mark.parametrize("loop", ["in_graph", "keras_fit"])
def test_both_training_loops_report_the_same_logs_to_callbacks(loop):
    # 4 steps an epoch, 2 per call into TensorFlow.
    params = dataclasses.replace(TINY, training_loop=loop, epochs=2)
    recorder = CallRecorder()
    _, history = trained(params, callbacks=[recorder])
    train_keys, all_keys = ["accuracy", "loss"], ["accuracy", "loss", "val_accuracy", "val_loss"]
    batch_ends = [("batch", 1, train_keys), ("batch", 3, train_keys)]
    assert recorder.calls == [
        *batch_ends,
        ("epoch", 0, all_keys),
        *batch_ends,
        ("epoch", 1, all_keys),
    ]
    assert sorted(history) == all_keys and len(history["loss"]) == 2


def test_in_graph_loop_logs_what_keras_would_measure():
    """The epoch's logs equal Keras' own evaluation of the same data: validation after the last
    epoch exactly as ``model.evaluate`` scores it (up to float rounding)."""
    params = dataclasses.replace(TINY, dropout=(0.0, 0.0), epochs=1)
    model, history = trained(params)
    x, y = tiny_data(32, 2)
    loss, accuracy = model.evaluate(x, y, batch_size=32, verbose=0)
    assert history["val_loss"][-1] == pytest.approx(loss, rel=1e-5)
    assert history["val_accuracy"][-1] == pytest.approx(accuracy)
    assert 0 <= history["accuracy"][-1] <= 1 and history["loss"][-1] > 0


@pytest.mark.parametrize(
    ("stop", "calls"),
    [
        (
            {"stop_after_epoch": 1},
            ["batch 1", "batch 3", "epoch 0", "batch 1", "batch 3", "epoch 1"],
        ),
        ({"stop_after_batch": 1}, ["batch 1", "epoch 0"]),  # the epoch ends, with validation
    ],
    ids=["after-epoch", "mid-epoch"],
)
@pytest.mark.parametrize("loop", ["in_graph", "keras_fit"])
def test_training_stops_when_a_callback_asks(loop, stop, calls):
    recorder = CallRecorder(**stop)
    trained(dataclasses.replace(TINY, training_loop=loop, epochs=5), callbacks=[recorder])
    assert [f"{kind} {index}" for kind, index, _ in recorder.calls] == calls
    assert "val_loss" in recorder.calls[-1][2]


def test_save_load_round_trip_keeps_predictions_and_bytes(tmp_path):
    model, _ = trained(TINY)
    x, _ = tiny_data(8, 3)
    save_model(model, tmp_path / "a.keras")
    save_model(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    loaded = load_model(tmp_path / "a.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_model_with_every_option_loads_in_safe_mode(tmp_path):
    # Without XLA: a compiled predict may differ from the plain one in the last bits.
    model, _ = trained(dataclasses.replace(ALL_OPTIONS, jit_compile=False))
    save_model(model, tmp_path / "model.keras")
    x, _ = tiny_data(4, 3)
    loaded = load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_load_model_missing_file_names_it(tmp_path):
    with pytest.raises(ModelError, match="absent.keras: model file missing"):
        load_model(tmp_path / "absent.keras")


def test_load_model_corrupt_file_names_it(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ModelError, match="broken.keras: cannot load the model"):
        load_model(path)


def test_distort_images_without_options_is_identity():
    x, _ = tiny_data(4, 4)
    out = distort_images(x, np.array([1, 2], dtype=np.int64), NO_AUGMENT)
    np.testing.assert_array_equal(out.numpy(), x)


def test_distort_images_is_seeded():
    x, _ = tiny_data(4, 4)
    augment = ALL_OPTIONS.augment
    first = distort_images(x, np.array([1, 2], dtype=np.int64), augment).numpy()
    again = distort_images(x, np.array([1, 2], dtype=np.int64), augment).numpy()
    other = distort_images(x, np.array([3, 4], dtype=np.int64), augment).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == x.shape and 0 <= first.min() and first.max() <= 1


def test_bilinear_sampling_reads_whole_and_half_pixels():
    image = np.zeros((1, 28, 28), dtype=np.float32)
    image[0, 10, 12] = 1.0
    rows, columns = np.meshgrid(np.arange(28.0), np.arange(28.0), indexing="ij")
    rows, columns = rows[None].astype(np.float32), columns[None].astype(np.float32)
    moved = _sample_bilinear(image, rows - 1, columns + 0.5).numpy()
    assert moved[0, 11, 11] == 0.5 and moved[0, 11, 12] == 0.5  # one down, half left
    assert moved.sum() == 1.0
    outside = _sample_bilinear(image, rows + 40, columns).numpy()
    assert not outside.any()  # beyond the edge reads the zero background


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
