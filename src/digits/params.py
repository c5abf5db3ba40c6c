"""Load and validate ``params.yaml``: the one place that knows its keys, types and ranges.

Every stage calls ``load_params`` first, so a wrong value stops the pipeline before any data is
read, with a message naming the key (``train.epochs``) and what was expected.
"""

import difflib
import ipaddress
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from digits.errors import DigitsError

MNIST_FILES = ("train_images", "train_labels", "test_images", "test_labels")
LR_SCHEDULES = ("constant", "cosine")


class ParamsError(DigitsError):
    """``params.yaml`` is missing, unparsable, or has a key with a wrong or unknown value."""


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

    @property
    def enabled(self) -> bool:
        return any((self.shift_px, self.rotation_deg, self.scale, self.elastic_px))


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
    batch_size: int
    epochs: int
    steps_per_execution: int
    jit_compile: bool
    augment: AugmentParams


@dataclass(frozen=True)
class EvaluateParams:
    misclassified_shown: int


@dataclass(frozen=True)
class Params:
    download: DownloadParams
    preprocess: PreprocessParams
    train: TrainParams
    evaluate: EvaluateParams


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Read ``path`` and return validated params; raise ``ParamsError`` naming the bad key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found (run from the project root)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, source=str(path))


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params document (nested dicts) into ``Params``."""
    top = _Section(raw, "", source)
    params = Params(
        download=_parse_download(top.section("download")),
        preprocess=_parse_preprocess(top.section("preprocess")),
        train=_parse_train(top.section("train")),
        evaluate=_parse_evaluate(top.section("evaluate")),
    )
    top.reject_unknown()
    return params


def _parse_download(section: "_Section") -> DownloadParams:
    mirrors = section.get("mirrors", list)
    for index, mirror in enumerate(mirrors):
        check_source_url(mirror, f"{section.key('mirrors')}[{index}]", section.source)
    files_section = section.section("files")
    files = {}
    for name in MNIST_FILES:
        entry = files_section.section(name)
        files[name] = SourceFile(
            name=entry.get(
                "name",
                str,
                check=lambda v: v != "" and "/" not in v,
                expected="a file name without '/'",
            ),
            md5=entry.get("md5", str, check=_is_md5, expected="32 lowercase hex digits"),
        )
        entry.reject_unknown()
    files_section.reject_unknown()
    params = DownloadParams(
        mirrors=tuple(mirrors),
        files=files,
        timeout_s=section.get("timeout_s", float, check=lambda v: v > 0, expected="> 0"),
        retries=section.get("retries", int, check=lambda v: 0 <= v <= 10, expected="0 to 10"),
    )
    section.reject_unknown()
    return params


def _parse_preprocess(section: "_Section") -> PreprocessParams:
    params = PreprocessParams(
        validation_fraction=section.get(
            "validation_fraction", float, check=lambda v: 0 < v < 1, expected="between 0 and 1"
        ),
        seed=section.get("seed", int, check=lambda v: v >= 0, expected=">= 0"),
    )
    section.reject_unknown()
    return params


def _parse_train(section: "_Section") -> TrainParams:
    hidden_units = section.get(
        "hidden_units",
        list,
        check=lambda v: len(v) > 0,
        expected="a non-empty list of layer widths",
    )
    for index, width in enumerate(hidden_units):
        if type(width) is not int or width < 1:
            raise section.error(f"hidden_units[{index}]", "a positive integer", width)
    dropout = _parse_dropout(section, len(hidden_units))
    epochs = section.get("epochs", int, check=lambda v: v >= 1, expected=">= 1")
    params = TrainParams(
        seed=section.get("seed", int, check=lambda v: v >= 0, expected=">= 0"),
        hidden_units=tuple(hidden_units),
        dropout=dropout,
        max_norm=section.get("max_norm", float, check=lambda v: v >= 0, expected=">= 0"),
        learning_rate=section.get(
            "learning_rate", float, check=lambda v: 0 < v <= 1, expected="between 0 and 1"
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
        batch_size=section.get("batch_size", int, check=lambda v: v >= 1, expected=">= 1"),
        epochs=epochs,
        steps_per_execution=section.get(
            "steps_per_execution", int, check=lambda v: v >= 1, expected=">= 1"
        ),
        jit_compile=section.get("jit_compile", bool),
        augment=_parse_augment(section.section("augment")),
    )
    section.reject_unknown()
    return params


def _parse_augment(section: "_Section") -> AugmentParams:
    params = AugmentParams(
        shift_px=section.get("shift_px", float, check=lambda v: 0 <= v <= 8, expected="0 to 8"),
        rotation_deg=section.get(
            "rotation_deg", float, check=lambda v: 0 <= v <= 45, expected="0 to 45"
        ),
        scale=section.get("scale", float, check=lambda v: 0 <= v < 0.5, expected="in [0, 0.5)"),
        elastic_px=section.get(
            "elastic_px", float, check=lambda v: 0 <= v <= 8, expected="0 to 8"
        ),
    )
    section.reject_unknown()
    return params


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
            raise section.error(f"dropout[{index}]", "a number in [0, 1)", rate)
    return tuple(float(rate) for rate in rates)


def _parse_evaluate(section: "_Section") -> EvaluateParams:
    params = EvaluateParams(
        misclassified_shown=section.get(
            "misclassified_shown", int, check=lambda v: 1 <= v <= 400, expected="1 to 400"
        ),
    )
    section.reject_unknown()
    return params


def check_source_url(location: Any, key: str, source: str = "params.yaml") -> str:
    """Accept an https URL, or plain http to this machine only (test servers): MD5s guard content,
    but https keeps a network attacker from feeding us anything in the first place."""
    if not isinstance(location, str):
        raise ParamsError(f"{source}: {key}: expected a URL string, got {location!r}")
    url = urlparse(location)
    if url.scheme == "https" and url.netloc:
        return location
    if url.scheme == "http" and _is_loopback(url.hostname or ""):
        return location
    raise ParamsError(
        f"{source}: {key}: expected an https:// URL (http only for localhost), got {location!r}"
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
    return type(value) in (int, float) and math.isfinite(value)


class _Section:
    """A mapping in params.yaml that remembers its dotted path and which keys were read."""

    def __init__(self, raw: Any, path: str, source: str):
        if not isinstance(raw, dict):
            where = f"section {path!r}" if path else "the top level"
            raise ParamsError(f"{source}: {where}: expected a mapping of keys, got {raw!r}")
        self.raw, self.path, self.source = raw, path, source
        self.read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, expected: str, got: Any) -> ParamsError:
        return ParamsError(f"{self.source}: {self.key(name)}: expected {expected}, got {got!r}")

    def _require(self, name: str) -> Any:
        self.read.add(name)
        if name not in self.raw:
            raise ParamsError(f"{self.source}: {self.key(name)}: missing")
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

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.raw) - self.read, key=str)
        if not unknown:
            return
        name = str(unknown[0])
        close = difflib.get_close_matches(name, sorted(self.read), n=1)
        hint = f"; did you mean {self.key(close[0])!r}?" if close else ""
        valid = ", ".join(sorted(self.read))
        raise ParamsError(
            f"{self.source}: {self.key(name)}: unknown key{hint} (valid keys here: {valid})"
        )


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
