"""Load and validate ``params.yaml``: the one place that knows its keys, types and ranges.

Every stage calls ``load_params`` first, so a wrong value stops the pipeline before any data is
read, with a message naming the key (``train.epochs``) and what was expected. A value passes
only if the code downstream accepts it: seeds fit Keras, the split leaves both sides non-empty,
and, where training happens (the train stage, `digits bench`, `digits preset` and `digits
sweep`), the model fits in memory.
"""

import dataclasses
import difflib
import functools
import ipaddress
import itertools
import math
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from digits.errors import ParamsError
from digits.mnist import IMAGE_SHAPE, MNIST_TRAIN_IMAGES, N_CLASSES
from digits.yamlfile import load_yaml, show

MNIST_FILES = ("train_images", "train_labels", "test_images", "test_labels")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16")  # Keras dtype policies
BAD_PICTURES = ("stop", "skip")  # what the own stage does with a picture it cannot use

MAX_SEED = 2**32 - 1  # keras.utils.set_random_seed refuses more (it seeds NumPy's legacy RNG)
MAX_EPOCHS = 10_000  # long dropout runs take thousands; 10,000 is ~8 h at 3 s an epoch
MAX_HIDDEN_LAYERS = 64
MAX_WIDTH = 2**31 - 1  # TensorFlow's int32 dimensions; memory runs out long before
MAX_STEPS_PER_EXECUTION = 10_000  # 2**31 breaks Keras' step counter; past an epoch gains nothing
MAX_TIMEOUT_S = 3600.0  # larger values overflow the socket timeout, and mean "hang"
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

# Memory needed to train, estimated before building the model (see training_memory_bytes).
FLOAT32_BYTES = 4
# The weights, their gradients and Adam's two slots, plus about two working copies TensorFlow
# holds while initialising and updating: measured 25 bytes a weight for 79.5M weights.
WEIGHT_COPIES = 6
ACTIVATION_COPIES = 4  # a batch's activations: the output, the dropout mask and both gradients
RUNTIME_BYTES = 1 << 30  # TensorFlow itself (~600 MB) and the training arrays (~350 MB)


@dataclass(frozen=True)
class SourceFile:
    name: str  # file name on a mirror, e.g. "train-images-idx3-ubyte.gz"
    md5: str  # of the decompressed bytes, so it does not depend on how a mirror gzipped it

    @property
    def stored_name(self) -> str:
        """The name under data/raw: stored decompressed, so DVC's hash is the canonical MD5."""
        return self.name.removesuffix(".gz")


@dataclass(frozen=True)
class DownloadParams:
    mirrors: tuple[str, ...]
    files: dict[str, SourceFile]
    timeout_s: float
    retries: int


@dataclass(frozen=True)
class PreprocessParams:
    validation_fraction: float
    seed: int


@dataclass(frozen=True)
class AugmentParams:
    """Random distortions of each training image, drawn anew every epoch; 0 turns one off."""

    shift_px: float  # largest shift along each axis, in pixels
    rotation_deg: float  # largest rotation either way, in degrees
    scale: float  # largest relative zoom either way: 0.1 = 90 % to 110 %
    elastic_px: float  # largest displacement of a smooth random field, in pixels
    low_res_share: float  # this fraction of the images, drawn anew, blurred as low-res scans ...
    low_res_px: int  # ... shrunk to this many pixels a side and enlarged back
    thick_share: float  # this fraction, drawn anew, written with a pen about a pixel broader
    square_share: float  # this fraction, drawn anew, stretched to a square box
    flag_share: float  # this fraction of the 1s, drawn anew, given a flag

    @property
    def moves_pixels(self) -> bool:
        return any((self.shift_px, self.rotation_deg, self.scale, self.elastic_px))

    @property
    def enabled(self) -> bool:
        shares = (self.low_res_share, self.thick_share, self.square_share, self.flag_share)
        return self.moves_pixels or any(share > 0 for share in shares)


