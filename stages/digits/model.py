"""The classifier: a dense Keras network on 28x28 images, and its training. Imports TensorFlow."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep CUDA-probe noise out of logs

import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from digits.augment import distort_images  # noqa: E402
from digits.distribute import shard_by_data  # noqa: E402
from digits.errors import DigitsError  # noqa: E402
from digits.files import atomic_path, rerun_hint  # noqa: E402
from digits.idx import IMAGE_SHAPE, N_CLASSES  # noqa: E402
from digits.params import TrainParams  # noqa: E402

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # earliest time a zip entry can hold


class ModelError(DigitsError):
    """The model file is missing or cannot be loaded."""


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(params: TrainParams, steps_per_epoch: int) -> keras.Sequential:
    """Return a compiled Sequential: Flatten -> [Dense(relu) -> Dropout] * n -> Dense(softmax)."""
    constraint = keras.constraints.MaxNorm(params.max_norm) if params.max_norm > 0 else None
    layers = [keras.Input(shape=IMAGE_SHAPE), keras.layers.Flatten()]
    for index, (units, rate) in enumerate(
        zip(params.hidden_units, params.dropout, strict=True), start=1
    ):
        layers.append(
            keras.layers.Dense(
                units, activation="relu", kernel_constraint=constraint, name=f"hidden_{index}"
            )
        )
        if rate > 0:
            layers.append(keras.layers.Dropout(rate, name=f"dropout_{index}"))
    layers.append(keras.layers.Dense(N_CLASSES, activation="softmax", name="probabilities"))
    model = keras.Sequential(layers, name="digits")
    model.compile(
        optimizer=_optimizer(params, learning_rate_schedule(params, steps_per_epoch)),
        loss=_loss(params),
        metrics=["accuracy"],
        steps_per_execution=params.steps_per_execution,
    )
    # Keras refuses XLA whenever op determinism is on, because some XLA ops are not
    # deterministic on GPU. On CPU the compiled step is deterministic (tests/test_model.py trains
    # twice with jit_compile and compares the weights bit for bit), so we set it past the check.
    # Not for model.fit with dropout: Keras' XLA step draws the masks ~50x slower on CPU.
    keras_xla_too_slow = params.training_loop == "keras_fit" and any(params.dropout)
    model._jit_compile = params.jit_compile and not keras_xla_too_slow
    return model


def _optimizer(params: TrainParams, learning_rate) -> keras.optimizers.Optimizer:
    """Adam; with ``weight_decay`` it is AdamW (Keras applies the decay before each update)."""
    return FusedAdam(learning_rate, weight_decay=params.weight_decay or None)


@keras.saving.register_keras_serializable(package="digits")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, updating each weight with TensorFlow's one-pass ``ApplyAdam`` kernel.

    Same formula and hyperparameters (epsilon added to sqrt(v)); Keras' own update runs about
    eleven separate element-wise passes over every weight per step, which cost more than the
    matrix products for our default model (2.0 vs 0.7 ms a step, ~0.5 s an epoch).
    Saved models name it ``digits>FusedAdam``: load them with ``load_model`` below, or with
    ``keras.saving.load_model(path, compile=False)`` to skip the optimizer.
    """

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_resource(variable),
            m=_resource(self._momentums[index]),
            v=_resource(self._velocities[index]),
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step),
            lr=tf.cast(learning_rate, dtype),
            beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype),
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )


def _loss(params: TrainParams) -> keras.losses.Loss | str:
    """Cross-entropy of the true digit; Keras smooths labels only for one-hot targets, so with
    smoothing the input pipeline one-hot encodes the labels (see ``one_hot_labels``)."""
    if params.label_smoothing > 0:
        return keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing)
    return "sparse_categorical_crossentropy"


def one_hot_labels(params: TrainParams) -> bool:
    return params.label_smoothing > 0


def _resource(variable) -> tf.Tensor:
    """The resource handle of a tf.Variable, or of the one inside a Keras variable."""
    return variable.handle if isinstance(variable, tf.Variable) else variable.value.handle


