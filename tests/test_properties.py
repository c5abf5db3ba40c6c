"""Property-based tests (Hypothesis) of what the stages read: params.yaml, the IDX files and the
prepared arrays. Whatever they hold, reading them gives valid values or the project's own
error, and values that pass validation work in the code that uses them."""

import copy
import io
import math
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from conftest import PROJECT_ROOT, load_project_params
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from digits.data import ArraysError, load_split, split_train_validation
from digits.dropout import dropout_seed
from digits.fetch import candidate_sources
from digits.idx import IdxError, encode_idx, parse_idx
from digits.mnist import MNIST_TRAIN_IMAGES
from digits.params import Params, ParamsError, parse_params, training_memory_bytes
from digits.yamlfile import MAX_NODES, parse_yaml

MEMORY = 64 * 10**9  # a fixed machine, so that results do not depend on where tests run
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROJECT = load_project_params()
PROJECT_TEXT = (PROJECT_ROOT / "params.yaml").read_text()


def key_paths(node, prefix=()) -> list[tuple]:
    """Every path of keys and list indexes in ``node``, the empty path (the root) first."""
    paths = [prefix]
    if isinstance(node, dict | list):
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            paths.extend(key_paths(child, (*prefix, key)))
    return paths


PATHS = key_paths(PROJECT)

# Not 16**5000: integers beyond Python's 4300-digit repr limit break Hypothesis' own reporting
# (test_params covers them: test_integer_too_long_to_print_is_described).
INT_EDGES = [0, 1, -1, 2, 10, 1000, 54_000, 60_000, 60_001, 2**31, 2**32 - 1, 2**32, 2**63]
EDGE_VALUES = INT_EDGES + [
    0.0, -0.0, 0.5, 0.999999, 1e-6, 1e-320, 1e308, math.inf, -math.inf,
    math.nan, True, False, None, "", "0.1", "1e-3", "cosine", "x" * 10_000, "a/b", "..",
    "http://[::1", "https://a:99999/", "https://example.com/mnist/", "http://127.0.0.1:8/",
]  # fmt: skip
scalars = st.one_of(
    st.sampled_from(EDGE_VALUES),
    st.integers(),
    st.integers(min_value=0, max_value=2**33),
    st.floats(),
    st.floats(min_value=0, max_value=1),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)
hashable = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hashable, children, max_size=3)
    ),
    max_leaves=8,
)


def locate(raw, path: tuple):
    """(parent, node) at ``path`` in ``raw``, or None where an earlier edit changed the way."""
    parent, node = None, raw
    for key in path:
        if not isinstance(node, dict | list):
            return None
        try:
            parent, node = node, node[key]
        except (KeyError, IndexError, TypeError):  # TypeError: a list where a mapping was
            return None
    return parent, node


