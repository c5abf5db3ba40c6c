"""Compare this working tree's pipeline results with a git revision, and gate regressions.

    dvc repro
    digits compare --base main
    digits compare --base origin/main --markdown report.md --json report.json

Reports the params that changed, every metric (overall and per-class accuracy) with the largest
per-class moves, and the (actual -> predicted) confusions whose counts changed most. Run it from
the repository root. Exit status: 0 nothing regressed; 1 test accuracy (or a per-class accuracy)
dropped by more than its tolerance; 2 the comparison could not be made (unknown revision, no
metrics committed at the base, stale results in the working tree).
"""

import argparse
import io
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

ACCURACY = "accuracy"
CLASS_ACCURACY_PREFIX = "per_class_accuracy."
# Tolerances are CLI defaults, never params.yaml: a branch must not be able to loosen its own
# gate. Changing only the training seed moves test accuracy by ~0.001 and one digit's accuracy
# by up to ~0.005, so the gate sits above that noise.
MAX_DROP = 0.002  # 20 of the 10,000 test images
MAX_CLASS_DROP = 0.01  # ~10 of the ~1,000 test images of one digit
CLASS_MOVES_SHOWN = 3
CONFUSION_PAIRS_SHOWN = 5

EXIT_PASSED = 0
EXIT_REGRESSED = 1
EXIT_ERROR = 2


class CompareError(Exception):
    """The comparison cannot be made; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Regression:
    """A metric that dropped by more than its tolerance."""

    metric: str
    base: float
    new: float
    tolerance: float

    @property
    def drop(self) -> float:
        return self.base - self.new

    def describe(self) -> str:
        return (
            f"{self.metric} dropped {self.drop:.4f} ({self.base:.4f} -> {self.new:.4f}), "
            f"more than the tolerance {self.tolerance:.4f}"
        )


@dataclass
class Report:
    """Everything compared; tables are DataFrames so each renderer only formats."""

    base: str  # the revision as given
    base_commit: str
    params: pd.DataFrame  # key, base, new
    metrics: pd.DataFrame  # metric, base, new, change
    class_moves: pd.DataFrame  # rows of ``metrics``
    confusion: pd.DataFrame | None  # actual, predicted, base, new, change; None: no base file
    confusion_note: str
    regressions: list[Regression]
    max_drop: float
    max_class_drop: float


# --- Pure functions: tables and the gate decision ------------------------------------------


def _name_order(name: str) -> tuple:
    """Sort key putting per_class_accuracy.2 before per_class_accuracy.10."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in name.split(".")
    )


def flatten_diff(diff: dict) -> list[tuple[str, object, object]]:
    """Turn dvc's ``{file: {name: {"old", "new"}}}`` into sorted (name, old, new) rows.

    Names get a ``file:`` prefix only when there are several files.
    """
    several = len(diff) > 1
    rows = [
        (f"{path}:{name}" if several else name, values.get("old"), values.get("new"))
        for path, entries in diff.items()
        for name, values in entries.items()
    ]
    return sorted(rows, key=lambda row: _name_order(row[0]))


def params_table(diff: dict) -> pd.DataFrame:
    """Params that differ, from ``dvc params diff --json``: columns key, base, new."""
    rows = [(key, old, new) for key, old, new in flatten_diff(diff) if old != new]
    return pd.DataFrame(rows, columns=["key", "base", "new"], dtype=object)


def _change(old: object, new: object) -> float | int | None:
    numbers = (int, float)
    if isinstance(old, numbers) and isinstance(new, numbers):
        return new - old
    return None


def metrics_table(diff: dict) -> pd.DataFrame:
    """All metrics, from ``dvc metrics diff --all --json``: columns metric, base, new, change.

    ``base`` or ``new`` is None where the metric is missing on that side.
    """
    rows = [(name, old, new, _change(old, new)) for name, old, new in flatten_diff(diff)]
    return pd.DataFrame(rows, columns=["metric", "base", "new", "change"], dtype=object)


