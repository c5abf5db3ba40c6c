"""digits compare: the gate, the per-class and confusion changes and the reports on values
worked out by hand and on generated ones (Hypothesis), then the whole command in a throwaway
git + DVC repository whose one-stage pipeline writes metrics from params.yaml (no TensorFlow,
no network)."""

import argparse
import json
import math
import re
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import DIGITS, commit_all, dvc, git, venv_env
from hypothesis import given, settings
from hypothesis import strategies as st

from digits import compare


def records(**values: tuple) -> list[dict]:
    """Metrics records from name=(base, new); dots in names are written as __."""
    diff = {name.replace("__", "."): {"old": b, "new": n} for name, (b, n) in values.items()}
    return compare.diff_records({"metrics.json": diff}, ("metric", "base", "new", "change"))


# --- Pure functions, on values worked out by hand --------------------------------------------


def test_diff_records_sorts_and_prefixes_files_only_when_several():
    one = {"m.json": {"loss": {"old": 1, "new": 2, "diff": 1}, "accuracy": {"new": 0.5}}}
    assert compare.diff_records(one, ("metric", "base", "new", "change")) == [
        {"metric": "accuracy", "base": None, "new": 0.5, "change": None},
        {"metric": "loss", "base": 1, "new": 2, "change": 1},
    ]
    two = {"a.yaml": {"x": {"old": 1, "new": 2}}, "b.yaml": {"x": {"new": "[16]"}}}
    assert compare.diff_records(two, ("key", "base", "new")) == [
        {"key": "a.yaml:x", "base": 1, "new": 2},
        {"key": "b.yaml:x", "base": None, "new": "[16]"},
    ]


def test_find_regressions_uses_each_tolerance_and_passes_drops_at_the_limit():
    metrics = records(
        accuracy=(0.95, 0.948),  # drop 0.002: exactly the tolerance, passes
        loss=(0.1, "not gated"),
        per_class_accuracy__0=(0.95, 0.94),  # drop 0.01 == class tolerance, passes
        per_class_accuracy__1=(0.95, 0.93),  # drop 0.02 > 0.01
        per_class_accuracy__2=(None, 0.5),  # a new class: nothing to compare
    )
    [regression] = compare.find_regressions(metrics, "main", max_drop=0.002, max_class_drop=0.01)
    assert regression == {
        "metric": "per_class_accuracy.1",
        "base": 0.95,
        "new": 0.93,
        "drop": pytest.approx(0.02),
        "tolerance": 0.01,
    }
    tighter = compare.find_regressions(metrics, "main", max_drop=0.001, max_class_drop=0.05)
    assert [r["metric"] for r in tighter] == ["accuracy"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"accuracy": (None, 0.9)},
            "no `accuracy` metric at v1: was `dvc repro` run and committed?",
        ),
        ({"loss": (0.1, 0.2)}, "no `accuracy` metric at v1"),
        ({"accuracy": (0.9, None)}, "no `accuracy` metric in the working tree: run `dvc repro`"),
        ({"accuracy": ("0.9", 0.9)}, "`accuracy` at v1 is '0.9', not a number from 0 to 1"),
        ({"accuracy": (0.9, math.nan)}, "`accuracy` at the working tree is nan"),
        ({"accuracy": (True, 0.9)}, "`accuracy` at v1 is True"),
        ({"accuracy": (0.9, 0.9), "per_class_accuracy.3": (0.9, 1.5)}, "is 1.5, not a number"),
        ({"accuracy": ("x" * 1000, 0.9)}, "is 'xxxxxxxxxxxx...xxxxxxxxxxxxx', not"),
    ],
)
def test_find_regressions_refuses_what_it_cannot_read(values, message):
    metrics = [{"metric": m, "base": b, "new": n} for m, (b, n) in values.items()]
    with pytest.raises(compare.CompareError) as error:
        compare.find_regressions(metrics, "v1", 0.002, 0.01)
    assert message in str(error.value)
    assert len(str(error.value)) < 200  # a huge value is shortened, not printed whole


