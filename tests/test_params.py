import copy
import os
import re
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, load_project_params
from dvc.utils.serialize import dumps_yaml
from ruamel.yaml import YAML

from digits.params import (
    ParamsError,
    check_source_url,
    fraction_bounds,
    load_params,
    memory_limit,
    parse_params,
    training_memory_bytes,
    validation_count,
    weight_count,
)
from digits.yamlfile import parse_yaml


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


def error_for(raw, memory_bytes: int = 64 * 10**9) -> str:
    with pytest.raises(ParamsError) as caught:
        parse_params(raw, memory_bytes=memory_bytes)
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


def test_a_compiled_loop_needs_xla():
    raw = with_change("train.compiled_loop", True)
    assert parse_params(raw).train.compiled_loop
    raw["train"]["jit_compile"] = False
    assert error_for(raw) == (
        "params.yaml: train.compiled_loop: expected false while train.jit_compile is false "
        "(the loop is compiled by XLA), got True"
    )


def test_integer_is_accepted_where_a_number_is_expected():
    assert parse_params(with_change("train.learning_rate", 1)).train.learning_rate == 1.0


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("train.epochs", -3, "train.epochs: expected 1 to 10000, got -3"),
        ("train.epochs", 2.5, "train.epochs: expected an integer"),
        ("train.epochs", True, "train.epochs: expected an integer"),
        ("train.epochs", ..., "train.epochs: missing"),
        ("train.hidden_units", [], "train.hidden_units: expected a list of 1 to 64"),
        ("train.hidden_units", [64, 0], "train.hidden_units[1]: expected a positive integer"),
        ("train.dropout", 1.0, "train.dropout: expected a number in [0, 1)"),
        ("train.dropout", [0.1, 1.0], "train.dropout[1]: expected a number in [0, 1)"),
        ("train.dropout", [0.1, 0.2, 0.3], "train.dropout: expected one rate or a list of 2"),
        ("train.learning_rate", "1e-3", "train.learning_rate: expected a number"),
        ("train.lr_schedule", "linear", "train.lr_schedule: expected one of constant, cosine"),
        ("train.jit_compile", "yes", "train.jit_compile: expected true or false"),
        ("train.precision", "float16", "train.precision: expected one of float32, mixed_bfloat16"),
        ("train.seed", 2**32, "train.seed: expected 0 to 4294967295 (32 bits), got 4294967296"),
        ("preprocess.seed", -1, "preprocess.seed: expected 0 to 4294967295"),
        ("train.epochs", 10**6, "train.epochs: expected 1 to 10000"),
        ("train.augment.thick_share", 1.5, "train.augment.thick_share: expected 0 to 1"),
        ("train.hidden_units", [64] * 65, "train.hidden_units: expected a list of 1 to 64"),
        ("train.batch_size", 60_001, "train.batch_size: expected 1 to 60000, the training file"),
        ("train.steps_per_execution", 2**31, "train.steps_per_execution: expected 1 to 10000"),
        ("train.learning_rate", 16**300, "train.learning_rate: expected a number"),
        ("download.timeout_s", 1e300, "download.timeout_s: expected seconds, > 0 and <= 3600"),
        ("download.files.train_images.name", "a/b.gz", "train_images.name: expected a file name"),
        ("download.files.train_images.name", "..", "train_images.name: expected a file name"),
        ("download.files.train_images.name", "x\0.gz", "train_images.name: expected a file name"),
        ("download.mirrors", ["http://[::1"], "download.mirrors[0]: not a valid URL"),
        ("download.mirrors", ["https://a:99999/"], "download.mirrors[0]: not a valid URL"),
        ("download.mirrors", ["https://a b/"], "download.mirrors[0]: a URL cannot contain"),
        ("download.mirrors", ["https://:80/"], "download.mirrors[0]: expected an https://"),
        (
            "preprocess.validation_fraction",
            1,
            "preprocess.validation_fraction: expected in (0, 1)",
        ),
        ("preprocess", ..., "preprocess: missing"),
        ("download.files.test_labels.md5", "abc", "download.files.test_labels.md5: expected 32"),
        ("download.mirrors", ["ftp://example.com/"], "download.mirrors[0]: expected an https://"),
        ("download.mirrors", ["http://example.com/"], "download.mirrors[0]: expected an https://"),
        ("evaluate.misclassified_shown", 0, "evaluate.misclassified_shown: expected 1 to 400"),
    ],
)
def test_bad_value_names_the_key_and_what_was_expected(path, value, expected):
    assert expected in error_for(with_change(path, value))