def class_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics[metrics["metric"].str.startswith(CLASS_ACCURACY_PREFIX)]


def largest_class_moves(metrics: pd.DataFrame, shown: int = CLASS_MOVES_SHOWN) -> pd.DataFrame:
    """The per-class accuracy rows that moved most (either way), largest first; unmoved omitted."""
    rows = class_rows(metrics).dropna(subset=["change"])
    rows = rows[rows["change"] != 0]
    order = rows["change"].abs().astype(float).sort_values(ascending=False, kind="stable").index
    return rows.loc[order].head(shown)


def pair_counts(confusion: pd.DataFrame) -> pd.Series:
    """Count images per (actual, predicted) pair; ``confusion`` has one row per test image."""
    return confusion.groupby(["actual", "predicted"]).size()


def confusion_changes(
    base: pd.DataFrame, new: pd.DataFrame, shown: int = CONFUSION_PAIRS_SHOWN
) -> pd.DataFrame:
    """The misclassification pairs (actual != predicted) whose counts changed most.

    Takes two one-row-per-image tables (columns actual, predicted); returns int columns
    actual, predicted, base, new, change, largest absolute change first.
    """
    counts = pd.concat({"base": pair_counts(base), "new": pair_counts(new)}, axis=1)
    counts = counts.fillna(0).astype("int64").reset_index()
    counts["change"] = counts["new"] - counts["base"]
    errors = counts[(counts["actual"] != counts["predicted"]) & (counts["change"] != 0)]
    errors = errors.assign(size=errors["change"].abs())
    errors = errors.sort_values(["size", "actual", "predicted"], ascending=[False, True, True])
    return errors.drop(columns="size").head(shown).reset_index(drop=True)


def check_comparable(metrics: pd.DataFrame, base: str) -> None:
    """Raise CompareError unless test accuracy is known on both sides."""
    row = metrics[metrics["metric"] == ACCURACY]
    if row.empty or row["base"].iloc[0] is None:
        raise CompareError(
            f"no `{ACCURACY}` metric at {base}: was `dvc repro` run and committed there?"
        )
    if row["new"].iloc[0] is None:
        raise CompareError(f"no `{ACCURACY}` metric in the working tree: run `dvc repro`")


def find_regressions(
    metrics: pd.DataFrame, max_drop: float, max_class_drop: float
) -> list[Regression]:
    """Test accuracy or per-class accuracies that dropped by more than their tolerance.

    Metrics present on one side only are not gated (``check_comparable`` covers accuracy).
    """
    regressions = []
    for metric, base, new, _ in metrics.itertuples(index=False):
        if metric == ACCURACY:
            tolerance = max_drop
        elif metric.startswith(CLASS_ACCURACY_PREFIX):
            tolerance = max_class_drop
        else:
            continue
        if base is None or new is None:
            continue
        if base - new > tolerance + 1e-12:  # metrics are rounded; equal to the limit passes
            regressions.append(Regression(metric, base, new, tolerance))
    return regressions


def describe_stale_stages(status: dict) -> list[str]:
    """Turn ``dvc status --json`` into one line per stale stage, e.g.
    ``train (changed deps: params.yaml:train, stages/train.py)``."""
    lines = []
    for stage, entries in status.items():
        reasons = []
        for entry in entries:
            if isinstance(entry, str):
                reasons.append(entry)
                continue
            for kind, changed in entry.items():
                reasons.append(f"{kind}: {', '.join(_changed_paths(changed))}")
        lines.append(f"{stage} ({'; '.join(reasons)})" if reasons else stage)
    return lines


def _changed_paths(changed: object) -> list[str]:
    if not isinstance(changed, dict):
        return [str(changed)]
    paths = []
    for path, state in changed.items():
        if isinstance(state, dict):  # a params file: {"params.yaml": {"train": "modified"}}
            paths.extend(f"{path}:{section}" for section in state)
        else:
            paths.append(path)
    return paths


