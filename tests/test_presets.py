"""Presets: every file in presets/ is valid over params.yaml, and its -S args say the same."""

import dataclasses
import shutil
import subprocess

import pytest
import yaml
from conftest import DIGITS, PROJECT_ROOT
from dvc.cli import DvcParserError, parse_args
from dvc.utils.hydra import apply_overrides

from digits import presets
from digits.params import AugmentParams, ParamsError, load_params, parse_params

PRESETS = sorted((PROJECT_ROOT / "presets").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=[path.stem for path in PRESETS])
def test_a_preset_sets_every_augmentation_so_a_new_default_cannot_change_it(path):
    """A preset is a measured run: an augmentation added to params.yaml later must not join it
    unseen (the best preset once inherited square boxes that way)."""
    augment = yaml.safe_load(path.read_text())["train"]["augment"]
    unset = {field.name for field in dataclasses.fields(AugmentParams)} - set(augment)
    if augment.get("low_res_share") == 0:
        unset.discard("low_res_px")  # the blur's size does nothing without the blur
    assert not unset, f"{path.name} leaves train.augment {sorted(unset)} to params.yaml"


def test_overrides_are_dotted_and_free_of_spaces():
    preset = {"train": {"hidden_units": [1024, 1024], "jit_compile": True, "augment": {"a": 1.5}}}
    assert presets.preset_overrides(preset) == [
        "train.hidden_units=[1024,1024]",
        "train.jit_compile=true",
        "train.augment.a=1.5",
    ]


def test_unknown_key_in_preset_is_named(tmp_path):
    preset = tmp_path / "typo.yaml"
    preset.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ParamsError, match=r"train\.epoch: unknown key; did you mean"):
        presets.load_preset(preset, PROJECT_ROOT / "params.yaml")


def test_bad_value_in_preset_is_named(tmp_path):
    preset = tmp_path / "bad.yaml"
    preset.write_text("train:\n  augment:\n    rotation_deg: 90\n")
    with pytest.raises(ParamsError, match=r"train\.augment\.rotation_deg: expected 0 to 45"):
        presets.load_preset(preset, PROJECT_ROOT / "params.yaml")


def test_a_string_that_is_not_one_word_is_quoted_for_hydra():
    assert presets.format_value(["https://example.com/mnist/"], "download.mirrors") == (
        "['https://example.com/mnist/']"
    )


MIRROR_PRESET = "download:\n  mirrors: [https://example.com/mnist/]\n  timeout_s: 5\n"


@pytest.mark.integration
@pytest.mark.parametrize(
    "preset", [*PRESETS, "mirror"], ids=[*(path.stem for path in PRESETS), "mirror"]
)
def test_dvc_applies_preset_args_as_written(preset, tmp_path):
    """What `dvc exp run -S ...` does to params.yaml equals merging the preset file into it."""
    if preset == "mirror":
        preset = tmp_path / "mirror.yaml"
        preset.write_text(MIRROR_PRESET)
    params = tmp_path / "params.yaml"
    shutil.copy(PROJECT_ROOT / "params.yaml", params)
    printed = subprocess.run(
        [DIGITS, "preset", str(preset), "--params", str(params)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert printed[0::2] == ["-S"] * (len(printed) // 2)
    apply_overrides(params, printed[1::2])
    base = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    expected = parse_params(presets.merge_preset(base, yaml.safe_load(preset.read_text())))
    assert load_params(params) == expected


@pytest.mark.integration
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train:\n  epoch: 3\n", "train.epoch: unknown key"),
        ("train: {}\n", "sets no key"),
        ("download:\n  mirrors: ['https://a b/']\n", "a URL cannot contain spaces"),
        ("train:\n  hidden_units: [2000000, 2000000]\n", "of memory here"),
    ],
)
def test_a_preset_that_cannot_be_applied_stops_dvc_exp_run(text, expected, tmp_path):
    """`dvc exp run $(digits preset P)` must not run params.yaml unchanged when P is wrong."""
    preset = tmp_path / "preset.yaml"
    preset.write_text(text)
    result = subprocess.run(
        [DIGITS, "preset", str(preset), "--params", str(PROJECT_ROOT / "params.yaml")],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and str(preset) in result.stderr
    assert expected in result.stderr
    with pytest.raises(DvcParserError):
        parse_args(["exp", "run", *result.stdout.split()])


@pytest.mark.integration
@pytest.mark.parametrize("arguments", [[], ["presets/best.yaml", "--bogus"]])
def test_a_usage_error_stops_dvc_exp_run_too(arguments):
    result = subprocess.run(
        [DIGITS, "preset", *arguments], cwd=PROJECT_ROOT, capture_output=True, text=True
    )

    assert result.returncode == 2 and "digits preset: error:" in result.stderr
    with pytest.raises(DvcParserError):
        parse_args(["exp", "run", *result.stdout.split()])