def test_preprocess_validation_fraction_must_leave_both_splits_non_empty():
    message = error_for(with_change("preprocess.validation_fraction", 0.999999))
    assert message == (
        "params.yaml: preprocess.validation_fraction: 0.999999 of 60000 images leaves no "
        "training images: use a value from 0.000017 to 0.999983"
    )
    assert "leaves no validation images" in error_for(
        with_change("preprocess.validation_fraction", 1e-6)
    )


@pytest.mark.parametrize("fraction", [0.000017, 0.999983])
def test_validation_fraction_bounds_the_message_suggests_are_accepted(fraction):
    params = parse_params(with_change("preprocess.validation_fraction", fraction))
    assert params.preprocess.validation_fraction == fraction


def test_one_image_cannot_be_split():
    with pytest.raises(ParamsError, match="1 images cannot be split in two"):
        validation_count(1, 0.5)


@pytest.mark.parametrize("n_examples", [2, 3, 7, 200, 60_000, 999_999])
def test_fraction_bounds_leave_one_image_on_each_side(n_examples):
    low, high = fraction_bounds(n_examples)
    assert validation_count(n_examples, float(low)) == 1
    assert validation_count(n_examples, float(high)) == n_examples - 1


def test_fraction_bounds_for_mnist_worked_out_by_hand():
    # 1 / 60000 = 0.0000166..., 59999 / 60000 = 0.9999833...
    assert fraction_bounds(60_000) == ("0.000017", "0.999983")


def test_largest_seed_keras_accepts_is_accepted():
    assert parse_params(with_change("train.seed", 2**32 - 1)).train.seed == 2**32 - 1


def test_batch_size_may_be_the_whole_training_file():
    assert parse_params(with_change("train.batch_size", 60_000)).train.batch_size == 60_000


def test_two_files_with_one_stored_name_are_refused():
    message = error_for(with_change("download.files.test_labels.name", "t10k-images-idx3-ubyte"))
    assert "download.files.test_labels.name: expected a name that differs from " in message
    assert "download.files.test_images.name" in message


def test_weight_count_worked_out_by_hand():
    # 784 inputs -> 512 -> 256 -> 10, each layer with a bias per unit
    assert weight_count((512, 256)) == 785 * 512 + 513 * 256 + 257 * 10 == 535_818


def test_training_memory_worked_out_by_hand():
    # 1 hidden unit: 785 + 2 * 10 = 805 weights; 784 + 1 + 10 = 795 units a batch of 2
    expected = 4 * (6 * 805 + 4 * 2 * 795) + 2**30
    assert training_memory_bytes((1,), batch_size=2) == expected


def two_million_unit_layer() -> dict:
    """The project's params with one hidden layer of 2,000,000 units, at a batch of 360 fixed
    here, so that the estimates below do not move with the default's batch."""
    raw = with_change("train.hidden_units", [2_000_000])
    raw["train"]["batch_size"] = 360
    return raw


def test_model_too_large_for_memory_is_refused_with_the_estimate():
    message = error_for(two_million_unit_layer(), memory_bytes=16 * 10**9)
    assert message.startswith(
        "params.yaml: train.hidden_units: training [2000000] with batch_size 360 needs about "
        "50.8 GB (1,590,000,010 weights"
    )
    assert message.endswith(
        "more than the 16.0 GB of memory here: use fewer or narrower hidden layers, or a smaller "
        "train.batch_size"
    )


def test_model_that_fits_in_memory_is_accepted():
    raw = two_million_unit_layer()
    assert parse_params(raw, memory_bytes=52 * 10**9).train.hidden_units == (2_000_000,)


