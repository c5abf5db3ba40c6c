"""The network's class, apart from the training code. Loading a saved model needs it, the
dropout layer (``digits.dropout``) and the optimizer (``digits.optimizer``) registered with
Keras: ``digits.saving.load_model`` imports all three."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="digits")
class Network(keras.Sequential):
    """``keras.Sequential`` that also trains on a chunk of batches in one call: given
    ``training_batches(..., in_chunks=True)``'s dicts, ``train_step`` takes Keras' own step on
    each batch of the chunk in turn, in a loop inside one function, which XLA compiles whole.
    Keras' own loop runs outside the compiled step instead, launching it once a batch.
    ``train.compiled_loop`` chooses: the loop is faster for small networks (the seed project's
    Dense 128, batch 32: 0.58-0.80 against 1.25-1.39 s/epoch) and for the default's (0.43
    against 0.54 s/epoch, README "Speed"); the weights are the same bit for bit."""

    def train_step(self, data):
        if not isinstance(data, dict):
            return super().train_step(data)
        images, labels = data["images"], data["labels"]

        def one_step(step: tf.Tensor) -> tf.Tensor:
            keras.Sequential.train_step(self, (images[step], labels[step]))
            return step + 1

        tf.while_loop(
            lambda step: step < data["steps"],
            one_step,
            [tf.constant(0)],
            maximum_iterations=images.shape[0],
        )
        return self.get_metrics_result()