# --- Rendering -----------------------------------------------------------------------------


def format_value(value: object, signed: bool = False) -> str:
    """Numbers to 4 decimals (ints as they are), missing values as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _display(table: pd.DataFrame, signed: tuple[str, ...] = ()) -> pd.DataFrame:
    return table.apply(
        lambda column: column.map(lambda v: format_value(v, signed=column.name in signed))
    )


def _digit(metric: str) -> str:
    return metric.removeprefix(CLASS_ACCURACY_PREFIX)


def gate_summary(report: Report) -> str:
    if report.regressions:
        return f"FAILED: {len(report.regressions)} metric(s) dropped more than allowed"
    return (
        f"passed: no drop beyond {report.max_drop:.4f} in {ACCURACY} "
        f"or {report.max_class_drop:.4f} in any per-class accuracy"
    )


def class_moves_line(report: Report) -> str:
    if report.class_moves.empty:
        return "No per-class accuracy changed."
    moves = ", ".join(
        f"digit {_digit(row.metric)} {format_value(row.change, signed=True)}"
        for row in report.class_moves.itertuples()
    )
    return f"Largest per-class moves: {moves}"


def render_text(report: Report) -> str:
    """The report as plain text for a terminal."""
    lines = [f"Comparison with {report.base} ({report.base_commit[:7]})", ""]
    lines += [f"Gate {gate_summary(report)}"]
    lines += [f"  {regression.describe()}" for regression in report.regressions]
    lines += ["", "Params changed:"]
    if report.params.empty:
        lines.append("  none")
    else:
        lines.append(_display(report.params).to_string(index=False))
    lines += ["", "Metrics:", _display(report.metrics, ("change",)).to_string(index=False)]
    lines += [class_moves_line(report), "", "Confusions that changed most (actual -> predicted):"]
    if report.confusion is None or report.confusion.empty:
        lines.append(f"  {report.confusion_note}")
    else:
        lines.append(_display(report.confusion, ("change",)).to_string(index=False))
    return "\n".join(lines) + "\n"


def render_markdown(report: Report) -> str:
    """The report as Markdown for a pull-request comment or a job summary."""
    gate = "**Gate " + gate_summary(report).replace(":", "**:", 1)
    lines = [f"## Comparison with `{report.base}` ({report.base_commit[:7]})", "", gate, ""]
    lines += [
        f"- `{r.metric}`: {r.describe().removeprefix(r.metric + ' ')}" for r in report.regressions
    ]
    lines += ["", "### Params changed", ""]
    if report.params.empty:
        lines.append("None.")
    else:
        lines.append(_display(report.params).to_markdown(index=False, disable_numparse=True))
    lines += [
        "",
        "### Metrics",
        "",
        _display(report.metrics, ("change",)).to_markdown(index=False, disable_numparse=True),
    ]
    lines += ["", class_moves_line(report), "", "### Confusions that changed most", ""]
    if report.confusion is None or report.confusion.empty:
        lines.append(report.confusion_note)
    else:
        lines.append(
            _display(report.confusion, ("change",)).to_markdown(index=False, disable_numparse=True)
        )
    return "\n".join(lines) + "\n"


def report_json(report: Report) -> str:
    """The report as JSON: the tables as lists of records, raw (unrounded) values."""

    def records(table: pd.DataFrame | None) -> list[dict] | None:
        return None if table is None else json.loads(table.to_json(orient="records"))

    document = {
        "base": report.base,
        "base_commit": report.base_commit,
        "gate": {
            "passed": not report.regressions,
            "max_drop": report.max_drop,
            "max_class_drop": report.max_class_drop,
            "regressions": [asdict(r) | {"drop": r.drop} for r in report.regressions],
        },
        "params": records(report.params),
        "metrics": records(report.metrics),
        "largest_class_moves": records(report.class_moves),
        "confusion_changes": records(report.confusion),
        "confusion_note": report.confusion_note,
    }
    return json.dumps(document, indent=2) + "\n"


# --- git and DVC ---------------------------------------------------------------------------


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True)


def resolve_revision(revision: str) -> str:
    """The commit id of ``revision``; CompareError if git does not know it."""
    result = run(
        ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"]
    )
    if result.returncode != 0:
        raise CompareError(
            f"unknown revision {revision!r}: not a branch, tag or commit in this repository"
            " (in CI, check out with fetch-depth: 0)"
        )
    return result.stdout.strip()


def dvc_json(*args: str) -> dict:
    """Run ``dvc ARGS --json`` with this interpreter's DVC and parse what it prints."""
    command = [sys.executable, "-m", "dvc", *args, "--json"]
    result = run(command)
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        raise CompareError(f"`dvc {' '.join(args)}` failed: {detail[0]}")
    try:
        return json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        raise CompareError(f"`dvc {' '.join(args)} --json` printed no JSON") from None


