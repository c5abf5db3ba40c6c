"""`digits sweep`: a grid file's points, the shares of n machines, and the commands that queue
them. The sweep over three clones is in tests/test_sweeps.py."""

import argparse
import subprocess
import sys

import pytest
import yaml
from conftest import PROJECT_ROOT, load_project_params

from digits.errors import ParamsError
from digits.sweep import (
    grid_points,
    load_grid,
    nested,
    parse_shard,
    queue_command,
    shard_of,
)

GRID = {"train": {"epochs": [10, 20], "dropout": [0.1, 0.2], "hidden_units": [[64], [32, 16]]}}


def test_grid_is_every_combination_last_key_fastest():
    points = grid_points(GRID)
    assert len(points) == 8
    assert points[0] == {"train.epochs": 10, "train.dropout": 0.1, "train.hidden_units": [64]}
    assert points[1] == {"train.epochs": 10, "train.dropout": 0.1, "train.hidden_units": [32, 16]}
    assert points[-1] == {"train.epochs": 20, "train.dropout": 0.2, "train.hidden_units": [32, 16]}


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 9])
def test_shares_are_disjoint_and_cover_the_grid(count):
    points = grid_points(GRID)
    shares = [shard_of(points, index, count) for index in range(1, count + 1)]
    assert sorted(map(repr, sum(shares, []))) == sorted(map(repr, points))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced


def test_shard_syntax():
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "1", "a/b", "1/0", "-1/2"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected i/n"):
            parse_shard(bad)


def test_a_point_becomes_dvc_overrides_and_nested_params():
    point = {"train.epochs": 3, "train.hidden_units": [32, 16], "train.augment.shift_px": 1}
    assert queue_command(point) == [
        *("dvc", "exp", "run", "--queue"),
        *("-S", "train.epochs=3", "-S", "train.hidden_units=[32,16]"),
        *("-S", "train.augment.shift_px=1"),
    ]
    assert nested(point) == {
        "train": {"epochs": 3, "hidden_units": [32, 16], "augment": {"shift_px": 1}}
    }


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"train": {"epoch": [3]}}, "did you mean 'train.epochs'"),
        ({"train": {"epochs": [3, 0]}}, "train.epochs=0: train.epochs: expected 1 to"),
        ({"train": {"epochs": 3}}, "train.epochs: expected a list of the values to try"),
        ({"train": {"epochs": []}}, "train.epochs: expected a list of the values to try"),
        ({"train": {"epochs": [1, 2, 1]}}, "train.epochs: 1 twice; each value once"),
        ({"train": {"hidden_units": [[8], [8]]}}, r"train.hidden_units: \[8\] twice"),
        ({"train": {"hidden_units": [[2_000_000, 2_000_000]]}}, "of memory here"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_a_bad_grid_names_the_file_and_key(tmp_path, grid, message):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(load_project_params()))
    with pytest.raises(ParamsError, match=message) as raised:
        load_grid(path, params)
    assert str(raised.value).startswith(str(path))


def test_the_committed_grid_is_valid_and_dry_run_prints_its_share():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "digits",
            "sweep",
            "presets/grids/2x2.yaml",
            "--shard",
            "2/2",
            "--dry-run",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "dvc exp run --queue -S train.epochs=10 -S train.dropout=0.2",
        "dvc exp run --queue -S train.epochs=20 -S train.dropout=0.2",
    ]