def test_largest_class_moves_orders_by_size_either_way_and_omits_unmoved():
    metrics = records(
        accuracy=(0.9, 0.5),
        per_class_accuracy__0=(0.9, 0.9),
        per_class_accuracy__1=(0.9, 0.95),
        per_class_accuracy__2=(0.9, 0.8),
        per_class_accuracy__3=(0.9, 0.91),
    )
    for row in metrics:  # DVC computes the change; here by hand
        row["change"] = round(row["new"] - row["base"], 6)
    moves = compare.largest_class_moves(metrics, shown=2)
    assert [(row["metric"], row["change"]) for row in moves] == [
        ("per_class_accuracy.2", -0.1),
        ("per_class_accuracy.1", 0.05),
    ]
    assert len(compare.largest_class_moves(metrics, shown=10)) == 3


def confusion(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["actual", "predicted"], dtype="int64")


def test_confusion_changes_counts_only_misclassification_pairs():
    base = confusion([(0, 0), (0, 1), (0, 1), (1, 1), (1, 0), (1, 2)])
    new = confusion([(0, 0), (0, 0), (0, 2), (1, 1), (1, 0), (1, 0)])
    # base errors: 0->1 x2, 1->0 x1, 1->2 x1; new errors: 0->2 x1, 1->0 x2
    assert compare.confusion_changes(base, new) == [
        {"actual": 0, "predicted": 1, "base": 2, "new": 0, "change": -2},
        {"actual": 0, "predicted": 2, "base": 0, "new": 1, "change": 1},
        {"actual": 1, "predicted": 0, "base": 1, "new": 2, "change": 1},
        {"actual": 1, "predicted": 2, "base": 1, "new": 0, "change": -1},
    ]
    assert len(compare.confusion_changes(base, new, shown=1)) == 1


def test_describe_stale_stages_names_stages_and_what_changed():
    status = {
        "train": [
            {"changed deps": {"params.yaml": {"train": "modified"}, "train.py": "modified"}}
        ],
        "evaluate": ["always changed", {"changed outs": {"metrics.json": "deleted"}}],
    }
    assert compare.describe_stale_stages(status) == [
        "train (changed deps: params.yaml:train, train.py)",
        "evaluate (always changed; changed outs: metrics.json)",
    ]
    assert compare.describe_stale_stages({}) == []
    assert compare.describe_stale_stages({"own": ["always changed"]}) == []


def test_format_value():
    assert compare.format_value(0.98523) == "0.9852"
    assert compare.format_value(-0.0535, signed=True) == "-0.0535"
    assert compare.format_value(11, signed=True) == "+11"
    assert compare.format_value(None) == "-"
    assert compare.format_value("[16]") == "[16]"


def hand_report(**metrics: tuple) -> dict:
    rows = records(**metrics)
    regressions = compare.find_regressions(rows, "main", 0.002, 0.01)
    return {
        "base": "main",
        "base_commit": "0123456789abcdef",
        "gate": {
            "passed": not regressions,
            "max_drop": 0.002,
            "max_class_drop": 0.01,
            "regressions": regressions,
        },
        "params": [{"key": "train.epochs", "base": 15, "new": 1}],
        "metrics": rows,
        "largest_class_moves": [{"metric": "per_class_accuracy.5", "change": -0.1}],
        "confusion_changes": None,
        "confusion_note": "plots/confusion.csv is not committed at main; no confusion diff.",
    }


def test_render_markdown_has_gate_tables_and_class_moves():
    markdown = compare.render(hand_report(accuracy=(0.98, 0.93)), markdown=True)
    assert markdown.startswith("## Comparison with `main` (0123456)\n")
    assert "**Gate FAILED**: 1 metric(s)" in markdown
    assert "- accuracy dropped 0.0500 (0.9800 -> 0.9300), more than the tolerance 0.0020\n" in (
        markdown
    )
    assert "| train.epochs | 15     | 1     |" in markdown
    assert "| accuracy | 0.9800 | 0.9300 | -        |" in markdown  # no change: none given
    assert "Largest per-class moves: digit 5 -0.1000" in markdown
    assert markdown.endswith("not committed at main; no confusion diff.\n")


