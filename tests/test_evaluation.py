import numpy as np
import pandas as pd
import pytest

from digits.evaluation import (
    HistoryError,
    confusion_counts,
    confusion_table,
    cross_entropy,
    metrics_on_test_set,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_misclassified,
    read_history,
    save_figure,
)


def one_hot_probabilities(predicted, confidence=0.91):
    probabilities = np.full((len(predicted), 10), (1 - confidence) / 9, dtype=np.float32)
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def test_confusion_counts_rows_are_actual_columns_predicted():
    counts = confusion_counts(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]))
    assert counts.shape == (10, 10)
    assert counts[0, 0] == 1 and counts[0, 1] == 1 and counts[1, 1] == 1 and counts[2, 1] == 1
    assert counts.sum() == 4


def test_cross_entropy_worked_out_by_hand():
    probabilities = np.array([[0.5, 0.5] + [0] * 8, [0.25, 0.75] + [0] * 8])
    assert cross_entropy(probabilities, np.array([0, 1])) == pytest.approx(
        -(np.log(0.5) + np.log(0.75)) / 2
    )


def test_cross_entropy_of_a_zero_probability_is_finite():
    assert cross_entropy(np.zeros((1, 10)), np.array([3])) == pytest.approx(-np.log(1e-12))


def test_metrics_accuracy_errors_and_per_class():
    actual = np.array([0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0])
    metrics = metrics_on_test_set(one_hot_probabilities(predicted), actual)
    assert metrics["accuracy"] == 0.6
    assert metrics["errors"] == 2
    wrong_probability = (1 - 0.91) / 9
    expected_loss = -(3 * np.log(0.91) + 2 * np.log(wrong_probability)) / 5
    assert metrics["loss"] == pytest.approx(expected_loss, abs=1e-5)
    per_class = metrics["per_class_accuracy"]
    assert per_class["0"] == 0.5 and per_class["1"] == 1.0 and per_class["2"] == 0.0
    assert per_class["7"] == 0.0  # a digit absent from the test set counts as 0, not NaN


def test_confusion_table_has_the_columns_dvc_plots_reads():
    table = confusion_table(np.array([3, 4], np.uint8), np.array([3, 9]))
    assert list(table.columns) == ["actual", "predicted"]
    assert table.values.tolist() == [[3, 3], [4, 9]]


def test_figures_render_to_png(tmp_path):
    actual = np.array([1, 2, 3, 4])
    predicted = np.array([1, 7, 3, 9])
    history = pd.DataFrame(
        {
            "epoch": [0, 1],
            "loss": [0.5, 0.3],
            "accuracy": [0.8, 0.9],
            "val_loss": [0.6, 0.4],
            "val_accuracy": [0.7, 0.85],
        }
    )
    figures = {
        "confusion.png": plot_confusion_matrix(confusion_counts(actual, predicted)),
        "curves.png": plot_learning_curves(history),
        "wrong.png": plot_misclassified(np.zeros((4, 28, 28)), actual, predicted, limit=10),
    }
    for name, figure in figures.items():
        save_figure(figure, tmp_path / name)
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "2 shown" in figures["wrong.png"].texts[0].get_text()


def test_misclassified_grid_with_no_errors_still_renders(tmp_path):
    labels = np.array([1, 2])
    save_figure(plot_misclassified(np.zeros((2, 28, 28)), labels, labels, 5), tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 0


def test_history_is_read_with_its_columns():
    data = b"epoch,accuracy,loss,val_accuracy,val_loss\n0,0.9,0.3,0.95,0.2\n1,0.95,0.2,0.96,0.1\n"
    assert read_history(data, "plots/training.csv")["val_loss"].tolist() == [0.2, 0.1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a CSV table"),
        (b"epoch,loss\n0,0.3\n", "no column accuracy, val_accuracy, val_loss"),
        (b"epoch,accuracy,loss,val_accuracy,val_loss\n", "no rows"),
        (b"epoch,accuracy,loss,val_accuracy,val_loss\n0,a,b,c,d\n", "not a number"),
    ],
)
def test_a_damaged_history_names_the_file_and_the_fix(data, message):
    with pytest.raises(HistoryError, match=f"plots/training.csv: {message}.*git checkout"):
        read_history(data, "plots/training.csv")
