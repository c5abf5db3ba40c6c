"""Compare this working tree's pipeline results with a git revision, and gate regressions.

    dvc repro
    digits compare --base main
    digits compare --base origin/main --markdown report.md --json report.json

DVC computes what changed (`dvc params diff`, `dvc metrics diff --all`); this adds the gate on
test and per-class accuracy, the stale-results check (`dvc status`), the largest per-class moves
and the (actual -> predicted) confusions whose counts changed most. Runs from any directory of
the repository. Exit status: 0 nothing regressed; 1 an accuracy dropped by more than its
tolerance; 2 the comparison could not be made (one `error:` line on stderr says why).
"""

import argparse
import json
import reprlib
import sys
from pathlib import Path

import pandas as pd

from digits.errors import DigitsError
from digits.files import atomic_paths
from digits.paths import CONFUSION, METRICS, project_root
from digits.stage import describe_os_error, describe_unexpected

ACCURACY = "accuracy"
CLASS_ACCURACY = "per_class_accuracy."  # prefix of per_class_accuracy.0 ... .9
# Tolerances are CLI defaults, never params.yaml: a branch must not be able to loosen its own
# gate. Changing only the training seed moves test accuracy by ~0.001 and one digit's accuracy
# by up to ~0.005, so the gate sits above that noise.
MAX_DROP = 0.002  # 20 of the 10,000 test images
MAX_CLASS_DROP = 0.01  # ~10 of the ~1,000 test images of one digit
CLASS_MOVES_SHOWN = 3
CONFUSION_PAIRS_SHOWN = 5
WORKING_TREE = "the working tree"
EXIT_PASSED, EXIT_REGRESSED, EXIT_ERROR = 0, 1, 2


class CompareError(DigitsError):
    """The comparison cannot be made; the message says what is wrong and what to do."""


# --- Pure functions: DVC's diff as records, the gate, per-class and confusion changes -------


def diff_records(diff: dict, columns: tuple[str, ...]) -> list[dict]:
    """DVC's ``{file: {name: {"old", "new", "diff"}}}`` as records with ``columns`` (name, base,
    new[, change]) sorted by name; missing values are None, and names get a ``file:`` prefix only
    when there are several files."""
    rows = [
        (
            f"{path}:{name}" if len(diff) > 1 else str(name),
            *map(values.get, ("old", "new", "diff")),
        )
        for path, entries in diff.items()
        for name, values in entries.items()
    ]
    return [dict(zip(columns, row, strict=False)) for row in sorted(rows, key=lambda r: r[0])]


def accuracy_value(value: object, metric: str, where: str) -> float:
    """``value`` as a float; CompareError unless it is a number from 0 to 1 (not a string, bool,
    NaN or infinity): a value the gate cannot read must not pass it."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise CompareError(f"`{metric}` at {where} is {reprlib.repr(value)}, not a number from 0 to 1")


def find_regressions(
    metrics: list[dict], base: str, max_drop: float, max_class_drop: float
) -> list[dict]:
    """The gate. ``metrics`` are records (metric, base, new); returns a record (metric, base, new,
    drop, tolerance) for each accuracy that dropped by more than its tolerance. Test accuracy
    must be an accuracy on both sides; a per-class accuracy is gated where both sides have one.
    Anything else raises CompareError."""
    rows = {row["metric"]: (row["base"], row["new"]) for row in metrics}
    base_accuracy, new_accuracy = rows.get(ACCURACY, (None, None))
    if base_accuracy is None:
        raise CompareError(f"no `{ACCURACY}` metric at {base}: was `dvc repro` run and committed?")
    if new_accuracy is None:
        raise CompareError(f"no `{ACCURACY}` metric in {WORKING_TREE}: run `dvc repro`")
    regressions = []
    for metric, (old, new) in rows.items():
        gated = metric == ACCURACY or metric.startswith(CLASS_ACCURACY)
        if not gated or old is None or new is None:
            continue
        old, new = accuracy_value(old, metric, base), accuracy_value(new, metric, WORKING_TREE)
        tolerance, drop = max_drop if metric == ACCURACY else max_class_drop, old - new
        if drop > tolerance + 1e-12:  # metrics are rounded; a drop equal to the limit passes
            regressions.append(
                dict(metric=metric, base=old, new=new, drop=drop, tolerance=tolerance)
            )
    return regressions


def largest_class_moves(metrics: list[dict], shown: int = CLASS_MOVES_SHOWN) -> list[dict]:
    """The per-class accuracy records that moved most (either way), largest first; unmoved and
    non-numeric changes omitted."""
    moved = [
        row
        for row in metrics
        if row["metric"].startswith(CLASS_ACCURACY)
        and isinstance(row["change"], int | float)
        and abs(row["change"]) > 0  # False for NaN
    ]
    return sorted(moved, key=lambda row: -abs(row["change"]))[:shown]


def confusion_changes(
    base: pd.DataFrame, new: pd.DataFrame, shown: int = CONFUSION_PAIRS_SHOWN
) -> list[dict]:
    """The misclassification pairs (actual != predicted) whose counts changed most.

    Takes two one-row-per-image tables (columns actual, predicted); returns records of ints
    actual, predicted, base, new, change, largest absolute change first.
    """
    pairs = {"base": base.value_counts(), "new": new.value_counts()}  # (actual, predicted)
    counts = pd.concat(pairs, axis=1).fillna(0).astype("int64").reset_index()
    counts["change"] = counts["new"] - counts["base"]
    errors = counts[(counts["actual"] != counts["predicted"]) & (counts["change"] != 0)]
    errors = errors.assign(size=errors["change"].abs())
    errors = errors.sort_values(["size", "actual", "predicted"], ascending=[False, True, True])
    return errors.drop(columns="size").head(shown).to_dict("records")


ALWAYS_CHANGED = "always changed"  # dvc status for a stage marked always_changed in dvc.yaml


def describe_stale_stages(status: dict) -> list[str]:
    """Turn ``dvc status --json`` into one line per stale stage, e.g.
    ``train (changed deps: params.yaml:train, stages/train.py)``. A stage that is only
    "always changed" is not stale: DVC says so of it whatever its outputs."""
    lines = []
    for stage, entries in status.items():
        if entries == [ALWAYS_CHANGED]:  # own_version: DVC runs it every time, by design
            continue
        reasons = []
        for entry in entries:
            if isinstance(entry, str):  # "always changed"
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


# --- Reports -------------------------------------------------------------------------------


def format_value(value: object, signed: bool = False) -> str:
    """Numbers to 4 decimals (ints as they are), missing values as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def format_param(value: object, signed: bool = False) -> str:
    """A param as written, not rounded: 0.00304 and 2e-05 must not read as 0.0030 and 0.0000."""
    return "-" if value is None else str(value)