@st.composite
def mutated_params(draw) -> dict:
    """The project's params with one to three random edits: a value replaced (by any type),
    a key deleted, an extra key added, or a value buried in deep nesting."""
    raw = copy.deepcopy(PROJECT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        located = locate(raw, path)
        if located is None:
            continue
        parent, node = located
        edit = draw(st.sampled_from(["replace", "delete", "add", "nest"]))
        if edit == "add" and isinstance(node, dict):
            node[draw(hashable)] = draw(values)
        elif parent is None:  # the root itself: only added to
            continue
        elif edit == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif edit == "nest":
            for _ in range(draw(st.integers(1, 50))):
                node = {path[-1]: node} if draw(st.booleans()) else [node]
            parent[path[-1]] = node
        else:
            parent[path[-1]] = draw(values)
    return raw


def near(value):
    """Values of ``value``'s own type, around the ranges params.py accepts."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(0, 2**33) | st.integers(0, 100) | st.sampled_from(INT_EDGES)
    if isinstance(value, float):
        return st.floats(0, 1) | st.floats(0, 100) | st.sampled_from([0.5, 0.999999, 1e-6])
    if isinstance(value, list) and value and isinstance(value[0], int):
        return st.lists(st.integers(1, 4096) | st.integers(1, 10**7), min_size=1, max_size=4)
    return st.just(value)


@st.composite
def plausible_params(draw) -> dict:
    """The project's train, preprocess and download numbers, each redrawn near its range."""
    raw = copy.deepcopy(PROJECT)
    for section in ("train", "preprocess", "download"):
        for key, value in raw[section].items():
            if draw(st.integers(0, 3)) == 0:  # a few at a time, so that some docs pass
                raw[section][key] = draw(near(value))
    return raw


def check_works_downstream(params: Params) -> None:
    """Use accepted values as the stages do; any exception here fails the property."""
    train_index, validation_index = split_train_validation(
        MNIST_TRAIN_IMAGES, params.preprocess.validation_fraction, params.preprocess.seed
    )
    assert len(train_index) > 0 and len(validation_index) > 0
    train = params.train
    steps = math.ceil(len(train_index) / train.batch_size)  # batches.steps_per_epoch
    assert (train.epochs - train.warmup_epochs) * steps > 0  # the cosine decay's steps
    np.random.seed(train.seed)  # what keras.utils.set_random_seed does with it
    assert all(
        0 <= dropout_seed(train.seed, layer) < 2**31 for layer in range(len(train.hidden_units))
    )
    assert len(train.dropout) == len(train.hidden_units)
    assert all(0 <= rate < 1 for rate in train.dropout)
    assert training_memory_bytes(train.hidden_units, train.batch_size) <= MEMORY
    download = params.download
    for mirror in download.mirrors:
        assert urlparse(mirror).port is None or urlparse(mirror).port < 65536
    assert candidate_sources(None, download.mirrors) == list(download.mirrors)
    stored = [file.stored_name for file in download.files.values()]
    assert len(set(stored)) == len(stored)
    assert all((Path("data/raw") / name).parent == Path("data/raw") for name in stored)
    assert 0 < download.timeout_s <= 3600


@FAST
@given(mutated_params())
def test_any_params_document_gives_params_or_a_params_error(raw):
    try:
        params = parse_params(raw, memory_bytes=MEMORY)
    except ParamsError as error:
        assert len(str(error)) < 600  # values are cut short, never printed whole
        return
    check_works_downstream(params)


@FAST
@given(plausible_params())
def test_plausible_params_are_refused_or_work_downstream(raw):
    try:
        params = parse_params(raw, memory_bytes=MEMORY)
    except ParamsError:
        return
    check_works_downstream(params)


@FAST
@given(
    st.integers(0, 60_000),
    st.sampled_from([0.1, 0.5, 1e-6, 0.999999, 1 / 60_000, 59_999 / 60_000]) | st.floats(0, 1),
    st.integers(0, 2**32 - 1),
)
def test_accepted_validation_fraction_splits_60000_images(batch_size, fraction, seed):
    raw = copy.deepcopy(PROJECT)
    raw["preprocess"].update(validation_fraction=fraction, seed=seed)
    raw["train"]["batch_size"] = max(batch_size, 1)
    try:
        params = parse_params(raw, memory_bytes=MEMORY)
    except ParamsError:
        return
    check_works_downstream(params)


YAML_BITS = st.text(
    alphabet=":-[]{}&*!|>'\"#%@`,?\n\t 0123456789abcxyz.eE+<=~\\é\x00\x85", max_size=12
)


@FAST
@given(
    st.lists(
        st.tuples(st.integers(0, len(PROJECT_TEXT)), st.integers(0, 8), YAML_BITS), max_size=4
    )
)
def test_any_edit_of_the_params_text_gives_params_or_a_params_error(edits):
    text = PROJECT_TEXT
    for position, deleted, inserted in edits:
        text = text[:position] + inserted + text[position + deleted :]
    try:
        params = parse_params(parse_yaml(text), memory_bytes=MEMORY)
    except ParamsError as error:
        assert len(str(error)) < 600
        return
    check_works_downstream(params)


@FAST
@given(st.integers(1, 12), st.integers(1, 12))
def test_alias_expansion_is_capped_exactly_at_max_nodes(levels, width):
    lines, size, total = ["a0: &a0 [1]"], 2, 1 + 1 + 2  # the root, then key and list a0
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
        size = 1 + width * size
        total += 1 + size
    if total <= MAX_NODES:
        assert len(parse_yaml("\n".join(lines))) == levels + 1
        return
    with pytest.raises(ParamsError, match=f"more than {MAX_NODES} values once aliases"):
        parse_yaml("\n".join(lines))


@FAST
@given(
    st.binary(max_size=64)
    | st.builds(
        lambda head, body: head + body,
        st.sampled_from(
            [b"\x00\x00\x08\x01", b"\x00\x00\x08\x03", b"\x00\x00\x08\x04", b"\x00\x00\x09\x01"]
        ),
        st.binary(max_size=40),
    )
    | st.builds(encode_idx, hnp.arrays(np.uint8, hnp.array_shapes(max_dims=3, max_side=6)))
)
def test_any_bytes_parse_as_idx_or_raise_an_idx_error(data):
    try:
        array = parse_idx(data)
    except IdxError:
        event("refused")
        return
    event("parsed")
    assert array.dtype == np.uint8 and encode_idx(array) == data  # nothing read but the file


@FAST
@given(hnp.arrays(np.uint8, hnp.array_shapes(max_dims=3, max_side=6)), st.integers(1, 8))
def test_a_cut_idx_file_is_an_idx_error(array, cut):
    data = encode_idx(array)
    with pytest.raises(IdxError):
        parse_idx(data[: max(len(data) - cut, 0)])


any_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.uint8, np.int64, np.dtype(">f4")]),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=30),
)
images = any_arrays | hnp.arrays(
    np.float32,
    st.tuples(st.integers(0, 3), st.just(28), st.just(28)),
    elements=st.floats(0, 1, width=32) | st.sampled_from([-0.5, 1.5, np.nan, np.inf]),
)
labels = any_arrays | hnp.arrays(
    np.uint8, st.tuples(st.integers(0, 3)), elements=st.integers(0, 12)
)
valid_splits = st.integers(1, 4).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float32, (n, 28, 28), elements=st.floats(0, 1, width=32)),
        hnp.arrays(np.uint8, (n,), elements=st.integers(0, 9)),
    )
)


@FAST
@given(st.tuples(images, labels) | valid_splits)
def test_any_arrays_load_as_a_valid_split_or_raise_an_arrays_error(tmp_path_factory, split):
    x, y = split
    directory = tmp_path_factory.mktemp("split")
    for name, array in (("x_test.npy", x), ("y_test.npy", y)):
        stream = io.BytesIO()
        np.save(stream, array, allow_pickle=False)
        (directory / name).write_bytes(stream.getvalue())
    try:
        x_loaded, y_loaded = load_split(directory, "test")
    except ArraysError:
        event("refused")
        return
    event("loaded")
    assert x_loaded.shape[1:] == (28, 28) and len(x_loaded) == len(y_loaded) > 0
    assert np.all((x_loaded >= 0) & (x_loaded <= 1)) and y_loaded.max() <= 9
    np.testing.assert_array_equal(x_loaded, x)
    np.testing.assert_array_equal(y_loaded, y)
