"""Queue one machine's share of a parameter grid as DVC experiments.

    digits sweep presets/grids/2x2.yaml --shard 1/2 && dvc queue start     # machine 1 of 2
    digits sweep presets/grids/2x2.yaml --shard 2/2 && dvc queue start     # machine 2 of 2

A grid file has the structure of params.yaml; each key it sets holds a list of the values to
try, and the grid is every combination, in file order (a list-valued param such as
``train.hidden_units`` takes a list of lists). Share i of n is every n-th point starting at the
i-th, so n machines given the same file and commit queue disjoint shares that together cover the
grid. Every point is checked against params.yaml before anything is queued; each is queued with
``dvc exp run --queue -S key=value ...``. ``--dry-run`` prints those commands instead.
"""

import argparse
import itertools
import logging
import shlex
from pathlib import Path
from typing import Any

from digits.errors import DigitsError
from digits.params import ParamsError, load_params, memory_limit, parse_params
from digits.paths import PARAMS, project_root
from digits.presets import format_value, merge_preset
from digits.yamlfile import load_yaml


def grid_axes(grid: dict, prefix: str = "") -> list[tuple[str, list]]:
    """(dotted key, values to try) for every list in nested ``grid``, in file order."""
    axes = []
    for key, value in grid.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            axes.extend(grid_axes(value, dotted + "."))
        elif isinstance(value, list) and value:
            repeated = next((v for i, v in enumerate(value) if v in value[:i]), None)
            if repeated is not None:
                raise ParamsError(
                    f"{dotted}: {repeated!r} twice; each value once, or it runs twice"
                )
            axes.append((dotted, value))
        else:
            raise ParamsError(f"{dotted}: expected a list of the values to try, got {value!r}")
    return axes


def grid_points(grid: dict) -> list[dict[str, Any]]:
    """Every combination of the grid's values, ``{dotted key: value}``, the last key fastest."""
    axes = grid_axes(grid)
    keys = [key for key, _ in axes]
    combinations = itertools.product(*(values for _, values in axes))
    return [dict(zip(keys, values, strict=True)) for values in combinations]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 1 <= i <= n."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise argparse.ArgumentTypeError(f"expected i/n with 1 <= i <= n (e.g. 1/2), got {text!r}")
    return int(index), int(count)


def shard_of(points: list, index: int, count: int) -> list:
    """Share ``index`` (1-based) of ``count``: points index-1, index-1+count, ..."""
    return points[index - 1 :: count]


def nested(point: dict[str, Any]) -> dict:
    """``{"train.epochs": 3}`` -> ``{"train": {"epochs": 3}}``."""
    tree: dict = {}
    for dotted, value in point.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def overrides(point: dict[str, Any]) -> list[str]:
    """The point as ``key=value`` overrides in DVC's ``-S`` syntax."""
    return [f"{key}={format_value(value, key)}" for key, value in point.items()]


def queue_command(point: dict[str, Any]) -> list[str]:
    """The ``dvc exp run --queue -S key=value ...`` command that queues ``point``."""
    return ["dvc", "exp", "run", "--queue", *(arg for o in overrides(point) for arg in ("-S", o))]


def load_grid(path: Path, params_path: Path) -> list[dict[str, Any]]:
    """The points of grid file ``path``; raise ``ParamsError`` unless each makes valid params."""
    grid = load_yaml(path)
    if not isinstance(grid, dict) or not grid:
        raise ParamsError(f"{path}: expected a mapping of params.yaml keys to lists of values")
    load_params(params_path)  # the base must be valid on its own
    base = load_yaml(params_path)
    try:
        points = grid_points(grid)
    except ParamsError as error:
        raise ParamsError(f"{path}: {error}") from error
    for point in points:
        parse_params(  # queued here, trained here: the model must fit this machine's memory
            merge_preset(base, nested(point)),
            source=f"{path}: {' '.join(overrides(point))}",
            memory_bytes=memory_limit(),
        )
    return points


def queue_experiments(root: Path, points: list[dict[str, Any]]) -> None:
    """``dvc exp run --queue -S ...`` in project ``root`` for each point."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    # The queue's broker is a local directory; its library's "No hostname was supplied" is noise.
    logging.getLogger("kombu").setLevel(logging.ERROR)
    with Repo(str(root)) as repo:
        for point in points:
            try:
                repo.experiments.run(queue=True, params=overrides(point))
            except DvcException as error:
                raise DigitsError(f"dvc exp run --queue: {error}") from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grid", type=Path, help="a grid file: params.yaml keys, lists of values")
    parser.add_argument(
        "--shard", type=parse_shard, default=(1, 1), help="i/n: this machine's share (default 1/1)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, queue nothing")


def run(args: argparse.Namespace) -> None:
    root = project_root()
    points = load_grid(args.grid, root / PARAMS)
    share = shard_of(points, *args.shard)
    for point in share:
        print(shlex.join(queue_command(point)))
    if not args.dry_run:
        queue_experiments(root, share)
        index, count = args.shard
        print(f"queued {len(share)} of the grid's {len(points)} points (share {index}/{count})")