def render(report: dict, markdown: bool = False) -> str:
    """The report (see ``build_report``) as plain text for a terminal, or as Markdown for a
    pull-request comment or a job summary."""

    def section(
        title: str, records: list[dict] | None, empty: str, shown=format_value
    ) -> list[str]:
        heading = f"### {title}" if markdown else f"{title}:"
        if not records:
            return ["", heading, "", empty]
        cells = [{key: shown(v, key == "change") for key, v in r.items()} for r in records]
        table = pd.DataFrame(cells).to_markdown(
            index=False, tablefmt="github" if markdown else "simple", disable_numparse=True
        )
        return ["", heading, "", table]

    gate, base = report["gate"], f"`{report['base']}`" if markdown else report["base"]
    if gate["regressions"]:
        summary = f"FAILED: {len(gate['regressions'])} metric(s) dropped more than allowed"
    else:
        summary = (
            f"passed: no drop beyond {gate['max_drop']:.4f} in {ACCURACY} "
            f"or {gate['max_class_drop']:.4f} in any per-class accuracy"
        )
    moves = ", ".join(
        f"digit {row['metric'].removeprefix(CLASS_ACCURACY)} {format_value(row['change'], True)}"
        for row in report["largest_class_moves"]
    )
    lines = [
        f"{'## ' if markdown else ''}Comparison with {base} ({report['base_commit'][:7]})",
        "",
    ]
    lines.append("**Gate " + summary.replace(":", "**:", 1) if markdown else f"Gate {summary}")
    lines += [
        f"{'- ' if markdown else '  '}{r['metric']} dropped {r['drop']:.4f} ({r['base']:.4f} -> "
        f"{r['new']:.4f}), more than the tolerance {r['tolerance']:.4f}"
        for r in gate["regressions"]
    ]
    lines += section("Params changed", report["params"], "None.", format_param)
    lines += section("Metrics", report["metrics"], "None.")
    lines += ["", f"Largest per-class moves: {moves}" if moves else "No per-class accuracy moved."]
    confusion = report["confusion_changes"], report["confusion_note"]
    lines += section("Confusions that changed most (actual -> predicted)", *confusion)
    return "\n".join(lines) + "\n"


# --- DVC and files -------------------------------------------------------------------------


def read_confusion(source, where: str) -> pd.DataFrame:
    """The one-row-per-image table (columns actual, predicted) from a path or an open file."""
    try:
        table = pd.read_csv(source, usecols=["actual", "predicted"])
    except ValueError as error:  # pandas' parser errors, missing columns, undecodable bytes
        raise CompareError(f"{where}: not a table of actual,predicted ({error})") from None
    if not all(pd.api.types.is_integer_dtype(dtype) for dtype in table.dtypes):
        raise CompareError(f"{where}: actual and predicted must be whole numbers (digits)")
    return table


