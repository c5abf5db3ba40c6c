"""scripts/compare.py: the tables and the gate on values worked out by hand, then the whole
command in a throwaway git + DVC repository whose one-stage pipeline writes metrics from
params.yaml (no TensorFlow, no network)."""

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def load_compare():
    """Import scripts/compare.py (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("compare", PROJECT_ROOT / "scripts/compare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


compare = load_compare()


def metrics_rows(**values: tuple) -> pd.DataFrame:
    """A metrics table from name=(base, new); dots in names are written as __."""
    diff = {
        name.replace("__", "."): {"old": old, "new": new} for name, (old, new) in values.items()
    }
    return compare.metrics_table({"metrics/metrics.json": diff})


# --- Pure functions --------------------------------------------------------------------------


def test_flatten_diff_sorts_class_numbers_and_prefixes_files_only_when_several():
    one = {"m.json": {"per_class_accuracy.10": {"old": 1}, "per_class_accuracy.2": {"old": 2}}}
    assert [row[0] for row in compare.flatten_diff(one)] == [
        "per_class_accuracy.2",
        "per_class_accuracy.10",
    ]
    two = {"a.json": {"x": {"old": 1, "new": 2}}, "b.json": {"x": {"new": 3}}}
    assert compare.flatten_diff(two) == [("a.json:x", 1, 2), ("b.json:x", None, 3)]


def test_params_table_lists_changed_params_with_both_values():
    diff = {
        "params.yaml": {
            "train.epochs": {"old": 15, "new": 1, "diff": -14},
            "train.hidden_units": {"old": "[512, 256]", "new": "[16]"},
            "train.seed": {"old": 42, "new": 42},  # as `--all` would list it
        }
    }
    table = compare.params_table(diff)
    assert table.to_dict("records") == [
        {"key": "train.epochs", "base": 15, "new": 1},
        {"key": "train.hidden_units", "base": "[512, 256]", "new": "[16]"},
    ]


def test_metrics_table_computes_change_and_keeps_missing_values_as_none():
    table = metrics_rows(
        accuracy=(0.95, 0.935), errors=(50, 65), per_class_accuracy__3=(None, 0.8)
    )
    rows = {row["metric"]: row for row in table.to_dict("records")}
    assert rows["accuracy"]["change"] == pytest.approx(-0.015)
    assert rows["errors"]["change"] == 15
    assert rows["per_class_accuracy.3"]["base"] is None
    assert rows["per_class_accuracy.3"]["change"] is None


def test_largest_class_moves_orders_by_size_either_way_and_omits_unmoved():
    table = metrics_rows(
        accuracy=(0.9, 0.5),
        per_class_accuracy__0=(0.9, 0.9),
        per_class_accuracy__1=(0.9, 0.95),
        per_class_accuracy__2=(0.9, 0.8),
        per_class_accuracy__3=(0.9, 0.91),
    )
    moves = compare.largest_class_moves(table, shown=2)
    assert list(moves["metric"]) == ["per_class_accuracy.2", "per_class_accuracy.1"]
    assert len(compare.largest_class_moves(table, shown=10)) == 3


def test_confusion_changes_counts_only_misclassification_pairs():
    base = pd.DataFrame({"actual": [0, 0, 0, 1, 1, 1], "predicted": [0, 1, 1, 1, 0, 2]})
    new = pd.DataFrame({"actual": [0, 0, 0, 1, 1, 1], "predicted": [0, 0, 2, 1, 0, 0]})
    # base errors: 0->1 x2, 1->0 x1, 1->2 x1; new errors: 0->2 x1, 1->0 x2
    changes = compare.confusion_changes(base, new)
    assert changes.to_dict("records") == [
        {"actual": 0, "predicted": 1, "base": 2, "new": 0, "change": -2},
        {"actual": 0, "predicted": 2, "base": 0, "new": 1, "change": 1},
        {"actual": 1, "predicted": 0, "base": 1, "new": 2, "change": 1},
        {"actual": 1, "predicted": 2, "base": 1, "new": 0, "change": -1},
    ]
    assert len(compare.confusion_changes(base, new, shown=1)) == 1


def test_find_regressions_uses_each_tolerance_and_passes_drops_at_the_limit():
    table = metrics_rows(
        accuracy=(0.95, 0.948),  # drop 0.002: exactly the tolerance, passes
        loss=(0.1, 0.9),  # not gated
        per_class_accuracy__0=(0.95, 0.94),  # drop 0.01 == class tolerance, passes
        per_class_accuracy__1=(0.95, 0.93),  # drop 0.02 > 0.01
        per_class_accuracy__2=(None, 0.5),  # new class: nothing to compare
    )
    regressions = compare.find_regressions(table, max_drop=0.002, max_class_drop=0.01)
    assert [(r.metric, r.base, r.new) for r in regressions] == [
        ("per_class_accuracy.1", 0.95, 0.93)
    ]
    assert regressions[0].drop == pytest.approx(0.02)
    assert "per_class_accuracy.1 dropped 0.0200 (0.9500 -> 0.9300)" in regressions[0].describe()
    assert [r.metric for r in compare.find_regressions(table, 0.001, 0.05)] == ["accuracy"]


def test_check_comparable_explains_missing_base_and_missing_working_tree_metrics():
    with pytest.raises(compare.CompareError, match="was `dvc repro` run and committed there"):
        compare.check_comparable(metrics_rows(accuracy=(None, 0.9)), "v1")
    with pytest.raises(compare.CompareError, match="no `accuracy` metric at v1"):
        compare.check_comparable(metrics_rows(loss=(0.1, 0.2)), "v1")
    with pytest.raises(compare.CompareError, match="working tree: run `dvc repro`"):
        compare.check_comparable(metrics_rows(accuracy=(0.9, None)), "v1")
    compare.check_comparable(metrics_rows(accuracy=(0.9, 0.8)), "v1")


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


def test_format_value():
    assert compare.format_value(0.98523) == "0.9852"
    assert compare.format_value(-0.0535, signed=True) == "-0.0535"
    assert compare.format_value(11, signed=True) == "+11"
    assert compare.format_value(None) == "-"
    assert compare.format_value("[16]") == "[16]"


def make_report(**metrics: tuple):
    table = metrics_rows(**metrics)
    return compare.Report(
        base="main",
        base_commit="0123456789abcdef",
        params=compare.params_table({"params.yaml": {"train.epochs": {"old": 15, "new": 1}}}),
        metrics=table,
        class_moves=compare.largest_class_moves(table),
        confusion=None,
        confusion_note="plots/confusion.csv is not committed at main; no confusion diff.",
        regressions=compare.find_regressions(table, 0.002, 0.01),
        max_drop=0.002,
        max_class_drop=0.01,
    )


def test_render_markdown_has_gate_tables_and_class_moves():
    report = make_report(accuracy=(0.98, 0.93), per_class_accuracy__5=(0.98, 0.88))
    markdown = compare.render_markdown(report)
    assert "## Comparison with `main` (0123456)" in markdown
    assert "**Gate FAILED**: 2 metric(s)" in markdown
    assert "- `accuracy`: dropped 0.0500 (0.9800 -> 0.9300)" in markdown
    assert "| train.epochs | 15     | 1     |" in markdown
    assert "Largest per-class moves: digit 5 -0.1000" in markdown
    assert "not committed at main" in markdown


def test_report_json_round_trips_the_tables_and_the_gate():
    document = json.loads(compare.report_json(make_report(accuracy=(0.98, 0.981))))
    assert document["gate"]["passed"] is True
    assert document["gate"]["regressions"] == []
    assert document["params"] == [{"key": "train.epochs", "base": 15, "new": 1}]
    assert document["metrics"][0]["metric"] == "accuracy"
    assert document["confusion_changes"] is None


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
"""


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return result.stdout


