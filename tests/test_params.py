import copy

import pytest
from conftest import PROJECT_ROOT, load_project_params

from digits.params import ParamsError, check_source_url, load_params, parse_params


def with_change(path: str, value) -> dict:
    """The project's params with dotted ``path`` set to ``value`` (``...`` deletes it)."""
    params = copy.deepcopy(load_project_params())
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return params


def error_for(raw) -> str:
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    return str(caught.value)


def test_project_params_are_valid():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params.train.epochs >= 1
    assert len(params.train.dropout) == len(params.train.hidden_units)
    assert set(params.download.files) == {
        "train_images",
        "train_labels",
        "test_images",
        "test_labels",
    }


def test_single_dropout_applies_to_every_layer():
    params = parse_params(with_change("train.hidden_units", [64, 32, 16]))
    rate = load_project_params()["train"]["dropout"]
    assert params.train.dropout == (rate, rate, rate)


def test_integer_is_accepted_where_a_number_is_expected():
    assert parse_params(with_change("train.learning_rate", 1)).train.learning_rate == 1.0


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("train.epochs", -3, "train.epochs: expected >= 1, got -3"),
        ("train.epochs", 2.5, "train.epochs: expected an integer"),
        ("train.epochs", True, "train.epochs: expected an integer"),
        ("train.epochs", ..., "train.epochs: missing"),
        ("train.hidden_units", [], "train.hidden_units: expected a non-empty list"),
        ("train.hidden_units", [64, 0], "train.hidden_units[1]: expected a positive integer"),
        ("train.dropout", 1.0, "train.dropout[0]: expected a number in [0, 1)"),
        ("train.dropout", [0.1, 0.2, 0.3], "train.dropout: expected one rate or a list of 2"),
        ("train.learning_rate", "1e-3", "train.learning_rate: expected a number"),
        ("train.lr_schedule", "linear", "train.lr_schedule: expected one of constant, cosine"),
        ("train.jit_compile", "yes", "train.jit_compile: expected true or false"),
        (
            "train.training_loop",
            "fast",
            "train.training_loop: expected one of in_graph, keras_fit",
        ),
        ("preprocess.validation_fraction", 1, "preprocess.validation_fraction: expected between"),
        ("preprocess", ..., "preprocess: missing"),
        ("download.files.test_labels.md5", "abc", "download.files.test_labels.md5: expected 32"),
        ("download.mirrors", ["ftp://example.com/"], "download.mirrors[0]: expected an https://"),
        ("download.mirrors", ["http://example.com/"], "download.mirrors[0]: expected an https://"),
        ("evaluate.misclassified_shown", 0, "evaluate.misclassified_shown: expected 1 to 400"),
    ],
)
def test_bad_value_names_the_key_and_what_was_expected(path, value, expected):
    assert expected in error_for(with_change(path, value))


def test_unknown_key_suggests_the_closest_valid_one():
    message = error_for(with_change("train.epoch", 3))
    assert "train.epoch: unknown key" in message
    assert "did you mean 'train.epochs'?" in message


def test_unknown_section_is_rejected():
    message = error_for(with_change("trian", {"epochs": 3}))
    assert "trian: unknown key" in message
    assert "'train'" in message


def test_unparsable_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: [epochs: 3\n")
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML"):
        load_params(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "params.yaml")


def test_document_that_is_not_a_mapping_is_rejected():
    assert "expected a mapping" in error_for(["train"])


@pytest.mark.parametrize(
    "url", ["https://example.com/mnist/", "http://127.0.0.1:8000/", "http://localhost/x/"]
)
def test_https_and_loopback_http_sources_are_accepted(url):
    assert check_source_url(url, "k") == url


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "file:///etc/", "https://", 42])
def test_other_sources_are_refused(url):
    with pytest.raises(ParamsError, match="k: expected"):
        check_source_url(url, "k")