NO_AUGMENT = AugmentParams(
    shift_px=0,
    rotation_deg=0,
    scale=0,
    elastic_px=0,
    low_res_share=0,
    low_res_px=11,  # unused while low_res_share is 0
    thick_share=0,
    square_share=0,
    flag_share=0,
)


@dataclass(frozen=True)
class TrainParams:
    seed: int
    hidden_units: tuple[int, ...]
    dropout: tuple[float, ...]  # one rate per hidden layer
    max_norm: float  # cap on each hidden unit's incoming weight norm; 0 = no cap
    learning_rate: float
    lr_schedule: str
    warmup_epochs: int  # linear ramp from 0 to learning_rate before the schedule starts
    weight_decay: float  # decoupled (AdamW); 0 = plain Adam
    label_smoothing: float  # 0 = the plain sparse cross-entropy
    ema_momentum: float  # keep this much of the weights' running average each step; 0 = none
    batch_size: int
    epochs: int
    steps_per_execution: int
    jit_compile: bool
    compiled_loop: bool  # the steps of a call in one XLA loop (network.Network); needs jit_compile
    precision: str  # a Keras dtype policy: the hidden layers' compute dtype
    augment: AugmentParams
    own_share: float  # own-train copies per epoch, as a fraction of MNIST's training images


@dataclass(frozen=True)
class OwnParams:
    """A person's own pictures (data/own/<label>/): how they are split and checked."""

    test_fraction: float  # chance that a picture is in own-test, decided by its bytes
    seed: int
    bad_pictures: str  # "stop": the stage fails naming it; "skip": a warning line, left out


@dataclass(frozen=True)
class EvaluateParams:
    misclassified_shown: int


@dataclass(frozen=True)
class Params:
    download: DownloadParams
    preprocess: PreprocessParams
    train: TrainParams
    own: OwnParams
    evaluate: EvaluateParams


def load_params(path: Path = Path("params.yaml"), memory_bytes: int | None = None) -> Params:
    """Read ``path`` and return validated params; raise ``ParamsError`` naming the bad key.

    ``memory_bytes``: what training may use, for whatever trains here (``memory_limit()``, this
    machine's); None, the default, checks nothing that depends on the machine, so that the
    stages that do not train accept a model trained on a larger one (restored from the run
    cache, say).
    """
    return parse_params(load_yaml(path), source=str(path), memory_bytes=memory_bytes)


def parse_params(raw: Any, source: str = "params.yaml", memory_bytes: int | None = None) -> Params:
    """Validate a parsed params document (nested dicts) into ``Params``.

    Unknown keys anywhere are reported before missing keys or bad values, so that a key
    misspelt in place is named as such. ``memory_bytes``: see ``load_params``.
    """
    _reject_unknown_keys(raw, PARAMS_KEYS, "", source)
    top = _Section(raw, "", source)
    return Params(
        download=_parse_download(top.section("download")),
        preprocess=_parse_preprocess(top.section("preprocess")),
        train=_parse_train(top.section("train"), memory_bytes),
        own=_parse_own(top.section("own")),
        evaluate=_parse_evaluate(top.section("evaluate")),
    )


def _keys_of(cls: type) -> dict[str, Any]:
    """The keys of the params.yaml section that dataclass ``cls`` is read from: each maps to
    the keys of its own subsection, or to None for a value."""
    keys: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(field.type):
            keys[field.name] = _keys_of(field.type)
        elif typing.get_origin(field.type) is dict:  # download.files: one entry a file
            keys[field.name] = dict.fromkeys(MNIST_FILES, _keys_of(typing.get_args(field.type)[1]))
        else:
            keys[field.name] = None
    return keys


PARAMS_KEYS = _keys_of(Params)


