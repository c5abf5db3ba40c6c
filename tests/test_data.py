import numpy as np
import pytest

from digits.data import ArraysError, load_split, save_split, scale_pixels, split_train_validation
from digits.params import ParamsError


def test_scale_pixels_maps_0_255_to_0_1_float32():
    scaled = scale_pixels(np.array([[0, 51, 255]], dtype=np.uint8))
    assert scaled.dtype == np.float32
    assert scaled.tolist() == [[0.0, pytest.approx(0.2), 1.0]]


def test_scale_pixels_refuses_anything_but_uint8():
    with pytest.raises(ValueError, match="expected uint8"):
        scale_pixels(np.array([0.5]))


def test_split_is_a_seeded_partition():
    train, validation = split_train_validation(100, 0.1, seed=7)
    assert len(validation) == 10
    assert sorted(np.concatenate([train, validation]).tolist()) == list(range(100))
    again = split_train_validation(100, 0.1, seed=7)
    assert np.array_equal(again[1], validation)
    assert not np.array_equal(split_train_validation(100, 0.1, seed=8)[1], validation)


def test_split_refuses_an_empty_side_with_the_fractions_that_work():
    with pytest.raises(ParamsError) as caught:  # a DigitsError: one `error:` line
        split_train_validation(5, 0.01, seed=0)
    assert str(caught.value) == (
        "params.yaml: preprocess.validation_fraction: 0.01 of 5 images leaves no validation "
        "images: use a value from 0.2 to 0.8"
    )
    with pytest.raises(ParamsError, match="0.999999 of 60000 images leaves no training images"):
        split_train_validation(60_000, 0.999999, seed=0)
    with pytest.raises(ParamsError, match=r"^other\.yaml: preprocess\.validation_fraction: "):
        split_train_validation(5, 0.01, seed=0, source="other.yaml")  # the stage's --params


def test_save_then_load_round_trips(tmp_path):
    x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    y = np.array([1, 2, 3], dtype=np.uint8)
    save_split(tmp_path, "test", x, y)
    loaded_x, loaded_y = load_split(tmp_path, "test")
    assert np.array_equal(loaded_x, x) and np.array_equal(loaded_y, y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_test.npy", "y_test.npy"]
    assert not loaded_x.flags.writeable and not loaded_y.flags.writeable  # mapped from the files


def test_saved_bytes_are_deterministic(tmp_path):
    x = np.zeros((2, 28, 28), np.float32)
    y = np.zeros(2, np.uint8)
    save_split(tmp_path / "a", "train", x, y)
    save_split(tmp_path / "b", "train", x, y)
    for name in ("x_train.npy", "y_train.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_missing_split_names_file_and_producing_stage(tmp_path):
    with pytest.raises(ArraysError, match=r"x_train.npy: missing; .*dvc repro preprocess"):
        load_split(tmp_path, "train")


def test_corrupt_split_is_reported(tmp_path):
    save_split(tmp_path, "test", np.zeros((2, 28, 28), np.float32), np.zeros(2, np.uint8))
    (tmp_path / "x_test.npy").write_bytes(b"not numpy")
    with pytest.raises(ArraysError, match="x_test.npy: not a readable .npy array"):
        load_split(tmp_path, "test")


def test_pickled_object_arrays_are_refused(tmp_path):
    np.save(tmp_path / "x_test.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y_test.npy", np.zeros(1, np.uint8))
    with pytest.raises(ArraysError, match="x_test.npy: not a readable"):
        load_split(tmp_path, "test")


def test_wrong_dtype_is_reported(tmp_path):
    save_split(tmp_path, "test", np.zeros((2, 28, 28), np.float64), np.zeros(2, np.uint8))
    with pytest.raises(ArraysError, match=r"expected float32 of shape \(n, 28, 28\), got float64"):
        load_split(tmp_path, "test")


def test_count_mismatch_is_reported(tmp_path):
    save_split(tmp_path, "test", np.zeros((2, 28, 28), np.float32), np.zeros(3, np.uint8))
    with pytest.raises(ArraysError, match="has 2 images but y_test.npy has 3 labels"):
        load_split(tmp_path, "test")


def saved(tmp_path, x=None, y=None):
    """Save a valid 3-image test split with ``x`` or ``y`` replaced; return its directory."""
    x = np.full((3, 28, 28), 0.5, np.float32) if x is None else x
    y = np.array([0, 5, 9], np.uint8) if y is None else y
    save_split(tmp_path, "test", x, y)
    return tmp_path


def test_labels_outside_0_9_are_refused_with_the_first_one(tmp_path):
    saved(tmp_path, y=np.array([3, 10, 255], np.uint8))
    with pytest.raises(ArraysError) as caught:
        load_split(tmp_path, "test")
    assert str(caught.value) == (
        f"{tmp_path / 'y_test.npy'}: label 10 at index 1 is not a digit 0-9; "
        "it is written by the preprocess stage: run `dvc repro preprocess`"
    )


def test_images_of_the_wrong_shape_are_refused(tmp_path):
    saved(tmp_path, x=np.zeros((3, 32, 32), np.float32))
    with pytest.raises(
        ArraysError,
        match=r"x_test.npy: expected float32 of shape \(n, 28, 28\), got float32 \(3, 32, 32\);"
        r" .*dvc repro preprocess",
    ):
        load_split(tmp_path, "test")


def test_labels_of_the_wrong_shape_are_refused(tmp_path):
    saved(tmp_path, y=np.zeros((3, 1), np.uint8))
    with pytest.raises(ArraysError, match=r"y_test.npy: expected uint8 of shape \(n,\), got"):
        load_split(tmp_path, "test")


@pytest.mark.parametrize(
    ("value", "shown"), [(np.nan, "nan"), (np.inf, "inf"), (1.5, "1.5"), (-0.25, "-0.25")]
)
def test_pixels_outside_0_1_or_not_finite_are_refused(tmp_path, value, shown):
    x = np.full((3, 28, 28), 0.5, np.float32)
    x[2, 27, 0] = value
    saved(tmp_path, x=x)
    with pytest.raises(ArraysError) as caught:
        load_split(tmp_path, "test")
    assert str(caught.value).startswith(
        f"{tmp_path / 'x_test.npy'}: image 2 has a pixel value of {shown}, expected values from "
        "0 to 1; it is written by the preprocess stage: run `dvc repro preprocess`"
    )


def test_pixels_exactly_0_and_1_are_accepted(tmp_path):
    x = np.zeros((3, 28, 28), np.float32)
    x[1] = 1.0
    x_loaded, _ = load_split(saved(tmp_path, x=x), "test")
    assert np.array_equal(x_loaded, x)


def test_empty_split_is_refused(tmp_path):
    saved(tmp_path, x=np.zeros((0, 28, 28), np.float32), y=np.zeros(0, np.uint8))
    with pytest.raises(ArraysError, match="hold no images; it is written by the preprocess"):
        load_split(tmp_path, "test")
