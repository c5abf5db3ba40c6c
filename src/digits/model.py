"""The classifier: a dense Keras network on 28x28 images, built, compiled and fitted as Keras
does it. The pieces that make it fast plug into that path: ``dropout_layer`` (masks drawn
cheaply, with XLA or without), ``FusedAdam`` (a one-pass Adam update) and ``training_batches``
(one seeded batch source)."""

import math

import keras
import numpy as np

from digits.batches import (
    elements_per_epoch,
    one_hot_labels,
    steps_per_epoch,
    training_batches,
    validation_batches,
)
from digits.dropout import dropout_layer, dropout_seed
from digits.errors import DigitsError
from digits.mnist import IMAGE_SHAPE, N_CLASSES
from digits.network import Network
from digits.optimizer import adam
from digits.params import TrainParams
from digits.stopping import stop_on_signals

# Whatever train.precision is: a bfloat16 softmax would round probabilities to 3 digits.
PROBABILITIES_DTYPE = "float32"


class TrainingError(DigitsError):
    """Training diverged: the loss is no longer a finite number."""


def build_model(params: TrainParams, n_train: int) -> keras.Sequential:
    """Return a compiled Sequential: Flatten -> [Dense(relu) -> Dropout] * n -> Dense(softmax),
    its initial weights drawn from ``params.seed``, to train on ``n_train`` images. The hidden
    layers compute in ``params.precision`` (mixed_bfloat16: bfloat16 products of float32
    weights)."""
    keras.utils.set_random_seed(params.seed)
    constraint = keras.constraints.MaxNorm(params.max_norm) if params.max_norm > 0 else None
    hidden = keras.DTypePolicy(params.precision)
    layers = [keras.Input(shape=IMAGE_SHAPE), keras.layers.Flatten()]
    for index, (units, rate) in enumerate(
        zip(params.hidden_units, params.dropout, strict=True), start=1
    ):
        layers.append(
            keras.layers.Dense(
                units,
                activation="relu",
                kernel_constraint=constraint,
                dtype=hidden,
                name=f"hidden_{index}",
            )
        )
        if rate > 0:
            layers.append(
                dropout_layer(params.jit_compile)(
                    rate,
                    seed=dropout_seed(params.seed, index),
                    dtype=hidden,
                    name=f"dropout_{index}",
                )
            )
    layers.append(
        keras.layers.Dense(
            N_CLASSES, activation="softmax", dtype=PROBABILITIES_DTYPE, name="probabilities"
        )
    )
    model = Network(layers, name="digits")
    model.compile(
        optimizer=adam(params, steps_per_epoch(n_train, params.batch_size)),
        loss=_loss(params),
        metrics=["accuracy"],
        steps_per_execution=steps_per_call(params, n_train),
        jit_compile=params.jit_compile,
    )
    return model


def steps_per_call(params: TrainParams, n_train: int) -> int:
    """Keras' ``steps_per_execution``: an epoch's elements (batches, or chunks of them) in one
    call into TensorFlow, or one when ``params.steps_per_execution`` is 1 (as on workers).

    A call cannot stop at the end of an epoch: ``fit`` keeps one iterator of
    ``training_batches`` for the whole run, and a call takes its count of elements from it
    whichever epoch they belong to. An epoch a call measured as fast as 64 steps a call
    (README "Speed")."""
    if params.steps_per_execution == 1:
        return 1
    return elements_per_epoch(n_train, params, in_chunks(params))


def in_chunks(params: TrainParams) -> bool:
    """Whether training takes ``params.steps_per_execution`` steps in one XLA computation."""
    return params.compiled_loop


def _loss(params: TrainParams) -> keras.losses.Loss | str:
    """Cross-entropy of the true digit, on one-hot labels when they are smoothed."""
    if one_hot_labels(params):
        return keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing)
    return "sparse_categorical_crossentropy"


def train_model(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    params: TrainParams,
    callbacks: list,
    verbose: int | str,
) -> keras.callbacks.History:
    """Fit ``model`` on ``train`` = (x float32 (n, 28, 28), y uint8 (n,)), validating on
    ``validation`` after every epoch; the callbacks get loss, accuracy, val_loss and
    val_accuracy per epoch.

    The same params give the same weights, bit for bit (tests/test_model.py trains twice and
    compares them; a fresh clone's `dvc repro` reproduces the model's hash): every op on this
    path is deterministic on CPU. ``tf.config.experimental.enable_op_determinism`` is not used:
    Keras turns XLA off whenever it is on, for the sake of GPUs, where some XLA ops are not.
    """
    validation_data = validation_batches(*validation, params)
    chunks = in_chunks(params)
    per_epoch = elements_per_epoch(len(train[0]), params, chunks)
    if model.steps_per_execution not in (1, per_epoch):  # a call would run into the next epoch
        raise ValueError(
            f"the model takes {model.steps_per_execution} steps a call, and an epoch of these "
            f"{len(train[0])} images is {per_epoch}: build it with n_train={len(train[0])}"
        )
    build_training_state(model, validation_data.element_spec)
    make_validation_step_without_xla(model)
    with stop_on_signals() as stopper:
        history = model.fit(
            training_batches(*train, params, in_chunks=chunks),
            epochs=params.epochs,
            steps_per_epoch=per_epoch,
            validation_data=validation_data,
            shuffle=False,  # training_batches shuffles, seeded
            callbacks=[*callbacks, keras.callbacks.TerminateOnNaN(), stopper],
            verbose=verbose,
        )
    losses = history.history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise TrainingError(
            f"the training loss became {losses[-1]} in epoch {len(losses)}: check the data "
            "(labels 0-9, pixels 0-1) or lower train.learning_rate"
        )
    return history


def build_training_state(model: keras.Model, batch_spec) -> None:
    """Create the optimizer's slots and the metrics' totals now, for batches like
    ``batch_spec`` ((x, y) specs). Keras creates them while it traces the training step, unless a
    distribution strategy is set, and a step that creates variables is traced twice (the first
    trace only lifts them out): about 0.5 s of the train stage. Keras' own build, as it runs
    under a strategy; the variables start as they would have (zeros, or the weights' averages)."""
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=batch_spec)


def make_validation_step_without_xla(model: keras.Model) -> None:
    """Make the model's validation step op by op, whatever ``jit_compile`` says for training.

    Keras compiles validation with XLA too when ``jit_compile`` is on. Scoring 6,000 images in
    batches of 1,000 is its matrix products, as fast op by op, so compiling it only costs: about
    0.3 s of the train stage's first epoch. ``fit`` keeps the step made here (until the model is
    compiled again)."""
    jit_compile = model.jit_compile
    model.jit_compile = False
    try:
        model.make_test_function(force=True)
    finally:
        model.jit_compile = jit_compile