def _reject_unknown_keys(raw: Any, keys: dict[str, Any], path: str, source: str) -> None:
    """Raise ``ParamsError`` for the first key, in file order, that ``keys`` does not have."""
    if not isinstance(raw, dict):
        return  # _Section says what was expected
    for name in raw:
        if name in keys:
            continue
        shown = _key_name(name)
        by_lower_case = {key.lower(): key for key in keys}  # EPOCHS: did you mean epochs?
        close = difflib.get_close_matches(shown.lower(), list(by_lower_case), n=1)
        hint = f"; did you mean {_dotted(path, by_lower_case[close[0]])!r}?" if close else ""
        raise ParamsError(
            f"{source}: {_dotted(path, shown)}: unknown key{hint} "
            f"(valid keys here: {', '.join(sorted(keys))})"
        )
    for name, subkeys in keys.items():
        if subkeys is not None and name in raw:
            _reject_unknown_keys(raw[name], subkeys, _dotted(path, name), source)


def _parse_download(section: "_Section") -> DownloadParams:
    mirrors = section.get("mirrors", list)
    for index, mirror in enumerate(mirrors):
        check_source_url(mirror, f"{section.key('mirrors')}[{index}]", section.source)
    files_section = section.section("files")
    files = {}
    stored: dict[str, str] = {}
    for name in MNIST_FILES:
        entry = files_section.section(name)
        file = SourceFile(
            name=entry.get(
                "name",
                str,
                check=lambda v: FILE_NAME.fullmatch(v) is not None,
                expected="a file name of letters, digits, '.', '_' or '-' (up to 200)",
            ),
            md5=entry.get("md5", str, check=_is_md5, expected="32 lowercase hex digits"),
        )
        if file.stored_name in stored:
            raise entry.error(
                "name", f"a name that differs from {stored[file.stored_name]}", file.name
            )
        stored[file.stored_name] = entry.key("name")
        files[name] = file
    return DownloadParams(
        mirrors=tuple(mirrors),
        files=files,
        timeout_s=section.get(
            "timeout_s",
            float,
            check=lambda v: 0 < v <= MAX_TIMEOUT_S,
            expected=f"seconds, > 0 and <= {MAX_TIMEOUT_S:g}",
        ),
        retries=section.get("retries", int, check=lambda v: 0 <= v <= 10, expected="0 to 10"),
    )


def _parse_preprocess(section: "_Section") -> PreprocessParams:
    fraction = section.get(
        "validation_fraction", float, check=lambda v: 0 < v < 1, expected="in (0, 1)"
    )
    validation_count(MNIST_TRAIN_IMAGES, fraction, section.source)
    return PreprocessParams(validation_fraction=fraction, seed=_seed(section))


def validation_count(
    n_examples: int, validation_fraction: float, source: str = "params.yaml"
) -> int:
    """How many of ``n_examples`` the validation split holds; raise ``ParamsError`` unless both
    it and the training split get at least one."""
    if n_examples < 2:
        raise ParamsError(
            f"{source}: preprocess.validation_fraction: {n_examples} images cannot be split in two"
        )
    n_validation = round(n_examples * validation_fraction) if 0 < validation_fraction < 1 else 0
    if 0 < n_validation < n_examples:
        return n_validation
    empty = "validation" if n_validation == 0 else "training"
    low, high = fraction_bounds(n_examples)
    raise ParamsError(
        f"{source}: preprocess.validation_fraction: {validation_fraction!r} of {n_examples} "
        f"images leaves no {empty} images: use a value from {low} to {high}"
    )


def fraction_bounds(n_examples: int) -> tuple[str, str]:
    """The smallest and largest validation fractions, as decimals, that leave both splits of
    ``n_examples`` (>= 2) non-empty: 1/n and 1 - 1/n, with enough digits to round right."""
    digits = len(str(n_examples)) + 1  # an error below n/10^digits cannot change the counts
    return tuple(
        f"{fraction:.{digits}f}".rstrip("0") for fraction in (1 / n_examples, 1 - 1 / n_examples)
    )


