"""Print the `dvc exp run` arguments that apply a preset: one ``-S key=value`` per key it sets.

    dvc exp run $(digits preset presets/best.yaml)

A preset has the structure of params.yaml and only the keys it overrides. It is checked against
params.yaml first, so a misspelt key or a bad value stops here with the key named, not halfway
through an experiment. Values are printed without spaces, so the shell's word splitting of
``$(...)`` keeps each ``-S`` argument whole. A preset it cannot apply prints ``NOT_APPLIED``
on stdout besides the error on stderr: `dvc exp run` refuses that option and stops, where
empty output would run an experiment of params.yaml unchanged.
"""

import argparse
from pathlib import Path
from typing import Any

from digits.errors import DigitsError
from digits.params import ParamsError, load_params, memory_limit, parse_params
from digits.paths import PARAMS, in_project
from digits.yamlfile import load_yaml, show

NOT_APPLIED = "--preset-not-applied"  # printed instead of overrides: see the docstring


def preset_overrides(preset: dict, prefix: str = "") -> list[str]:
    """Flatten nested ``preset`` into ``dotted.key=value`` overrides, in file order."""
    overrides = []
    for key, value in preset.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            overrides.extend(preset_overrides(value, dotted + "."))
        else:
            overrides.append(f"{dotted}={format_value(value, dotted)}")
    return overrides


def format_value(value: Any, key: str) -> str:
    """A YAML scalar or list as DVC's ``-S`` (Hydra) syntax, with no spaces: a string that is
    not one word in Hydra's quotes, e.g. a mirror's URL."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(format_value(item, key) for item in value) + "]"
    if isinstance(value, str) and value.replace("_", "").isalnum():
        return value
    if isinstance(value, str) and value and not any(c.isspace() or c in "'\\" for c in value):
        return f"'{value}'"
    raise ParamsError(
        f"{key}: {show(value)} cannot be passed to `dvc exp run -S` in one shell word "
        "(spaces, quotes or backslashes); set it in params.yaml instead"
    )


def merge_preset(params: dict, preset: dict) -> dict:
    """Return ``params`` with ``preset``'s keys replaced (nested mappings merged key by key)."""
    merged = dict(params)
    for key, value in preset.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_preset(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_preset(path: Path, params_path: Path) -> dict:
    """Read preset ``path``; raise ``ParamsError`` unless it makes params.yaml valid params."""
    preset = load_yaml(path)
    if not isinstance(preset, dict) or not preset:
        raise ParamsError(f"{path}: expected a mapping of params.yaml keys to override")
    load_params(params_path)  # the base must be valid on its own
    base = load_yaml(params_path)
    parse_params(  # trained here: the model must fit this machine's memory
        merge_preset(base, preset),
        source=f"{params_path} with {path}",
        memory_bytes=memory_limit(),
    )
    return preset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", type=Path)
    parser.add_argument(
        "--params", type=Path, help=f"the params it applies to (default: {PARAMS} in the project)"
    )
    # A usage error (no preset, an unknown option) must stop `dvc exp run $(digits preset ...)`
    # too: NOT_APPLIED on stdout, then argparse's message. Extra arguments, which argparse
    # leaves to the top-level parser, are refused here for the same reason.
    usage_error, parse_known = parser.error, parser.parse_known_args

    def error(message: str):
        print(NOT_APPLIED)
        usage_error(message)

    def parse_known_args(args=None, namespace=None):
        namespace, extras = parse_known(args, namespace)
        if extras:
            error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    parser.error, parser.parse_known_args = error, parse_known_args


def run(args: argparse.Namespace) -> None:
    try:
        preset = load_preset(args.preset, args.params or in_project(PARAMS, "--params"))
        try:
            overrides = preset_overrides(preset)
        except ParamsError as error:
            raise ParamsError(f"{args.preset}: {error}") from None
        if not overrides:
            raise ParamsError(f"{args.preset}: sets no key; a preset lists the keys it changes")
    except DigitsError:
        print(NOT_APPLIED)
        raise
    print(" ".join(f"-S {override}" for override in overrides))
