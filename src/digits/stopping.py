"""Ctrl-C and SIGTERM during ``model.fit``: a clean stop when the current call into TensorFlow
returns (an epoch's batches: ``model.steps_per_call``), then ``KeyboardInterrupt``."""

import contextlib
import signal
import threading

import keras


class StopOnSignal(keras.callbacks.Callback):
    """Ends training after the current call into TensorFlow once ``request`` was called, or
    after the epoch's validation if that is what runs then."""

    requested = False

    def request(self, signum=None, frame=None) -> None:
        self.requested = True

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):  # fit looks right after it, before another epoch
        self.on_train_batch_end(None)


@contextlib.contextmanager
def stop_on_signals():
    """Turn Ctrl-C and SIGTERM during ``fit`` into a clean stop, then ``KeyboardInterrupt``.

    A ``KeyboardInterrupt`` raised at whatever line Keras happens to run can leave TensorFlow's
    own state half torn down (seen: "free(): invalid next size" and SIGABRT on exit); stopping
    between calls and raising only after ``fit`` has returned cannot."""
    stopper = StopOnSignal()
    if threading.current_thread() is not threading.main_thread():  # signals reach main only
        yield stopper
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, stopper.request) for number in signals}
    try:
        yield stopper
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if stopper.requested:
        raise KeyboardInterrupt