def test_params_are_shown_as_written_not_rounded():
    report = hand_report(accuracy=(0.98, 0.981))
    report["params"] = [
        {"key": "train.learning_rate", "base": 0.003, "new": 0.00304},
        {"key": "train.weight_decay", "base": 0, "new": 2e-05},
    ]
    text = compare.render(report)
    assert re.search(r"train.learning_rate +0.003 +0.00304\n", text), text
    assert re.search(r"train.weight_decay +0 +2e-05\n", text), text


def test_render_text_says_the_gate_passed_with_its_tolerances():
    text = compare.render(hand_report(accuracy=(0.98, 0.981)))
    assert "Gate passed: no drop beyond 0.0020 in accuracy or 0.0100 in any" in text
    assert "###" not in text and "|" not in text


# --- Properties, on generated values ---------------------------------------------------------

ACCURACIES = st.floats(0, 1) | st.sampled_from([0, 1])
ANY_VALUE = ACCURACIES | st.none() | st.booleans() | st.integers() | st.floats() | st.text()
NAMES = st.sampled_from(
    ["accuracy", "loss", "per_class_accuracy.0", "per_class_accuracy.7", "per_class_accuracy."]
) | st.text(max_size=6)
TOLERANCES = st.floats(0, 1)


def gate_oracle(rows: dict[str, tuple], max_drop: float, max_class_drop: float):
    """What the gate must decide, written plainly: None where it must refuse (test accuracy
    missing, or a compared value that is not a number from 0 to 1), else the sorted names of
    the accuracies that dropped by more than their tolerance."""

    def readable(value) -> bool:
        return type(value) in (int, float) and 0 <= value <= 1

    if None in rows.get("accuracy", (None, None)):
        return None
    compared = {
        name: pair
        for name, pair in rows.items()
        if (name == "accuracy" or name.startswith("per_class_accuracy.")) and None not in pair
    }
    if not all(readable(value) for pair in compared.values() for value in pair):
        return None
    limit = {name: max_drop if name == "accuracy" else max_class_drop for name in compared}
    return sorted(name for name, (b, n) in compared.items() if b - n > limit[name] + 1e-12)


def check_gate_against_oracle(rows: dict, max_drop: float, max_class_drop: float) -> None:
    metrics = [{"metric": m, "base": b, "new": n, "change": None} for m, (b, n) in rows.items()]
    expected = gate_oracle(rows, max_drop, max_class_drop)
    try:
        regressions = compare.find_regressions(metrics, "main", max_drop, max_class_drop)
    except compare.CompareError:
        assert expected is None, "the gate refused values it can read"
        return
    assert expected is not None, "the gate decided on values it cannot read"
    assert sorted(r["metric"] for r in regressions) == expected


@settings(max_examples=300, deadline=None)
@given(
    rows=st.dictionaries(NAMES, st.tuples(ANY_VALUE, ANY_VALUE)),
    max_drop=TOLERANCES,
    max_class_drop=TOLERANCES,
)
def test_gate_on_any_metrics_raises_only_compare_error_and_matches_the_oracle(
    rows, max_drop, max_class_drop
):
    check_gate_against_oracle(rows, max_drop, max_class_drop)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.dictionaries(NAMES, st.tuples(ACCURACIES, ACCURACIES)).map(
        lambda rows: {"accuracy": (0.9, 0.9)} | rows
    ),
    max_drop=TOLERANCES,
    max_class_drop=TOLERANCES,
)
def test_gate_on_readable_metrics_decides_as_the_oracle(rows, max_drop, max_class_drop):
    check_gate_against_oracle(rows, max_drop, max_class_drop)