def _seed(section: "_Section") -> int:
    return section.get(
        "seed", int, check=lambda v: 0 <= v <= MAX_SEED, expected=f"0 to {MAX_SEED} (32 bits)"
    )


def _parse_train(section: "_Section", memory_bytes: int | None) -> TrainParams:
    hidden_units = section.get(
        "hidden_units",
        list,
        check=lambda v: 0 < len(v) <= MAX_HIDDEN_LAYERS,
        expected=f"a list of 1 to {MAX_HIDDEN_LAYERS} layer widths",
    )
    for index, width in enumerate(hidden_units):
        if type(width) is not int or not 1 <= width <= MAX_WIDTH:
            raise section.error(
                f"hidden_units[{index}]", f"a positive integer (up to {MAX_WIDTH})", width
            )
    dropout = _parse_dropout(section, len(hidden_units))
    epochs = section.get(
        "epochs", int, check=lambda v: 1 <= v <= MAX_EPOCHS, expected=f"1 to {MAX_EPOCHS}"
    )
    batch_size = section.get(
        "batch_size",
        int,
        check=lambda v: 1 <= v <= MNIST_TRAIN_IMAGES,
        expected=f"1 to {MNIST_TRAIN_IMAGES}, the training file's images",
    )
    if memory_bytes is not None:
        _check_memory(section, tuple(hidden_units), batch_size, memory_bytes)
    jit_compile = section.get("jit_compile", bool)
    return TrainParams(
        seed=_seed(section),
        hidden_units=tuple(hidden_units),
        dropout=dropout,
        max_norm=section.get("max_norm", float, check=lambda v: v >= 0, expected=">= 0"),
        learning_rate=section.get(
            "learning_rate", float, check=lambda v: 0 < v <= 1, expected="in (0, 1]"
        ),
        lr_schedule=section.get(
            "lr_schedule",
            str,
            check=lambda v: v in LR_SCHEDULES,
            expected=f"one of {', '.join(LR_SCHEDULES)}",
        ),
        warmup_epochs=section.get(
            "warmup_epochs",
            int,
            check=lambda v: 0 <= v < epochs,
            expected=f">= 0 and fewer than train.epochs ({epochs})",
        ),
        weight_decay=section.get(
            "weight_decay", float, check=lambda v: 0 <= v < 1, expected="in [0, 1)"
        ),
        label_smoothing=section.get(
            "label_smoothing", float, check=lambda v: 0 <= v < 1, expected="in [0, 1)"
        ),
        ema_momentum=section.get(
            "ema_momentum", float, check=lambda v: 0 <= v < 1, expected="in [0, 1)"
        ),
        batch_size=batch_size,
        epochs=epochs,
        steps_per_execution=section.get(
            "steps_per_execution",
            int,
            check=lambda v: 1 <= v <= MAX_STEPS_PER_EXECUTION,
            expected=f"1 to {MAX_STEPS_PER_EXECUTION}",
        ),
        jit_compile=jit_compile,
        compiled_loop=section.get(
            "compiled_loop",
            bool,
            check=lambda v: jit_compile or not v,
            expected="false while train.jit_compile is false (the loop is compiled by XLA)",
        ),
        precision=section.get(
            "precision",
            str,
            check=lambda v: v in PRECISIONS,
            expected=f"one of {', '.join(PRECISIONS)}",
        ),
        augment=_parse_augment(section.section("augment")),
        own_share=section.get("own_share", float, check=lambda v: 0 <= v <= 1, expected="0 to 1"),
    )


def _check_memory(
    section: "_Section", hidden_units: tuple[int, ...], batch_size: int, memory_bytes: int
) -> None:
    needed = training_memory_bytes(hidden_units, batch_size)
    if needed <= memory_bytes:
        return
    raise ParamsError(
        f"{section.source}: {section.key('hidden_units')}: training {show(list(hidden_units))} "
        f"with batch_size {batch_size} needs about {_gigabytes(needed)} "
        f"({weight_count(hidden_units):,} weights, each held {WEIGHT_COPIES} times in float32, "
        f"plus a batch's activations), more than the {_gigabytes(memory_bytes)} of memory "
        "here: use fewer or narrower hidden layers, or a smaller train.batch_size"
    )