def test_without_a_memory_limit_nothing_depends_on_the_machine():
    """The stages that do not train read params that only a larger machine could train."""
    raw = with_change("train.hidden_units", [2_000_000_000])
    assert parse_params(raw).train.hidden_units == (2_000_000_000,)


def test_memory_limit_is_at_most_the_physical_memory():
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < memory_limit() <= physical


def test_readme_misspelt_key_in_place_is_reported_as_unknown(tmp_path, monkeypatch):
    # README "When something goes wrong": `epochs:` edited to `epoch:` in params.yaml
    text = (PROJECT_ROOT / "params.yaml").read_text()
    misspelt = re.sub(r"^  epochs:", "  epoch:", text, count=1, flags=re.MULTILINE)
    assert misspelt != text
    (tmp_path / "params.yaml").write_text(misspelt)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError) as caught:
        load_params(Path("params.yaml"))
    assert str(caught.value).startswith(
        "params.yaml: train.epoch: unknown key; did you mean 'train.epochs'?"
    )
    (tmp_path / "params.yaml").write_text(misspelt.replace("  epoch:", "  epochs:"))
    assert load_params(Path("params.yaml")).train.epochs >= 1  # the suggested fix works


def test_unknown_key_is_reported_before_a_missing_one_in_another_section():
    raw = with_change("download.retries", ...)
    raw["evaluate"]["misclassified"] = 5
    assert error_for(raw).startswith("params.yaml: evaluate.misclassified: unknown key; did ")


def test_missing_key_says_where_to_add_it():
    assert "train.epochs: missing (add it to the train section)" in error_for(
        with_change("train.epochs", ...)
    )


@pytest.mark.parametrize("misspelt", ["epoch", "EPOCHS", "Epoch"])
def test_unknown_key_suggests_the_closest_valid_one(misspelt):
    message = error_for(with_change(f"train.{misspelt}", 3))
    assert f"train.{misspelt}: unknown key" in message
    assert "did you mean 'train.epochs'?" in message


def test_unknown_section_is_rejected():
    message = error_for(with_change("trian", {"epochs": 3}))
    assert "trian: unknown key" in message
    assert "'train'" in message


def test_unparsable_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: [epochs: 3\n")
    with pytest.raises(ParamsError, match=r"params.yaml: line 2, column 1: not valid YAML"):
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


def test_malformed_url_is_one_error_naming_the_key():
    with pytest.raises(ParamsError) as caught:
        check_source_url("http://[::1", "download.mirrors[0]")
    assert str(caught.value) == (
        "params.yaml: download.mirrors[0]: not a valid URL (Invalid IPv6 URL), got 'http://[::1'"
    )
    with pytest.raises(ParamsError, match="k: not a valid URL"):
        check_source_url("https://a..b/", "k")


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "file:///etc/", "https://", 42])
def test_other_sources_are_refused(url):
    with pytest.raises(ParamsError, match="k: expected"):
        check_source_url(url, "k")


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each anchor is a list of nine aliases of the one before."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    return "\n".join(lines) + f"\ntrain: {{hidden_units: *a{levels}}}\n"


def test_alias_bomb_is_refused_unexpanded_with_a_short_message():
    with pytest.raises(ParamsError) as caught:  # expanded, it would be 10^9 values
        parse_yaml(alias_bomb())
    message = str(caught.value)
    assert message.startswith("params.yaml: line ")
    assert "more than 10000 values once aliases are expanded" in message
    assert len(message) < 200


def test_recursive_alias_is_refused():
    with pytest.raises(ParamsError, match=r"line 1: alias \*a refers to itself"):
        parse_yaml("a: &a [*a]\n")


def test_deep_nesting_is_refused():
    with pytest.raises(ParamsError, match="nested more than 20 levels deep"):
        parse_yaml("a: " + "[" * 1000 + "]" * 1000 + "\n")


def test_a_few_aliases_are_fine():
    text = "train: {seed: &s 42}\npreprocess: {seed: *s}\n"
    assert parse_yaml(text) == {"train": {"seed": 42}, "preprocess": {"seed": 42}}