PAIRS = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=60)


@settings(deadline=None)
@given(base=PAIRS, new=PAIRS)
def test_confusion_changes_are_the_changed_error_counts_largest_first(base, new):
    changes = compare.confusion_changes(confusion(base), confusion(new), shown=100)
    before, after = Counter(base), Counter(new)
    expected = {
        pair: after[pair] - before[pair]
        for pair in before | after
        if pair[0] != pair[1] and after[pair] != before[pair]
    }
    assert {(r["actual"], r["predicted"]): r["change"] for r in changes} == expected
    sizes = [abs(r["change"]) for r in changes]
    assert sizes == sorted(sizes, reverse=True)


# --- The command line's own checks (no repository needed) ------------------------------------


def run_compare(*argv: str) -> int:
    """``digits compare ARGV`` in this process (its parser and ``run``), for capsys."""
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    return compare.run(parser.parse_args(list(argv)))


@pytest.mark.parametrize("option", ["--max-drop", "--max-class-drop"])
@pytest.mark.parametrize("value", ["nan", "-0.001", "1.5", "inf"])
def test_a_tolerance_outside_0_to_1_is_an_error(option, value, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # refused before any repository is looked at
    assert run_compare("--base", "main", option, value) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {option} {float(value)}: a tolerance is a number from 0 to 1\n"


def test_outside_a_dvc_repository_is_an_error(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_compare("--base", "main") == 2
    assert capsys.readouterr().err.startswith("error: DVC: ")


# --- The command in a real git + DVC repository ----------------------------------------------

# Writes what the evaluate stage writes, from params alone: per digit, ``correct[d]`` of 100
# test images right and the rest predicted as the next digit.
MAKE_RESULTS = """\
import json
from pathlib import Path

import yaml

correct = yaml.safe_load(Path("params.yaml").read_text())["evaluate"]["correct"]
rows = ["actual,predicted"]
for digit, right in enumerate(correct):
    rows += [f"{digit},{digit}"] * right + [f"{digit},{(digit + 1) % 10}"] * (100 - right)
Path("plots").mkdir(exist_ok=True)
Path("plots/confusion.csv").write_text("\\n".join(rows) + "\\n")
accuracy = sum(correct) / 1000
metrics = {
    "accuracy": accuracy,
    "loss": round(1 - accuracy, 6),
    "errors": 1000 - sum(correct),
    "per_class_accuracy": {str(digit): right / 100 for digit, right in enumerate(correct)},
}
Path("metrics").mkdir(exist_ok=True)
Path("metrics/metrics.json").write_text(json.dumps(metrics, indent=2))
# a second metrics file, as DVCLive's training log is in the project: not gated, not reported
Path("dvclive").mkdir(exist_ok=True)
Path("dvclive/metrics.json").write_text(json.dumps({"eval": {"accuracy": 0.5}, "step": 0}))
"""


def write_params(repo: Path, correct: list[int], epochs: int) -> None:
    params = {"evaluate": {"correct": correct, "epochs": epochs}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, default_flow_style=None))


def commit_results(repo: Path, message: str) -> None:
    dvc(repo, "repro", "--quiet", env=venv_env())
    commit_all(repo, message)


def commit_metrics(repo: Path, tag: str, text: str) -> None:
    """Tag a commit on main whose metrics file holds ``text`` (as a hand edit would)."""
    git(repo, "checkout", "-q", "main")
    (repo / "metrics/metrics.json").write_text(text)
    commit_all(repo, f"metrics: {tag}")
    git(repo, "tag", tag)
    git(repo, "reset", "-q", "--hard", "HEAD~1")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """Branches: main (every digit 95/100 right; tag no-results before its first repro),
    better (96/100, more epochs) and worse (digit 3 falls to 80/100); tags string-metrics,
    nan-metrics and corrupt-metrics: main with a hand-edited metrics file."""
    repo = tmp_path_factory.mktemp("compare-repo")
    git(repo, "init", "-q", "-b", "main")
    dvc(repo, "init", "--quiet", env=venv_env())
    (repo / ".dvc/config").write_text("[core]\n    analytics = false\n    check_update = false\n")
    (repo / "make_results.py").write_text(MAKE_RESULTS)
    stage = {
        "cmd": f"{shlex.quote(sys.executable)} make_results.py",
        "deps": ["make_results.py"],
        "params": ["evaluate"],
        "metrics": [
            {"metrics/metrics.json": {"cache": False}},
            {"dvclive/metrics.json": {"cache": False}},
        ],
        "outs": [{"plots/confusion.csv": {"cache": False}}],
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}}))
    write_params(repo, [95] * 10, epochs=5)
    commit_all(repo, "Pipeline, not yet run")
    git(repo, "tag", "no-results")
    commit_results(repo, "Results")
    commit_metrics(repo, "string-metrics", '{"accuracy": "0.95", "per_class_accuracy": {}}')
    commit_metrics(repo, "nan-metrics", '{"accuracy": NaN}')
    commit_metrics(repo, "corrupt-metrics", '{"accuracy": ')

    git(repo, "checkout", "-q", "-b", "better", "main")
    write_params(repo, [96] * 10, epochs=6)
    commit_results(repo, "Better")

    git(repo, "checkout", "-q", "-b", "worse", "main")
    write_params(repo, [95, 95, 95, 80, 95, 95, 95, 95, 95, 95], epochs=5)
    commit_results(repo, "Worse")
    return repo


