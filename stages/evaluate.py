"""Stage evaluate: score the model on the 10,000 test images; write metrics, plot data, PNGs.

    python stages/evaluate.py --data-dir data/prepared --model data/model.keras \
        --history plots/training.csv --metrics metrics/metrics.json \
        --confusion plots/confusion.csv --images-dir plots/images
"""

import json
import logging

from digits.data import load_split
from digits.evaluation import (
    confusion_counts,
    confusion_table,
    metrics_on_test_set,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_misclassified,
    read_history,
    save_figure,
)
from digits.files import atomic_paths, read_input_bytes
from digits.mnist import INFERENCE_BATCH
from digits.params import load_params
from digits.stage import run_stage, stage_arguments

log = logging.getLogger("evaluate")


def main() -> None:
    args = stage_arguments(
        __doc__, "--data-dir", "--model", "--history", "--metrics", "--confusion", "--images-dir"
    )

    params = load_params(args.params).evaluate
    x_test, y_test = load_split(args.data_dir, "test")
    history = read_history(read_input_bytes(args.history, "train"), str(args.history))

    from digits.saving import load_model

    model = load_model(args.model)
    probabilities = model.predict(x_test, batch_size=INFERENCE_BATCH, verbose=0)
    predicted = probabilities.argmax(axis=1)
    metrics = metrics_on_test_set(probabilities, y_test)
    log.info(
        "test accuracy %.4f, loss %.4f, %d errors of %d",
        metrics["accuracy"],
        metrics["loss"],
        metrics["errors"],
        len(y_test),
    )

    figures = {
        "confusion_matrix.png": plot_confusion_matrix(confusion_counts(y_test, predicted)),
        "learning_curves.png": plot_learning_curves(history),
        "misclassified.png": plot_misclassified(
            x_test, y_test, predicted, params.misclassified_shown
        ),
    }
    with atomic_paths(args.metrics, args.confusion, args.images_dir) as (
        metrics_tmp,
        confusion_tmp,
        images_tmp,
    ):
        metrics_tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        confusion_table(y_test, predicted).to_csv(confusion_tmp, index=False)
        images_tmp.mkdir()
        for name, figure in figures.items():
            save_figure(figure, images_tmp / name)
    log.info(
        "wrote %s, %s and %d images in %s",
        args.metrics,
        args.confusion,
        len(figures),
        args.images_dir,
    )


if __name__ == "__main__":
    run_stage(main)