def dvc_diffs(root: Path, base: str) -> tuple[str, dict, dict]:
    """Resolve ``base`` and check that the results are fresh (``dvc status``); return the commit,
    DVC's ``metrics diff --all`` against it (with its "errors") and its ``params diff``."""
    from dvc.exceptions import DvcException  # DVC only here: `digits predict` never loads it
    from dvc.repo import Repo
    from scmrepo.exceptions import SCMError

    try:
        with Repo(str(root)) as repo:
            try:
                if not base.strip():
                    raise SCMError("empty")
                commit = repo.scm.resolve_rev(base)
                repo.scm.resolve_rev(f"{commit}^{{commit}}")  # not a file's or a tree's id
            except SCMError:
                raise CompareError(
                    f"unknown revision {base!r}: not a branch, tag or commit in this repository"
                    " (in CI, check out with fetch-depth: 0)"
                ) from None
            if stale := describe_stale_stages(repo.status()):
                raise CompareError(
                    "results in the working tree are stale (params, code or outputs differ from "
                    "dvc.lock); run `dvc repro` first. Stale stages: " + "; ".join(stale)
                )
            # the test metrics only: not DVCLive's last-epoch training metrics
            metrics = repo.metrics.diff(a_rev=commit, all=True, targets=[str(root / METRICS)])
            return commit, metrics, repo.params.diff(a_rev=commit).get("diff", {})
    except (DvcException, SCMError) as error:
        raise CompareError(f"DVC: {error}") from None


def confusion_at(root: Path, commit: str, base: str) -> pd.DataFrame | None:
    """The confusion table committed (to git or DVC) at ``commit``; None if there is none."""
    import dvc.api
    from dvc.exceptions import DvcException, PathMissingError

    try:
        with dvc.api.open(CONFUSION.as_posix(), repo=str(root), rev=commit) as file:
            return read_confusion(file, f"{CONFUSION} at {base}")
    except PathMissingError:
        return None
    except DvcException as error:
        raise CompareError(f"{CONFUSION} at {base}: DVC cannot read it: {error}") from None


def build_report(base: str, max_drop: float, max_class_drop: float) -> dict:
    """Compare the working tree with revision ``base``, at the repository root wherever it is
    run from; return the report as the JSON document; CompareError if that cannot be done
    honestly."""
    root = project_root()
    commit, metrics_diff, params_diff = dvc_diffs(root, base)
    for rev, where in ((commit, base), ("workspace", WORKING_TREE)):
        errors = metrics_diff.get("errors", {}).get(rev, {})
        for path, error in errors.items() if isinstance(errors, dict) else [("", errors)]:
            if not isinstance(error, FileNotFoundError):  # a missing file is the gate's to judge
                detail = type(error).__name__  # its message names a path relative to elsewhere
                raise CompareError(
                    f"{path or 'metrics'} at {where}: DVC cannot read it ({detail})"
                )
    metrics = diff_records(metrics_diff.get("diff", {}), ("metric", "base", "new", "change"))
    regressions = find_regressions(metrics, base, max_drop, max_class_drop)
    changes, note = None, f"{CONFUSION} is not committed at {base}; no confusion diff."
    if (base_confusion := confusion_at(root, commit, base)) is not None:
        new_confusion = read_confusion(root / CONFUSION, f"{CONFUSION} in {WORKING_TREE}")
        changes = confusion_changes(base_confusion, new_confusion)
        note = "No misclassification count changed."
    return {
        "base": base,
        "base_commit": commit,
        "gate": {
            "passed": not regressions,
            "max_drop": max_drop,
            "max_class_drop": max_class_drop,
            "regressions": regressions,
        },
        "params": diff_records(params_diff, ("key", "base", "new")),
        "metrics": metrics,
        "largest_class_moves": largest_class_moves(metrics),
        "confusion_changes": changes,
        "confusion_note": note,
    }


def write_reports(report: dict, markdown: Path | None, json_path: Path | None) -> None:
    """Write the requested report files together: all replaced, or none on an error."""
    outputs = []
    if markdown:
        outputs.append((markdown, render(report, markdown=True)))
    if json_path:
        outputs.append((json_path, json.dumps(report, indent=2, default=str) + "\n"))
    with atomic_paths(*(path for path, _ in outputs)) as temporaries:
        for tmp, (_, text) in zip(temporaries, outputs, strict=True):
            tmp.write_text(text, encoding="utf-8")


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


def run(args: argparse.Namespace) -> int:
    """Compare and write the reports; return the exit status: 0 passed, 1 regressed, 2 error
    (one ``error:`` line on stderr; never 1, which CI reads as a regression)."""
    try:
        tolerances = {"--max-drop": args.max_drop, "--max-class-drop": args.max_class_drop}
        for option, tolerance in tolerances.items():
            if not 0 <= tolerance <= 1:  # also refuses NaN, which would turn the gate off
                raise CompareError(f"{option} {tolerance}: a tolerance is a number from 0 to 1")
        report = build_report(args.base, args.max_drop, args.max_class_drop)
        write_reports(report, args.markdown, args.json)
    except (DigitsError, OSError) as error:
        message = describe_os_error(error) if isinstance(error, OSError) else error
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # a bug or a library failure: never exit 1, the regression status
        print(f"error: {describe_unexpected(error)}", file=sys.stderr)
        return EXIT_ERROR
    print(render(report), end="")
    return EXIT_REGRESSED if report["gate"]["regressions"] else EXIT_PASSED