@pytest.fixture
def on_branch(repo: Path, monkeypatch):
    """Check out a branch of ``repo`` (discarding edits) and make it the working directory."""
    monkeypatch.chdir(repo)

    def checkout(branch: str) -> Path:
        git(repo, "checkout", "-q", "--force", branch)
        git(repo, "clean", "-qfd")
        return repo

    return checkout


def error_line(capsys) -> str:
    """The one line on stderr, with nothing on stdout."""
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    return captured.err


@pytest.mark.integration
def test_improving_branch_passes_and_reports_params(on_branch, capsys, tmp_path):
    on_branch("better")
    report = tmp_path / "report.json"
    assert run_compare("--base", "main", "--json", str(report)) == 0
    assert "Gate passed" in capsys.readouterr().out
    document = json.loads(report.read_text())
    assert document["params"] == [
        {"key": "evaluate.correct", "base": str([95] * 10), "new": str([96] * 10)},
        {"key": "evaluate.epochs", "base": 5, "new": 6},
    ]
    accuracy = next(row for row in document["metrics"] if row["metric"] == "accuracy")
    assert (accuracy["base"], accuracy["new"]) == (0.95, 0.96)
    assert not any(row["metric"].startswith(("eval", "step")) for row in document["metrics"])
    assert accuracy["change"] == pytest.approx(0.01)
    assert document["gate"] == {
        "passed": True,
        "max_drop": compare.MAX_DROP,
        "max_class_drop": compare.MAX_CLASS_DROP,
        "regressions": [],
    }
    assert [row["change"] for row in document["confusion_changes"]] == [-1] * 5


@pytest.mark.integration
@pytest.mark.parametrize("where", [".", "make_results_dir/deeper"])
def test_regressing_branch_fails_naming_each_metric_from_any_directory(
    on_branch, capsys, tmp_path, monkeypatch, where
):
    repo = on_branch("worse")
    (repo / where).mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(repo / where)
    markdown, report = tmp_path / "report.md", tmp_path / "report.json"
    assert run_compare("--base", "main", "--markdown", str(markdown), "--json", str(report)) == 1
    out = capsys.readouterr().out
    assert "accuracy dropped 0.0150 (0.9500 -> 0.9350), more than the tolerance 0.0020" in out
    assert "per_class_accuracy.3 dropped 0.1500 (0.9500 -> 0.8000)" in out
    assert "Largest per-class moves: digit 3 -0.1500" in out
    assert "**Gate FAILED**: 2 metric(s)" in markdown.read_text()
    document = json.loads(report.read_text())
    assert [r["metric"] for r in document["gate"]["regressions"]] == [
        "accuracy",
        "per_class_accuracy.3",
    ]
    # 15 more images of digit 3 are now predicted as 4
    assert document["confusion_changes"] == [
        {"actual": 3, "predicted": 4, "base": 5, "new": 20, "change": 15}
    ]


