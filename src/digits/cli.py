"""The ``digits`` command: the tools around the pipeline, one subcommand each.

    digits predict IMAGE...            classify your own digit pictures
    digits add IMAGE... --label 7      file pictures under their true label in data/own
    digits compare --base main         compare results with a revision, gate regressions
    digits bench                       training speed against plain Keras and the hardware
    digits preset presets/best.yaml    the `dvc exp run` arguments that apply a preset
    digits serve                       a web page: draw a digit, see the guess and the results
    digits share                       share trainings through the DVC remote (run cache)
    digits sweep GRID.yaml --shard 1/2 queue one machine's share of a parameter grid

The pipeline itself runs with `dvc repro` (stages/*.py).
"""

import argparse
import sys
from types import ModuleType

from digits import bench, compare, own, predict, presets, runcache, serve, sweep
from digits.stage import run_tool

COMMANDS: dict[str, ModuleType] = {
    "predict": predict,
    "add": own,
    "compare": compare,
    "bench": bench,
    "preset": presets,
    "serve": serve,
    "share": runcache,
    "sweep": sweep,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digits",
        description=__doc__.splitlines()[0],
        epilog="`digits COMMAND --help` describes each command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        summary = module.__doc__.strip().splitlines()[0]
        command = commands.add_parser(
            name,
            help=summary,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(run_tool(args.run, args))