def layer_widths(hidden_units: tuple[int, ...]) -> list[int]:
    """The widths of the dense model from input to output: 784, the hidden layers, 10."""
    return [math.prod(IMAGE_SHAPE), *hidden_units, N_CLASSES]


def weight_count(hidden_units: tuple[int, ...]) -> int:
    """The trainable weights (kernels and biases) of the dense model with ``hidden_units``."""
    pairs = itertools.pairwise(layer_widths(hidden_units))
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in pairs)


def training_memory_bytes(hidden_units: tuple[int, ...], batch_size: int) -> int:
    """Bytes of memory that training the dense model needs, estimated: ``WEIGHT_COPIES``
    float32 copies of every weight, ``ACTIVATION_COPIES`` of every unit's output for a batch,
    and ``RUNTIME_BYTES``. Two runs measured (19.2M and 79.5M weights) peaked at ~80 % of it."""
    units = math.prod(IMAGE_SHAPE) + sum(hidden_units) + N_CLASSES
    floats = WEIGHT_COPIES * weight_count(hidden_units) + ACTIVATION_COPIES * batch_size * units
    return FLOAT32_BYTES * floats + RUNTIME_BYTES


@functools.cache
def memory_limit() -> int:
    """Bytes this process may use: the machine's physical memory, or its cgroup's limit when
    that is lower (containers, CI runners)."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = min(limit, int(Path(cgroup).read_text().strip()))
        except (OSError, ValueError):  # absent, or "max": no limit there
            continue
    return limit


def _gigabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:,.1f} GB"


def _parse_augment(section: "_Section") -> AugmentParams:
    return AugmentParams(
        shift_px=section.get("shift_px", float, check=lambda v: 0 <= v <= 8, expected="0 to 8"),
        rotation_deg=section.get(
            "rotation_deg", float, check=lambda v: 0 <= v <= 45, expected="0 to 45"
        ),
        scale=section.get("scale", float, check=lambda v: 0 <= v < 0.5, expected="in [0, 0.5)"),
        elastic_px=section.get(
            "elastic_px", float, check=lambda v: 0 <= v <= 8, expected="0 to 8"
        ),
        low_res_share=section.get(
            "low_res_share", float, check=lambda v: 0 <= v <= 1, expected="0 to 1"
        ),
        low_res_px=section.get(
            "low_res_px", int, check=lambda v: 4 <= v <= 27, expected="4 to 27"
        ),
        thick_share=section.get(
            "thick_share", float, check=lambda v: 0 <= v <= 1, expected="0 to 1"
        ),
        square_share=section.get(
            "square_share", float, check=lambda v: 0 <= v <= 1, expected="0 to 1"
        ),
        flag_share=section.get(
            "flag_share", float, check=lambda v: 0 <= v <= 1, expected="0 to 1"
        ),
    )


def _parse_dropout(section: "_Section", n_layers: int) -> tuple[float, ...]:
    """``dropout`` is one rate for every hidden layer, or a list with one rate per layer."""
    value = section.get("dropout", (float, list))
    rates = value if isinstance(value, list) else [value] * n_layers
    if len(rates) != n_layers:
        raise section.error(
            "dropout", f"one rate or a list of {n_layers} (one per hidden layer)", value
        )
    for index, rate in enumerate(rates):
        if not _is_number(rate) or not 0 <= rate < 1:
            key = f"dropout[{index}]" if isinstance(value, list) else "dropout"
            raise section.error(key, "a number in [0, 1)", rate)
    return tuple(float(rate) for rate in rates)


def _parse_own(section: "_Section") -> OwnParams:
    return OwnParams(
        test_fraction=section.get(
            "test_fraction", float, check=lambda v: 0 <= v < 1, expected="in [0, 1)"
        ),
        seed=_seed(section),
        bad_pictures=section.get(
            "bad_pictures",
            str,
            check=lambda v: v in BAD_PICTURES,
            expected=f"one of {', '.join(BAD_PICTURES)}",
        ),
    )


def _parse_evaluate(section: "_Section") -> EvaluateParams:
    return EvaluateParams(
        misclassified_shown=section.get(
            "misclassified_shown", int, check=lambda v: 1 <= v <= 400, expected="1 to 400"
        ),
    )


def check_source_url(location: Any, key: str, source: str = "params.yaml") -> str:
    """Accept an https URL, or plain http to this machine only (test servers): MD5s guard content,
    but https keeps a network attacker from feeding us anything in the first place."""
    if not isinstance(location, str):
        raise ParamsError(f"{source}: {key}: expected a URL string, got {show(location)}")
    if any(char.isspace() or not char.isprintable() for char in location):
        raise ParamsError(
            f"{source}: {key}: a URL cannot contain spaces or control characters, "
            f"got {show(location)}"
        )
    try:
        url = urlparse(location)
        host = url.hostname or ""
        url.port  # noqa: B018 (raises ValueError for a port that is not 0-65535)
        host.encode("idna")
    except ValueError as error:  # "http://[::1", "https://a:99999/", "https://a..b/"
        raise ParamsError(
            f"{source}: {key}: not a valid URL ({error}), got {show(location)}"
        ) from None
    if url.scheme == "https" and host:
        return location
    if url.scheme == "http" and _is_loopback(host):
        return location
    raise ParamsError(
        f"{source}: {key}: expected an https:// URL (http only for localhost), "
        f"got {show(location)}"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_md5(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def _is_number(value: Any) -> bool:
    if type(value) is int:
        return abs(value) < 2**1023  # a larger int does not convert to a float
    return type(value) is float and math.isfinite(value)


def _dotted(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _key_name(key: Any) -> str:
    """A key as a message shows it: the key itself if it is a short printable string."""
    if isinstance(key, str) and key.isprintable() and len(key) <= 40:
        return key
    return show(key)


class _Section:
    """A mapping in params.yaml that remembers its dotted path, to name keys in messages."""

    def __init__(self, raw: Any, path: str, source: str):
        if not isinstance(raw, dict):
            where = f"section {path!r}" if path else "the top level"
            raise ParamsError(f"{source}: {where}: expected a mapping of keys, got {show(raw)}")
        self.raw, self.path, self.source = raw, path, source

    def key(self, name: str) -> str:
        return _dotted(self.path, name)

    def error(self, name: str, expected: str, got: Any) -> ParamsError:
        return ParamsError(
            f"{self.source}: {self.key(name)}: expected {expected}, got {show(got)}"
        )

    def _require(self, name: str) -> Any:
        if name not in self.raw:
            where = f"the {self.path} section" if self.path else "the top level"
            raise ParamsError(f"{self.source}: {self.key(name)}: missing (add it to {where})")
        return self.raw[name]

    def section(self, name: str) -> "_Section":
        return _Section(self._require(name), self.key(name), self.source)

    def get(self, name: str, kind: type | tuple, check=None, expected: str = "") -> Any:
        """Return key ``name``, which must be of ``kind`` and pass ``check``."""
        value = self._require(name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not any(_is_kind(value, k) for k in kinds):
            names = " or ".join(_KIND_NAMES[k] for k in kinds)
            raise self.error(name, names + (f" ({expected})" if expected else ""), value)
        if float in kinds and _is_number(value):
            value = float(value)
        if check is not None and not check(value):
            raise self.error(name, expected, value)
        return value


_KIND_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
}


def _is_kind(value: Any, kind: type) -> bool:
    if kind is float:
        return _is_number(value)
    return type(value) is kind  # exact: True is not an integer here, 3 is not a bool