def dvc(repo: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stderr}"


def write_params(repo: Path, correct: list[int], epochs: int) -> None:
    params = {"evaluate": {"correct": correct, "epochs": epochs}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, default_flow_style=None))


def commit_results(repo: Path, message: str) -> None:
    dvc(repo, "repro", "--quiet")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """Branches: main (every digit 95/100 right, tag no-results before its first repro),
    better (96/100, more epochs) and worse (digit 3 falls to 80/100)."""
    repo = tmp_path_factory.mktemp("compare-repo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DVC_NO_ANALYTICS", "1")
        git(repo, "init", "-q", "-b", "main")
        for key, value in [("user.name", "test"), ("user.email", "test@example.invalid"),
                           ("commit.gpgsign", "false")]:  # fmt: skip
            git(repo, "config", key, value)
        dvc(repo, "init", "--quiet")
        (repo / ".dvc/config").write_text(
            "[core]\n    analytics = false\n    check_update = false\n"
        )
        (repo / "make_results.py").write_text(MAKE_RESULTS)
        stage = {
            "cmd": f"{shlex.quote(sys.executable)} make_results.py",
            "deps": ["make_results.py"],
            "params": ["evaluate"],
            "metrics": [{"metrics/metrics.json": {"cache": False}}],
            "outs": [{"plots/confusion.csv": {"cache": False}}],
        }
        (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}}))
        write_params(repo, [95] * 10, epochs=5)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "Pipeline, not yet run")
        git(repo, "tag", "no-results")
        commit_results(repo, "Results")

        git(repo, "checkout", "-q", "-b", "better", "main")
        write_params(repo, [96] * 10, epochs=6)
        commit_results(repo, "Better")

        git(repo, "checkout", "-q", "-b", "worse", "main")
        write_params(repo, [95, 95, 95, 80, 95, 95, 95, 95, 95, 95], epochs=5)
        commit_results(repo, "Worse")
        yield repo


