"""Test-set metrics and the pictures people look at: NumPy, pandas, matplotlib, no TensorFlow.

Figures are ``matplotlib.figure.Figure`` objects drawn without pyplot, so no GUI backend is ever
chosen or needed."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from digits.errors import DigitsError
from digits.mnist import N_CLASSES

HISTORY_COLUMNS = ("epoch", "accuracy", "loss", "val_accuracy", "val_loss")  # CSVLogger's
METRIC_DIGITS = 6  # rounding keeps metrics.json readable; 1e-6 is far below one test image (1e-4)
# Own-test pictures of a digit needed before its accuracy is reported: with fewer, one picture
# moves it by more than 20 points, noise rather than a measurement.
MIN_PER_CLASS = 5


class HistoryError(DigitsError):
    """The training history is not the table the train stage writes."""


def read_history(data: bytes, source: str) -> pd.DataFrame:
    """The train stage's CSVLogger table from its bytes: one row per epoch with numeric
    ``HISTORY_COLUMNS``; ``HistoryError`` naming ``source`` otherwise."""
    fix = f"restore it with `git checkout -- {source}` or rerun `dvc repro train`"
    try:
        history = pd.read_csv(io.BytesIO(data))
    except (ValueError, pd.errors.ParserError) as error:  # EmptyDataError is a ValueError
        raise HistoryError(f"{source}: not a CSV table ({error}); {fix}") from None
    missing = [column for column in HISTORY_COLUMNS if column not in history.columns]
    if missing or history.empty:
        what = f"no column {', '.join(missing)}" if missing else "no rows"
        raise HistoryError(f"{source}: {what}; expected {', '.join(HISTORY_COLUMNS)}; {fix}")
    table = history[list(HISTORY_COLUMNS)]
    wrong = [c for c in HISTORY_COLUMNS if not pd.api.types.is_numeric_dtype(table[c])]
    if wrong:
        raise HistoryError(f"{source}: not a number in column {wrong[0]}; {fix}")
    return table


def confusion_counts(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Return int64 (10, 10) counts: row = actual digit, column = predicted digit."""
    counts = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(
        counts, (np.asarray(actual, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1
    )
    return counts


def cross_entropy(probabilities: np.ndarray, actual: np.ndarray) -> float:
    """Mean negative log-probability of the true class; probabilities (n, 10), actual (n,)."""
    true_class = probabilities[np.arange(len(actual)), actual].astype(np.float64)
    return float(-np.mean(np.log(np.clip(true_class, 1e-12, 1.0))))


def metrics_on_test_set(probabilities: np.ndarray, actual: np.ndarray) -> dict:
    """Return {"accuracy", "loss", "errors", "per_class_accuracy": {"0": ..}} for the test set."""
    predicted = probabilities.argmax(axis=1)
    counts = confusion_counts(actual, predicted)
    per_class = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
    return {
        "accuracy": round(float(np.mean(predicted == actual)), METRIC_DIGITS),
        "loss": round(cross_entropy(probabilities, actual), METRIC_DIGITS),
        "errors": int(np.sum(predicted != actual)),
        "per_class_accuracy": {
            str(d): round(float(a), METRIC_DIGITS) for d, a in enumerate(per_class)
        },
    }


def metrics_on_own_test(probabilities: np.ndarray, actual: np.ndarray) -> dict:
    """Return {"accuracy", "count", "errors", "per_class_accuracy"} for a person's own test
    pictures, probabilities (n, 10), actual (n,), n >= 1; per-class accuracy only for the digits
    with at least ``MIN_PER_CLASS`` pictures."""
    predicted = probabilities.argmax(axis=1)
    counts = confusion_counts(actual, predicted)
    pictures = counts.sum(axis=1)
    return {
        "accuracy": round(float(np.mean(predicted == actual)), METRIC_DIGITS),
        "count": len(actual),
        "errors": int(np.sum(predicted != actual)),
        "per_class_accuracy": {
            str(digit): round(float(counts[digit, digit] / pictures[digit]), METRIC_DIGITS)
            for digit in range(N_CLASSES)
            if pictures[digit] >= MIN_PER_CLASS
        },
    }


def confusion_table(actual: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """One row per test image with columns actual, predicted (the form `dvc plots` reads)."""
    return pd.DataFrame(
        {
            "actual": np.asarray(actual, dtype=np.int64),
            "predicted": np.asarray(predicted, dtype=np.int64),
        }
    )


def plot_confusion_matrix(counts: np.ndarray) -> Figure:
    """Heat map of ``counts`` with the count written in every non-empty cell."""
    figure = Figure(figsize=(7, 6))
    axes = figure.subplots()
    shown = np.log1p(counts)  # log so that the few errors are visible beside ~1000 hits
    axes.imshow(shown, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        if count:
            dark = shown[row, column] > shown.max() / 2
            axes.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    axes.set(
        xticks=range(N_CLASSES),
        yticks=range(N_CLASSES),
        xlabel="predicted digit",
        ylabel="actual digit",
        title=f"Test confusion matrix ({counts.trace()} of {counts.sum()} correct)",
    )
    figure.tight_layout()
    return figure


def plot_learning_curves(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, train vs validation, from the CSVLogger table."""
    figure = Figure(figsize=(11, 4))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = history["epoch"] + 1
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        axes.plot(epochs, history[metric], marker="o", label="train")
        axes.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        axes.set(xlabel="epoch", ylabel=metric, title=metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    return figure


def plot_misclassified(
    images: np.ndarray, actual: np.ndarray, predicted: np.ndarray, limit: int
) -> Figure:
    """Grid of the first ``limit`` misclassified images (n, 28, 28), titled actual -> predicted."""
    wrong = np.flatnonzero(actual != predicted)[:limit]
    columns = max(1, min(10, len(wrong)))
    rows = max(1, -(-len(wrong) // columns))
    figure = Figure(figsize=(1.2 * columns, 1.4 * rows))
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, index in zip(grid.flat, wrong, strict=False):
        axes.imshow(images[index], cmap="gray_r", vmin=0, vmax=1)
        axes.set_title(f"{actual[index]}→{predicted[index]}", fontsize=9)
    figure.suptitle(f"Misclassified test digits (actual→predicted), {len(wrong)} shown", y=1.0)
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: Path) -> None:
    """Write ``figure`` to ``path`` as PNG."""
    figure.savefig(path, format="png", dpi=100, bbox_inches="tight")
