"""Print the `dvc exp run` arguments that apply a preset: one ``-S key=value`` per key it sets.

    dvc exp run $(digits preset presets/best.yaml)

A preset has the structure of params.yaml and only the keys it overrides. It is checked against
params.yaml first, so a misspelt key or a bad value stops here with the key named, not halfway
through an experiment. Values are printed without spaces, so the shell's word splitting of
``$(...)`` keeps each ``-S`` argument whole.
"""

import argparse
from pathlib import Path
from typing import Any

from digits.params import ParamsError, load_params, parse_params
from digits.paths import PARAMS, in_project
from digits.yamlfile import load_yaml


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
    """A YAML scalar or list as DVC's ``-S`` (Hydra) syntax, with no spaces."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(format_value(item, key) for item in value) + "]"
    if isinstance(value, str) and value.replace("_", "").isalnum():
        return value
    raise ParamsError(f"{key}: expected a number, true/false, a word or a list, got {value!r}")


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
    parse_params(merge_preset(base, preset), source=f"{params_path} with {path}")
    return preset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", type=Path)
    parser.add_argument(
        "--params", type=Path, help=f"the params it applies to (default: {PARAMS} in the project)"
    )


def run(args: argparse.Namespace) -> None:
    overrides = preset_overrides(load_preset(args.preset, args.params or in_project(PARAMS)))
    print(" ".join(f"-S {override}" for override in overrides))