def learning_rate_schedule(params: TrainParams, steps_per_epoch: int):
    """The learning rate: constant, or decaying to 0 along a cosine over all training steps;
    either after a linear warm-up from 0 over ``warmup_epochs``."""
    total_steps = params.epochs * steps_per_epoch
    warmup_steps = params.warmup_epochs * steps_per_epoch
    if warmup_steps == 0:
        if params.lr_schedule == "cosine":
            return keras.optimizers.schedules.CosineDecay(
                params.learning_rate, decay_steps=total_steps
            )
        return params.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=total_steps - warmup_steps,
        alpha=0.0 if params.lr_schedule == "cosine" else 1.0,  # alpha 1: no decay at all
        warmup_target=params.learning_rate,
        warmup_steps=warmup_steps,
    )


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


VALIDATION_BATCH = 1000  # inference only: larger batches are faster and change nothing but speed


def training_batches(x: np.ndarray, y: np.ndarray, params: TrainParams) -> tf.data.Dataset:
    """Batches of (x float32 (b, 28, 28), y) for one epoch, reshuffled and freshly augmented
    every time the dataset is iterated; the same ``params.seed`` gives the same batches.

    The arrays become tensors once. Each epoch draws one seed, shuffles the indices in one op
    and gathers each batch by index: no per-image work in tf.data and no NumPy copy per epoch
    (Keras' NumPy adapter re-slices every epoch; a per-image ``shuffle`` costs ~0.2 s an epoch).
    """
    images, labels = tf.constant(x), tf.constant(_labels(y, params))
    size, augment = params.batch_size, params.augment
    steps = steps_per_epoch(len(x), size)

    def batch(order: tf.Tensor, pair: tf.Tensor, step: tf.Tensor):
        indices = order[step * size : (step + 1) * size]
        batch_images = tf.gather(images, indices)
        if augment.enabled:
            seed = tf.random.experimental.stateless_fold_in(pair, step)
            batch_images = distort_images(batch_images, seed, augment)
        return batch_images, tf.gather(labels, indices)

    def epoch(pair: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(tf.range(len(x)), pair)
        return tf.data.Dataset.range(steps).map(
            lambda step: batch(order, pair, step),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    epoch_seeds = tf.data.Dataset.random(seed=params.seed, rerandomize_each_iteration=True)
    return (
        epoch_seeds.batch(2)
        .take(1)
        .flat_map(epoch)
        .apply(tf.data.experimental.assert_cardinality(steps))  # flat_map hides it from Keras
        .prefetch(tf.data.AUTOTUNE)
    )


def validation_batches(x: np.ndarray, y: np.ndarray, params: TrainParams) -> tf.data.Dataset:
    """Fixed batches of (x, y) for scoring; cached, since they are the same every epoch."""
    return (
        tf.data.Dataset.from_tensor_slices((x, _labels(y, params))).batch(VALIDATION_BATCH).cache()
    )


def _labels(y: np.ndarray, params: TrainParams) -> np.ndarray:
    if one_hot_labels(params):
        return np.eye(N_CLASSES, dtype=np.float32)[y]
    return y


def train_model(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    params: TrainParams,
    callbacks: list,
    verbose: int | str,
) -> keras.callbacks.History:
    """Fit ``model`` on ``train`` = (x float32 (n, 28, 28), y uint8 (n,)); validate every epoch.

    ``params.training_loop`` picks how: ``in_graph`` (ours, below) or ``keras_fit``
    (``model.fit``, which multi-worker training needs). Both report the same logs to the same
    callbacks: loss and accuracy averaged over the epoch's images, val_loss and val_accuracy.
    """
    if params.training_loop == "keras_fit":
        return _fit_with_keras(model, train, validation, params, callbacks, verbose)
    return _fit_in_graph(model, train, validation, params, callbacks, verbose)


def _fit_with_keras(model, train, validation, params, callbacks, verbose):
    return model.fit(
        shard_by_data(training_batches(*train, params)),
        epochs=params.epochs,
        validation_data=shard_by_data(validation_batches(*validation, params)),
        shuffle=False,  # training_batches shuffles, seeded
        callbacks=callbacks,
        verbose=verbose,
    )


def _fit_in_graph(model, train, validation, params, callbacks, verbose):
    """Keras' training step without ``model.fit``'s machinery around it.

    ``steps_per_execution`` batches run as one loop inside one TensorFlow function that gathers
    each batch from the whole training set by index: no tf.data iterator, no per-step metric
    objects. Measured 1.33x faster than ``model.fit`` for a small model (neither with XLA) and
    1.43x for the default, whose XLA step only this loop can use well (scripts/bench_train.py).
    Callbacks get what ``model.fit`` with ``steps_per_execution`` gives them, except per-batch
    validation calls: train begin/end, epoch begin/end (with val_ logs), batch begin/end around
    every call, test begin/end around validation; ``model.stop_training`` set by a callback
    ends the epoch after the current call, then training. ``model.metrics`` are not updated:
    the logs carry the epoch's loss and accuracy.
    """
    n_images = len(train[0])
    steps = steps_per_epoch(n_images, params.batch_size)
    run_steps = _training_steps(model, *train, params)
    n_layers = len(model.layers)
    score = _scoring(model, *validation, params)
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*callbacks, history],
        add_progbar=verbose != 0,
        model=model,
        verbose=verbose,
        epochs=params.epochs,
        steps=steps,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(params.epochs):
        callback_list.on_epoch_begin(epoch)
        plan = EpochPlan.draw(params.seed, epoch, n_images, steps, n_layers)
        loss_sum, correct = 0.0, 0
        for first in range(0, steps, params.steps_per_execution):
            count = min(params.steps_per_execution, steps - first)
            callback_list.on_train_batch_begin(first)
            chunk_loss, chunk_correct = run_steps(plan, first, count)
            loss_sum += float(chunk_loss)
            correct += int(chunk_correct)
            seen = min((first + count) * params.batch_size, n_images)
            logs = {"loss": loss_sum / seen, "accuracy": correct / seen}
            callback_list.on_train_batch_end(first + count - 1, logs)
            if model.stop_training:
                break
        callback_list.on_test_begin()
        val_loss, val_accuracy = score()
        val_logs = {"loss": float(val_loss), "accuracy": float(val_accuracy)}
        callback_list.on_test_end(val_logs)
        logs = {**logs, **{f"val_{key}": value for key, value in val_logs.items()}}
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return history


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """The random choices of one training epoch, all drawn from (seed, epoch) at its start."""

    order: tf.Tensor  # int32 (n_images,): the images in the order the epoch takes them
    augment_seeds: tf.Tensor  # int64 (steps, 2): one seed per batch's distortions
    dropout_seeds: tf.Tensor  # int64 (steps, n_layers, 2): per batch, one per layer

    @classmethod
    def draw(cls, seed: int, epoch: int, n_images: int, steps: int, n_layers: int) -> "EpochPlan":
        epoch_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([seed, 0], tf.int64), epoch
        )
        shuffle, augment, dropout = tf.unstack(
            tf.random.experimental.stateless_split(epoch_seed, num=3)
        )
        return cls(
            order=tf.random.experimental.stateless_shuffle(tf.range(n_images), shuffle),
            augment_seeds=tf.random.experimental.stateless_split(augment, num=steps),
            dropout_seeds=tf.reshape(
                tf.random.experimental.stateless_split(dropout, num=steps * n_layers),
                [steps, n_layers, 2],
            ),
        )