@pytest.mark.integration
def test_stale_results_are_an_error_naming_the_stage(on_branch, capsys, repo):
    on_branch("better")
    write_params(repo, [99] * 10, epochs=6)  # edited, not reproduced
    assert run_compare("--base", "main") == 2
    error = error_line(capsys)
    assert "results in the working tree are stale" in error
    assert "Stale stages: evaluate (changed deps: params.yaml:evaluate)" in error


@pytest.mark.integration
@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("no-such-branch", "unknown revision 'no-such-branch': not a branch, tag or commit"),
        ("", "unknown revision '': not a branch, tag or commit"),
        ("main:params.yaml", "unknown revision 'main:params.yaml': not a branch, tag or commit"),
        ("no-results", "no `accuracy` metric at no-results: was `dvc repro` run and committed?"),
        ("string-metrics", "`accuracy` at string-metrics is '0.95', not a number from 0 to 1"),
        ("nan-metrics", "`accuracy` at nan-metrics is nan, not a number from 0 to 1"),
        ("corrupt-metrics", "metrics/metrics.json at corrupt-metrics: DVC cannot read it"),
    ],
)
def test_a_base_that_cannot_be_compared_is_an_error(on_branch, capsys, base, message):
    on_branch("better")
    assert run_compare("--base", base) == 2
    assert message in error_line(capsys)


@pytest.mark.integration
def test_a_base_whose_confusion_table_is_broken_is_an_error(on_branch, capsys, repo):
    on_branch("main")
    (repo / "plots/confusion.csv").write_text("actual,predicted\nthree,4\n")
    commit_all(repo, "broken confusion")
    git(repo, "tag", "-f", "broken-confusion")
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    on_branch("better")
    assert run_compare("--base", "broken-confusion") == 2
    assert "plots/confusion.csv at broken-confusion: actual and predicted must be" in (
        error_line(capsys)
    )


@pytest.mark.integration
@pytest.mark.parametrize("unwritable", ["a-file/report.json", "a-directory", "report.md"])
def test_an_unwritable_report_is_an_error_and_no_report_is_written(
    on_branch, capsys, tmp_path, unwritable
):
    on_branch("worse")  # a regression: the error must not read as one
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-directory").mkdir()
    markdown = tmp_path / "report.md"
    status = run_compare(
        "--base", "main", "--markdown", str(markdown), "--json", str(tmp_path / unwritable)
    )
    assert status == 2
    assert str(tmp_path / unwritable.split("/")[0]) in error_line(capsys)
    assert not markdown.exists()  # the reports are written together or not at all


@pytest.mark.integration
def test_digits_compare_runs_as_a_command_from_a_subdirectory(on_branch):
    """The command line a user types: exit status and stdout, from below the root."""
    repo = on_branch("worse")
    (repo / "plots").mkdir(exist_ok=True)
    result = subprocess.run(
        [DIGITS, "compare", "--base", "better"],
        cwd=repo / "plots",
        capture_output=True,
        text=True,
        env=venv_env(),
    )
    assert "Comparison with better" in result.stdout, result.stderr
    assert result.returncode == 1
    # the confusion diff, found from below the root: 16 more images of digit 3 read as 4
    assert re.search(r"^ *3 +4 +4 +20 +\+16$", result.stdout, re.MULTILINE), result.stdout
