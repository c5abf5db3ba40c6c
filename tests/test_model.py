"""The dense classifier: its layers follow the params, it learns, the same params give the same
weights, and training stops cleanly when asked or when it diverges."""

import dataclasses
import os
import signal

import keras
import numpy as np
import pytest
from conftest import ALL_OPTIONS, TINY, random_data, scaled, tiny_digits, trained

from digits.batches import training_batches
from digits.model import TrainingError, build_model, in_chunks


def test_build_model_layers_follow_params():
    model = build_model(TINY, n_train=64)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Flatten", "Dense", "PhiloxDropout", "Dense", "Dense"]  # none at rate 0
    assert [layer.units for layer in model.layers if hasattr(layer, "units")] == [8, 4, 10]
    assert model.get_layer("dropout_1").rate == 0.5
    assert model.get_layer("probabilities").activation.__name__ == "softmax"
    # weights + biases: 784*8 + 8, 8*4 + 4, 4*10 + 10
    assert model.count_params() == 6280 + 36 + 50


def test_steps_that_xla_compiles_drop_with_hashed_masks():
    """Op by op (TINY) the dropout layer is PhiloxDropout, above; under XLA the hashed one."""
    model = build_model(dataclasses.replace(TINY, jit_compile=True), n_train=64)
    assert type(model.get_layer("dropout_1")).__name__ == "HashedDropout"


def test_max_norm_caps_hidden_layers_only():
    model = build_model(dataclasses.replace(TINY, max_norm=2.0), n_train=64)
    assert model.get_layer("hidden_1").kernel_constraint.max_value == 2.0
    assert model.get_layer("probabilities").kernel_constraint is None


def test_a_tiny_model_learns_digits_it_can_see():
    """300 pictures whose label is a bright bar's row band: far above chance (10 %) held out."""
    params = dataclasses.replace(TINY, hidden_units=(32,), dropout=(0.0,), epochs=8)
    train, held_out = scaled(*tiny_digits(300, seed=1)), scaled(*tiny_digits(100, seed=2))
    model, history = trained(params, data=(train, held_out))
    predicted = model.predict(held_out[0], verbose=0).argmax(axis=1)
    assert np.mean(predicted == held_out[1]) >= 0.9
    assert history["loss"][-1] < history["loss"][0]


def test_mixed_bfloat16_multiplies_in_bfloat16_and_keeps_float32_weights_and_outputs():
    model = build_model(dataclasses.replace(TINY, precision="mixed_bfloat16"), n_train=64)
    hidden = model.get_layer("hidden_1")
    assert (hidden.compute_dtype, hidden.variable_dtype) == ("bfloat16", "float32")
    assert model.get_layer("probabilities").compute_dtype == "float32"
    assert {weight.dtype for weight in model.get_weights()} == {np.dtype("float32")}
    probabilities = model.predict(random_data(4, 1)[0], verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-6)


def test_mixed_bfloat16_learns_as_float32_does():
    params = dataclasses.replace(TINY, hidden_units=(32,), dropout=(0.0,), epochs=8)
    train, held_out = scaled(*tiny_digits(300, seed=1)), scaled(*tiny_digits(100, seed=2))
    results = {}
    for precision in ("float32", "mixed_bfloat16"):
        model, _ = trained(
            dataclasses.replace(params, precision=precision), data=(train, held_out)
        )
        results[precision] = model.predict(held_out[0], verbose=0).argmax(axis=1)
    assert np.mean(results["mixed_bfloat16"] == held_out[1]) >= 0.9
    assert np.mean(results["mixed_bfloat16"] != results["float32"]) <= 0.05


BFLOAT16_OPTIONS = dataclasses.replace(ALL_OPTIONS, jit_compile=False, precision="mixed_bfloat16")