def _training_steps(model: keras.Model, x: np.ndarray, y: np.ndarray, params: TrainParams):
    """A function running steps ``first`` .. ``first + count - 1`` of the epoch ``plan``; it
    returns the sum of the batches' losses (weighted by batch size) and the number of correctly
    classified images."""
    images, labels = tf.constant(x), tf.constant(_labels(y, params))
    size, augment = params.batch_size, params.augment

    def step(batch_images: tf.Tensor, batch_labels: tf.Tensor, dropout_seeds: tf.Tensor):
        with tf.GradientTape() as tape:
            predictions = _forward_in_training(model, batch_images, dropout_seeds)
            loss = model.compute_loss(y=batch_labels, y_pred=predictions, training=True)
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply(gradients, model.trainable_variables)
        return loss, _count_correct(batch_labels, predictions)

    # XLA compiles the step; the loop that gathers (and distorts) the batches stays outside.
    train_step = tf.function(step, jit_compile=True) if params.jit_compile else step

    @tf.function
    def run_steps(order, augment_seeds, dropout_seeds, first, count):
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0, tf.int64)
        for step_index in tf.range(first, first + count):
            indices = order[step_index * size : (step_index + 1) * size]
            batch_images = tf.gather(images, indices)
            if augment.enabled:
                batch_images = distort_images(batch_images, augment_seeds[step_index], augment)
            loss, batch_correct = train_step(
                batch_images, tf.gather(labels, indices), dropout_seeds[step_index]
            )
            loss_sum += loss * tf.cast(tf.size(indices), tf.float32)
            correct += batch_correct
        return loss_sum, correct

    return lambda plan, first, count: run_steps(
        plan.order,
        plan.augment_seeds,
        plan.dropout_seeds,
        tf.constant(first, tf.int32),
        tf.constant(count, tf.int32),
    )


