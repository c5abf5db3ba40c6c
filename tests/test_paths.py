"""The tools' default paths are the ones dvc.yaml gives the stages, and the project root is
found from any directory inside it."""

import shlex

import pytest
import yaml
from conftest import PROJECT_ROOT

from digits.errors import DigitsError
from digits.paths import (
    CONFUSION,
    METRICS,
    MODEL,
    OWN,
    PARAMS,
    PLOT_IMAGES,
    PREPARED,
    RAW,
    in_project,
    project_root,
)


def stage_option(stage: str, option: str) -> str:
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    words = shlex.split(stages[stage]["cmd"])
    return words[words.index(option) + 1]


def test_default_paths_are_the_stages_paths():
    assert stage_option("download", "--out-dir") == str(RAW)
    assert stage_option("preprocess", "--raw-dir") == str(RAW)
    assert stage_option("preprocess", "--out-dir") == str(PREPARED)
    assert stage_option("own", "--own-dir") == str(OWN)
    assert stage_option("train", "--model") == str(MODEL)
    assert stage_option("evaluate", "--confusion") == str(CONFUSION)
    assert stage_option("evaluate", "--metrics") == str(METRICS)
    assert stage_option("evaluate", "--images-dir") == str(PLOT_IMAGES)
    assert (PROJECT_ROOT / PARAMS).is_file()


def test_project_root_is_found_from_a_subdirectory(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "plots" / "images").mkdir(parents=True)
    assert project_root(tmp_path / "plots" / "images") == tmp_path
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside.mkdir()
    assert project_root(outside) == outside


def test_outside_a_project_a_default_path_is_an_error_naming_the_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DigitsError, match=r"no digits project here .* or give --own-dir"):
        in_project(OWN, "--own-dir")
