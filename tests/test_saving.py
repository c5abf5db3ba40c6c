"""Saving gives the same bytes for the same model; loading gives the same predictions."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import ALL_OPTIONS, TINY, random_data, trained

from digits.saving import ModelError, load_model, save_model


def test_save_load_round_trip_keeps_predictions_and_bytes(tmp_path):
    model, _ = trained(TINY)
    x, _ = random_data(8, 3)
    save_model(model, tmp_path / "a.keras")
    save_model(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    loaded = load_model(tmp_path / "a.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_model_with_every_option_loads_in_safe_mode(tmp_path):
    # Without XLA: a compiled predict may differ from the plain one in the last bits.
    model, _ = trained(dataclasses.replace(ALL_OPTIONS, jit_compile=False))
    save_model(model, tmp_path / "model.keras")
    x, _ = random_data(4, 3)
    loaded = load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_load_model_missing_file_names_it_and_the_stage(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="model.keras: model file missing; .* `dvc repro train`"):
        load_model(Path("data/model.keras"))


def test_a_model_path_outside_the_pipeline_gets_no_dvc_advice(tmp_path):
    (tmp_path / "a-directory.keras").mkdir()
    (tmp_path / "params.yaml").write_text("train: {}\n")
    expected = {
        "absent.keras": "absent.keras: model file missing; check the path$",
        "a-directory.keras": "a-directory.keras: a directory, not a model file",
        "params.yaml": "params.yaml: cannot load .* expected a model that the train stage saved",
    }
    for name, message in expected.items():
        with pytest.raises(ModelError, match=message) as caught:
            load_model(tmp_path / name)
        assert "dvc" not in str(caught.value)


def test_a_model_of_other_shapes_is_refused(tmp_path):
    import keras

    other = keras.Sequential(
        [keras.Input(shape=(32, 32)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    save_model(other, tmp_path / "other.keras")
    with pytest.raises(
        ModelError, match=r"other.keras: a model from \(32, 32\) pictures to 3 classes"
    ):
        load_model(tmp_path / "other.keras")