DROPOUT_RNG = "philox"


def _forward_in_training(model: keras.Model, x: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    """``model(x, training=True)``, except that each Dropout layer's mask is drawn from
    ``seeds[layer index]`` with an explicit random algorithm (``DROPOUT_RNG``) instead of Keras'
    seed generator and TensorFlow's automatic choice, which under XLA on CPU is about 50x slower
    than Philox (0.7 vs 35 ms for a 256 x 768 mask). The same dropout: zero each unit with
    probability ``rate``, scale the rest by 1 / (1 - rate)."""
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.Dropout):
            x = tf.nn.experimental.stateless_dropout(
                x, layer.rate, seed=seeds[index], rng_alg=DROPOUT_RNG
            )
        else:
            x = layer(x, training=True)
    return x


def _scoring(model: keras.Model, x: np.ndarray, y: np.ndarray, params: TrainParams):
    """A function returning (mean loss, accuracy) of ``model`` on (x, y), in inference mode."""
    images, labels = tf.constant(x), tf.constant(_labels(y, params))
    n_images = len(x)

    @tf.function
    def score():
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0, tf.int64)
        for first in tf.range(0, n_images, VALIDATION_BATCH):
            batch_images = images[first : first + VALIDATION_BATCH]
            batch_labels = labels[first : first + VALIDATION_BATCH]
            predictions = model(batch_images, training=False)
            loss = model.compute_loss(y=batch_labels, y_pred=predictions, training=False)
            loss_sum += loss * tf.cast(tf.shape(batch_images)[0], tf.float32)
            correct += _count_correct(batch_labels, predictions)
        return loss_sum / n_images, tf.cast(correct, tf.float64) / n_images

    return score


def _count_correct(labels: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
    """How many predictions' most probable class is the label (integer or one-hot)."""
    truth = tf.argmax(labels, axis=-1) if labels.shape.rank == 2 else tf.cast(labels, tf.int64)
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(predictions, axis=-1), truth), tf.int64))


def save_model(model: keras.Model, path: Path) -> None:
    """Save in Keras 3 ``.keras`` format, atomically, with bytes that depend only on the model."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        _strip_save_time(tmp)


def _strip_save_time(path: Path) -> None:
    """Rewrite a ``.keras`` zip without the save date (metadata.json, zip entry times), so that
    the same training gives the same file hash in dvc.lock."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, content in entries:
            if info.filename == "metadata.json":
                metadata = json.loads(content)
                metadata.pop("date_saved", None)
                content = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                content = json.dumps(_renumber_shared_objects(json.loads(content))).encode()
            stable = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            stable.compress_type = info.compress_type
            stable.external_attr = info.external_attr
            archive.writestr(stable, content)


def _renumber_shared_objects(config, numbers: dict | None = None):
    """Replace Keras' ``shared_object_id`` values (Python ``id()``s, memory addresses that change
    every run) with 1, 2, ... in order of appearance; loading only matches them to each other."""
    numbers = {} if numbers is None else numbers
    if isinstance(config, list):
        return [_renumber_shared_objects(item, numbers) for item in config]
    if not isinstance(config, dict):
        return config
    renumbered = {}
    for key, value in config.items():
        if key == "shared_object_id":
            renumbered[key] = numbers.setdefault(value, len(numbers) + 1)
        else:
            renumbered[key] = _renumber_shared_objects(value, numbers)
    return renumbered


def load_model(path: Path) -> keras.Model:
    """Load a model written by ``save_model``; safe_mode refuses embedded Python code."""
    path = Path(path)
    rerun = rerun_hint("train")
    if not path.is_file():
        raise ModelError(f"{path}: model file missing; {rerun}")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged zip or config
        raise ModelError(
            f"{path}: cannot load the model ({type(error).__name__}: {error}); {rerun}"
        ) from None
