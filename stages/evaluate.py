"""Stage evaluate: score the model on the 10,000 test images; write metrics, plot data, PNGs.

    python stages/evaluate.py --data-dir data/prepared --own-dir data/own_prepared \
        --model data/model.keras --history plots/training.csv --metrics metrics/metrics.json \
        --confusion plots/confusion.csv --images-dir plots/images

With own-test pictures (stages/own.py), metrics.json gains "own_test" and the images directory
own_test_confusion.csv; without them the outputs are exactly what they are without this step.
"""

import json
import logging

from digits.data import load_split
from digits.evaluation import (
    confusion_counts,
    confusion_table,
    metrics_on_own_test,
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

OWN_CONFUSION = "own_test_confusion.csv"  # in --images-dir: an output that exists only sometimes


def main() -> None:
    args = stage_arguments(
        __doc__,
        "--data-dir",
        "--own-dir",
        "--model",
        "--history",
        "--metrics",
        "--confusion",
        "--images-dir",
    )

    params = load_params(args.params).evaluate
    x_test, y_test = load_split(args.data_dir, "test")
    x_own, y_own = load_split(args.own_dir, "test", stage="own", may_be_empty=True)
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
    own_predicted = None
    if len(y_own):
        own_probabilities = model.predict(x_own, batch_size=INFERENCE_BATCH, verbose=0)
        own_predicted = own_probabilities.argmax(axis=1)
        metrics["own_test"] = metrics_on_own_test(own_probabilities, y_own)
        log.info(
            "own-test accuracy %.4f, %d errors of %d",
            metrics["own_test"]["accuracy"],
            metrics["own_test"]["errors"],
            len(y_own),
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
        if own_predicted is not None:
            own_table = confusion_table(y_own, own_predicted)
            own_table.to_csv(images_tmp / OWN_CONFUSION, index=False)
    log.info(
        "wrote %s, %s and %d images in %s",
        args.metrics,
        args.confusion,
        len(figures),
        args.images_dir,
    )


if __name__ == "__main__":
    run_stage(main)