@pytest.fixture
def on_branch(repo: Path, monkeypatch):
    """Check out a branch of ``repo`` and make it the working directory."""
    monkeypatch.chdir(repo)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")

    def checkout(branch: str) -> Path:
        git(repo, "checkout", "-q", "--force", branch)
        return repo

    return checkout


def test_improving_branch_passes_and_reports_params(on_branch, capsys, tmp_path):
    on_branch("better")
    report = tmp_path / "report.json"
    assert compare.main(["--base", "main", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "Gate passed" in out
    document = json.loads(report.read_text())
    assert document["params"] == [
        {"key": "evaluate.correct", "base": str([95] * 10), "new": str([96] * 10)},
        {"key": "evaluate.epochs", "base": 5, "new": 6},
    ]
    accuracy = next(row for row in document["metrics"] if row["metric"] == "accuracy")
    assert (accuracy["base"], accuracy["new"]) == (0.95, 0.96)
    assert document["gate"] == {
        "passed": True,
        "max_drop": compare.MAX_DROP,
        "max_class_drop": compare.MAX_CLASS_DROP,
        "regressions": [],
    }


def test_regressing_branch_fails_naming_each_metric(on_branch, capsys, tmp_path):
    on_branch("worse")
    markdown, report = tmp_path / "report.md", tmp_path / "report.json"
    status = compare.main(["--base", "main", "--markdown", str(markdown), "--json", str(report)])
    assert status == 1
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


def test_stale_results_are_an_error_naming_the_stage(on_branch, capsys, repo):
    on_branch("better")
    write_params(repo, [99] * 10, epochs=6)  # edited, not reproduced
    assert compare.main(["--base", "main"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "results in the working tree are stale" in captured.err
    assert "Stale stages: evaluate (changed deps: params.yaml:evaluate)" in captured.err


def test_unknown_revision_is_an_error(on_branch, capsys):
    on_branch("better")
    assert compare.main(["--base", "no-such-branch"]) == 2
    assert "unknown revision 'no-such-branch'" in capsys.readouterr().err


def test_base_without_metrics_is_an_error(on_branch, capsys):
    on_branch("better")
    assert compare.main(["--base", "no-results"]) == 2
    error = capsys.readouterr().err
    assert "no `accuracy` metric at no-results: was `dvc repro` run and committed there?" in error


def test_runs_as_a_script_from_the_repository_root(on_branch):
    """The command line a user types: exit status and stdout, dvc from this interpreter."""
    repo = on_branch("worse")
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/compare.py"), "--base", "better"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=os.environ | {"DVC_NO_ANALYTICS": "1"},
    )
    assert result.returncode == 1, result.stderr
    assert "Comparison with better" in result.stdout