def check_fresh() -> None:
    """CompareError naming the stale stages if dvc.lock does not match the working tree."""
    stale = describe_stale_stages(dvc_json("status"))
    if stale:
        raise CompareError(
            "results in the working tree are stale (params, code or outputs differ from "
            "dvc.lock); run `dvc repro` first. Stale stages: " + "; ".join(stale)
        )


def read_confusion_at(commit: str, path: Path) -> pd.DataFrame | None:
    """The one-row-per-image table committed at ``commit``; None if it is not there."""
    result = subprocess.run(["git", "show", f"{commit}:./{path.as_posix()}"], capture_output=True)
    if result.returncode != 0:
        return None
    return pd.read_csv(io.BytesIO(result.stdout))


def read_confusion(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise CompareError(f"{path}: missing in the working tree; run `dvc repro`") from None


def build_report(
    base: str, confusion_path: Path, max_drop: float, max_class_drop: float
) -> Report:
    """Compare the working tree with ``base``; CompareError if that cannot be done honestly."""
    commit = resolve_revision(base)
    check_fresh()
    metrics = metrics_table(dvc_json("metrics", "diff", "--all", commit))
    check_comparable(metrics, base)
    params = params_table(dvc_json("params", "diff", commit))
    base_confusion = read_confusion_at(commit, confusion_path)
    confusion, note = None, f"{confusion_path} is not committed at {base}; no confusion diff."
    if base_confusion is not None:
        confusion = confusion_changes(base_confusion, read_confusion(confusion_path))
        note = "No misclassification count changed."
    return Report(
        base=base,
        base_commit=commit,
        params=params,
        metrics=metrics,
        class_moves=largest_class_moves(metrics),
        confusion=confusion,
        confusion_note=note,
        regressions=find_regressions(metrics, max_drop, max_class_drop),
        max_drop=max_drop,
        max_class_drop=max_class_drop,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="git revision to compare with")
    parser.add_argument(
        "--max-drop", type=float, default=MAX_DROP, help="largest allowed drop in test accuracy"
    )
    parser.add_argument(
        "--max-class-drop",
        type=float,
        default=MAX_CLASS_DROP,
        help="largest allowed drop in any per-class accuracy",
    )
    parser.add_argument("--markdown", type=Path, help="also write the report as Markdown here")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--confusion",
        type=Path,
        default=Path("plots/confusion.csv"),
        help="the evaluate stage's one-row-per-image table (dvc.yaml)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the comparison; return the exit status (0 passed, 1 regressed, 2 error)."""
    try:
        report = build_report(args.base, args.confusion, args.max_drop, args.max_class_drop)
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(render_text(report), end="")
    if args.markdown:
        args.markdown.write_text(render_markdown(report))
    if args.json:
        args.json.write_text(report_json(report))
    return EXIT_REGRESSED if report.regressions else EXIT_PASSED