@pytest.mark.parametrize(
    "params", [TINY, ALL_OPTIONS, BFLOAT16_OPTIONS], ids=["plain", "all-options", "bfloat16"]
)
def test_training_twice_gives_identical_weights_and_history(params):
    first_model, first_history = trained(params)
    second_model, second_history = trained(params)
    assert first_history == second_history
    for first, second in zip(first_model.get_weights(), second_model.get_weights(), strict=True):
        np.testing.assert_array_equal(first, second)
    assert set(first_history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


class LastEpochWeights(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.weights = self.model.get_weights()


@pytest.mark.parametrize("ema_momentum", [0.0, 0.9], ids=["last-weights", "ema"])
def test_fit_ends_with_the_weights_average_only_with_ema_momentum(ema_momentum):
    """The epochs (and their validation) run on the trained weights; with ``ema_momentum``,
    fit then puts their moving average in the model, which is what gets saved."""
    last = LastEpochWeights()
    model, _ = trained(dataclasses.replace(TINY, ema_momentum=ema_momentum), callbacks=(last,))
    kept = [np.array_equal(a, b) for a, b in zip(model.get_weights(), last.weights, strict=True)]
    assert all(kept) == (ema_momentum == 0)


class StopAfterFirstBatch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        self.model.stop_training = True


def test_one_step_is_keras_own_train_step_on_the_batch_source():
    """fit() with our pieces takes exactly the step Keras' ``train_on_batch`` takes on the first
    batch ``training_batches`` yields: same batch source, same layers, same update."""
    params = dataclasses.replace(TINY, dropout=(0.0, 0.0), epochs=1, steps_per_execution=1)
    train = random_data(64, 1)  # four batches of 16: stopped after the first
    fitted, _ = trained(
        params, callbacks=(StopAfterFirstBatch(),), data=(train, random_data(16, 2))
    )
    x, y = next(iter(training_batches(*train, params)))
    stepped = build_model(params, n_train=64)
    stepped.train_on_batch(x, y)
    for a, b in zip(fitted.get_weights(), stepped.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    moved = build_model(params, n_train=64)
    moved.train_on_batch(train[0][:16], train[1][:16])  # not the batch the source drew first
    assert not np.allclose(moved.get_weights()[0], stepped.get_weights()[0])


def test_with_jit_compile_training_steps_are_xla_compiled_and_validation_steps_are_not():
    params = dataclasses.replace(TINY, epochs=1, jit_compile=True)
    model, history = trained(params)
    assert model.jit_compile  # as compiled, after validating op by op
    assert xla_settings(model.train_function)["one_step_on_data"] is True
    assert xla_settings(model.test_function)["one_step_on_data"] is False
    assert len(history["val_accuracy"]) == 1


@pytest.mark.parametrize(
    "params",
    [TINY, ALL_OPTIONS, dataclasses.replace(ALL_OPTIONS, compiled_loop=True)],
    ids=["tiny", "every-option", "compiled-loop"],
)
def test_the_training_step_is_traced_once(params, monkeypatch):
    """A step that creates variables (the optimizer's slots, the metrics' totals) while Keras
    traces it is traced twice; train_model creates them first."""
    from digits.model import train_model

    train, validation = random_data(64, 1), random_data(32, 2)
    model = build_model(params, n_train=len(train[0]))
    traces = []
    step = model.train_step

    def traced_step(data):
        traces.append(data)
        return step(data)

    monkeypatch.setattr(model, "train_step", traced_step)
    train_model(model, train, validation, params, callbacks=[], verbose=0)
    assert len(traces) == 1


@pytest.mark.parametrize(
    "params",
    [ALL_OPTIONS, dataclasses.replace(ALL_OPTIONS, compiled_loop=True)],
    ids=["steps", "compiled-loop"],
)
def test_fit_takes_every_epoch_from_one_iterator_in_one_call_an_epoch(params, monkeypatch):
    """Making an iterator of the batch source instantiates and optimizes its functions anew
    (0.13 s for the default's distortions): ``fit`` makes one for the whole run, not one an
    epoch, and takes each epoch in one call into TensorFlow."""
    import tensorflow as tf

    from digits import model as model_module

    sources, iterated = [], []

    def source(*args, **kwargs):
        sources.append(training_batches(*args, **kwargs))
        return sources[-1]

    def iterate(dataset):
        iterated.append(dataset)
        return dataset_iterator(dataset)

    dataset_iterator = tf.data.Dataset.__iter__
    monkeypatch.setattr(model_module, "training_batches", source)
    monkeypatch.setattr(tf.data.Dataset, "__iter__", iterate)
    calls = CallCounter()
    model, history = trained(dataclasses.replace(params, epochs=3), callbacks=(calls,))
    assert len(history["loss"]) == 3 and model.optimizer.iterations.numpy() == 3 * 4
    assert [dataset is sources[0] for dataset in iterated].count(True) == 1
    assert calls.calls == 3


def test_a_model_built_for_another_training_set_is_refused_before_training():
    """Its calls would take a whole epoch's steps of another size, running into the next."""
    from digits.model import train_model

    model = build_model(TINY, n_train=64)
    with pytest.raises(ValueError, match="build it with n_train=100"):
        train_model(model, random_data(100, 1), random_data(32, 2), TINY, [], verbose=0)


class CallCounter(keras.callbacks.Callback):
    """Counts calls into TensorFlow: Keras calls ``on_train_batch_end`` after each."""

    calls = 0

    def on_train_batch_end(self, batch, logs=None):
        self.calls += 1


def test_steps_in_chunks_train_the_same_weights_bit_for_bit_as_step_by_step():
    """``compiled_loop``: the ``steps_per_execution`` steps of a call run in one XLA loop
    (``Network``), the same arithmetic as Keras calling its compiled step once a batch: every
    option on, full chunks, a padded chunk and a smaller last batch (100 images, batches of 16)."""
    data = (random_data(100, 1), random_data(32, 2))
    stepped = dataclasses.replace(ALL_OPTIONS, steps_per_execution=4, epochs=2)
    chunked = dataclasses.replace(stepped, compiled_loop=True)
    assert in_chunks(chunked) and not in_chunks(stepped)
    (model_a, history_a), (model_b, history_b) = (
        trained(params, data=data) for params in (chunked, stepped)
    )
    assert history_a == history_b
    assert model_a.optimizer.iterations.numpy() == 2 * 7  # 6 full batches and one of 4
    for a, b in zip(model_a.get_weights(), model_b.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def xla_settings(step) -> dict:
    """The jit_compile setting of each tf.function behind a Keras step function, by name (the
    loop over steps and ``one_step_on_data``), found through the closures Keras makes them in."""
    import tensorflow as tf

    settings, seen, pending = {}, set(), [step]
    while pending:
        function = pending.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        if isinstance(function, tf.types.experimental.PolymorphicFunction):
            function, jit_compile = function.python_function, function._jit_compile
            settings[function.__name__] = jit_compile
        pending.extend(
            cell.cell_contents
            for cell in getattr(function, "__closure__", None) or ()
            if callable(cell.cell_contents)
        )
    return settings


def test_a_diverging_loss_stops_training_with_an_error():
    params = dataclasses.replace(TINY, epochs=3, jit_compile=True)
    x, y = random_data(64, 1)
    y[5] = 12  # no such class: XLA's sparse cross-entropy makes the loss NaN
    with pytest.raises(TrainingError, match="loss became nan in epoch 1"):
        trained(params, data=((x, y), random_data(32, 2)))


class SignalAtBatch(keras.callbacks.Callback):
    """Sends this process SIGTERM at the end of the second batch; counts epochs that end."""

    epochs_ended = 0

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1 and self.epochs_ended == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_ended += 1


class SignalAtValidation(SignalAtBatch):
    """Sends SIGTERM as the first validation begins; counts the training batches after it."""

    batches_after = 0
    sent = False

    def on_train_batch_end(self, batch, logs=None):
        self.batches_after += self.sent

    def on_test_begin(self, logs=None):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_during_validation_stops_training_when_the_epoch_ends():
    sender = SignalAtValidation()
    params = dataclasses.replace(TINY, epochs=50, steps_per_execution=1)
    with pytest.raises(KeyboardInterrupt):
        trained(params, callbacks=(sender,))
    assert (sender.epochs_ended, sender.batches_after) == (1, 0)


def test_a_signal_stops_training_at_a_batch_then_interrupts():
    sender = SignalAtBatch()
    params = dataclasses.replace(TINY, epochs=50, steps_per_execution=1)
    with pytest.raises(KeyboardInterrupt):
        trained(params, callbacks=(sender,))
    assert sender.epochs_ended == 1  # the first epoch ends early, no other begins