def test_duplicate_key_is_refused_with_both_lines():
    text = "train:\n  epochs: 3\n  batch_size: 8\n  epochs: 5\n"
    with pytest.raises(ParamsError) as caught:
        parse_yaml(text)
    assert str(caught.value) == (
        "params.yaml: train.epochs: duplicate key (lines 2 and 4); delete one of them"
    )


SPELLINGS = (
    "1e-05 3e-3 1E3 -1E-3 1.e3 +.5 .5 1. 1.5e+3 1e+16 .inf -.inf .NaN 010 09 007 0o10 0x1f 0b101 "
    "1_000 +12 -0 true False TRUE yes no on off y 1:30 ~ null 2024-01-01 0x e3 1.5.5"
).split()


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_value_is_read_as_dvc_reads_it(spelling):
    """DVC reads params.yaml with ruamel.yaml as YAML 1.2, and `dvc exp run -S` writes it so
    (1e-05); PyYAML's YAML 1.1 would read some of these differently (010 as 8, yes as true)."""
    text = f"key: {spelling}\n"
    dvc_reads = YAML(typ="safe").load(text)["key"]

    ours = parse_yaml(text)["key"]

    assert (type(ours), repr(ours)) == (type(dvc_reads), repr(dvc_reads))


def test_a_value_dvc_writes_is_read_back():
    text = dumps_yaml({"train": {"weight_decay": 0.00001, "learning_rate": 3e-3}})

    assert parse_yaml(text) == {"train": {"weight_decay": 0.00001, "learning_rate": 0.003}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "train:\n  hidden_units: [512, 256\n  dropout: 0.2\n",
            "params.yaml: line 3, column 10: not valid YAML: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence from line 2, column 17)",
        ),
        (
            "train:\n\tseed: 1\n",
            "params.yaml: line 2, column 1: not valid YAML: found character '\\t' that cannot "
            "start any token (while scanning for the next token)",
        ),
    ],
)
def test_a_syntax_error_is_one_line_with_where(text, expected):
    with pytest.raises(ParamsError) as caught:
        parse_yaml(text)

    assert str(caught.value) == expected


def test_merge_key_overrides_are_not_duplicates():
    text = "base: &b {x: 1, y: 2}\nother: {<<: *b, y: 3}\n"
    assert parse_yaml(text)["other"] == {"x": 1, "y": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed: 2024-13-45\n", "a value YAML cannot read: month must be in 1..12"),
        ("seed: " + "9" * 5000 + "\n", "a value YAML cannot read: Exceeds the limit"),
        ("a: !!python/object:os.system {}\n", "not valid YAML: could not determine a constructor"),
    ],
)
def test_values_yaml_cannot_construct_are_params_errors(text, expected):
    with pytest.raises(ParamsError) as caught:
        parse_yaml(text)
    assert expected in str(caught.value)
    assert "set_int_max_str_digits" not in str(caught.value)


def test_huge_value_is_cut_short_in_the_message():
    message = error_for(with_change("train.lr_schedule", "x" * 10**6))
    assert message.startswith("params.yaml: train.lr_schedule: expected one of constant, cosine")
    assert len(message) < 200


def test_integer_too_long_to_print_is_described():
    message = error_for(with_change("train.seed", 16**5000))
    assert (
        "train.seed: expected 0 to 4294967295 (32 bits), got an integer of 20001 bits" in message
    )


def test_file_larger_than_the_cap_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# padding\n" * 20_000)
    with pytest.raises(ParamsError, match=r"params.yaml: larger than 128 KiB"):
        load_params(path)


def test_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"train:\n  seed: \xff\n")
    with pytest.raises(ParamsError, match=r"not UTF-8 text \(byte 0xff at offset 15\)"):
        load_params(path)


def test_fifo_or_directory_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(ParamsError, match="fifo.yaml: not a regular file"):
        load_params(tmp_path / "fifo.yaml")
    with pytest.raises(ParamsError, match="not a regular file"):
        load_params(tmp_path)
