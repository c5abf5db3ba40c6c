"""Read a small YAML file safely: plain values only, bounded in size, depth and alias expansion,
no duplicate keys, every value read as DVC reads it. params.yaml, the presets and dvc.lock are
read through here."""

import os
import re
import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml

from digits.errors import ParamsError

# Reading: params.yaml is about 3 kB and 60 values; these caps stop a hostile or broken file
# (a YAML alias bomb expands 9 anchors of 9 aliases into 10^9 values) in milliseconds.
MAX_FILE_BYTES = 1 << 17
MAX_NODES = 10_000  # values after expanding every alias
MAX_DEPTH = 20  # nesting after expanding every alias; params.yaml nests 5 deep
SHOWN_CHARS = 80  # a value quoted in a message is cut to this


def load_yaml(path: Path) -> Any:
    """Read the one YAML document in ``path`` with the caps of ``parse_yaml``."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block, a device never end
            raise ParamsError(f"{path}: not a regular file")
        with open(path, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except OSError as error:
        raise ParamsError(f"{path}: cannot read it ({error.strerror or error})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ParamsError(
            f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; params.yaml is a few kB"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ParamsError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from None
    return parse_yaml(text, source=str(path))


def parse_yaml(text: str, source: str = "params.yaml") -> Any:
    """Parse one YAML document safely into plain values (dicts, lists, scalars).

    Refused with ``ParamsError``: more than ``MAX_NODES`` values or ``MAX_DEPTH`` levels once
    aliases are expanded, a recursive alias, and a key twice in one mapping (YAML loaders
    silently keep the last one).
    """
    loader = None
    try:
        loader = _BoundedLoader(text, source)  # its reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None
        _reject_duplicate_keys(node, "", source)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ParamsError(f"{source}: {shorten(describe_yaml_error(error), 300)}") from None
    except (ValueError, OverflowError) as error:  # int("9" * 5000), date 2024-13-01
        reason = str(error).split(";")[0]  # not Python's advice on raising its own limits
        raise ParamsError(f"{source}: a value YAML cannot read: {shorten(reason, 200)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def describe_yaml_error(error: yaml.YAMLError) -> str:
    """One line for PyYAML's several: where, what, and what it was reading when it failed."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem is None:
        return "not valid YAML: " + " ".join(str(error).split())
    where = f"{_position(error.problem_mark)}: " if error.problem_mark else ""
    context = f" ({error.context}" if error.context else ""
    if context and error.context_mark and error.context_mark != error.problem_mark:
        context += f" from {_position(error.context_mark)}"
    return f"{where}not valid YAML: {error.problem}{context}{')' if context else ''}"


def _position(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


ALIAS_FIX = "write the values out instead of using anchors (&) and aliases (*)"
DEPTH_FIX = "params.yaml nests 5 levels deep: check the brackets and indentation"


# DVC reads and writes params.yaml as YAML 1.2 (ruamel.yaml); PyYAML reads YAML 1.1, where 1e-05
# (which `dvc exp run -S` writes) is a string, 010 is 8, yes and on are true and 1:30 is 90. So
# booleans, integers and floats are resolved by ruamel.yaml's YAML 1.2 patterns, copied here.
YAML12_SCALARS = {
    "tag:yaml.org,2002:bool": ("tTfF", r"true|True|TRUE|false|False|FALSE"),
    "tag:yaml.org,2002:float": (
        "-+0123456789.",
        r"""[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN)""",
    ),
    "tag:yaml.org,2002:int": (
        "-+0123456789",
        r"[-+]?0b[0-1_]+ |[-+]?0o?[0-7_]+ |[-+]?[0-9_]+ |[-+]?0x[0-9a-fA-F_]+",
    ),
}


def _yaml12_resolvers() -> dict[str, list]:
    """PyYAML's safe implicit resolvers with ``YAML12_SCALARS`` in place of its own."""
    resolvers = {
        first: [(tag, regexp) for tag, regexp in entries if tag not in YAML12_SCALARS]
        for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for tag, (firsts, pattern) in YAML12_SCALARS.items():
        regexp = re.compile(f"^(?:{pattern})$", re.X)
        for first in firsts:
            resolvers.setdefault(first, []).insert(0, (tag, regexp))
    return resolvers


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting values and depth as if every alias were expanded, its
    scalars resolved as YAML 1.2 (``YAML12_SCALARS``)."""

    yaml_implicit_resolvers = _yaml12_resolvers()

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """YAML 1.2: 010 is ten, 0o10 eight (YAML 1.1: 010 is eight)."""
        text = self.construct_scalar(node).replace("_", "")
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        bases = {"0b": 2, "0o": 8, "0x": 16}
        if digits[:2] in bases:
            return sign * int(digits[2:], bases[digits[:2]])
        return sign * int(digits)

    def __init__(self, text: str, source: str):
        super().__init__(text)
        self.source = source
        self.expanded_nodes = 0
        self.depth = 0
        self.open_anchors: set[str] = set()  # anchors whose node is being composed
        self.shapes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, depth)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.open_anchors:
                raise self._refuse(event, f"alias *{event.anchor} refers to itself", ALIAS_FIX)
            node = super().compose_node(parent, index)
            self._count(self.shapes[id(node)][0], event)
            return node
        if self.depth >= MAX_DEPTH:
            raise self._refuse(event, f"nested more than {MAX_DEPTH} levels deep")
        anchor = event.anchor
        if anchor is not None:
            self.open_anchors.add(anchor)
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
            self.open_anchors.discard(anchor)
        children = _child_nodes(node)
        depth = 1 + max((self.shapes[id(child)][1] for child in children), default=0)
        if depth > MAX_DEPTH:
            raise self._refuse(event, f"nested more than {MAX_DEPTH} levels deep")
        self.shapes[id(node)] = (1 + sum(self.shapes[id(child)][0] for child in children), depth)
        self._count(1, event)
        return node

    def _count(self, nodes: int, event) -> None:
        self.expanded_nodes += nodes
        if self.expanded_nodes > MAX_NODES:
            raise self._refuse(
                event, f"more than {MAX_NODES} values once aliases are expanded", ALIAS_FIX
            )

    def _refuse(self, event, what: str, fix: str = DEPTH_FIX) -> ParamsError:
        return ParamsError(f"{self.source}: line {event.start_mark.line + 1}: {what}; {fix}")


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _child_nodes(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


MERGE_TAG = "tag:yaml.org,2002:merge"


def _reject_duplicate_keys(node: yaml.Node, path: str, source: str) -> None:
    """Raise ``ParamsError`` for a key written twice in one mapping, naming it and its lines.

    ``node`` is bounded in size and depth by ``_BoundedLoader``, so the walk is too."""
    if isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _reject_duplicate_keys(child, f"{path}[{index}]", source)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    first_lines: dict[tuple[str, str], int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE_TAG:
            continue
        dotted = f"{path}.{key_node.value}" if path else str(key_node.value)
        line = key_node.start_mark.line + 1
        identity = (key_node.tag, key_node.value)
        if identity in first_lines:
            raise ParamsError(
                f"{source}: {shorten(dotted, SHOWN_CHARS)}: duplicate key (lines "
                f"{first_lines[identity]} and {line}); delete one of them"
            )
        first_lines[identity] = line
        _reject_duplicate_keys(value_node, dotted, source)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple, _REPR.maxset = 3, 6, 4, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = SHOWN_CHARS, SHOWN_CHARS, 40


def show(value: Any) -> str:
    """``repr(value)`` cut to about ``SHOWN_CHARS``, in time and memory that do not grow with
    the value (reprlib stops at a few items a level)."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int beyond Python's 4300-digit str() limit
        text = f"an integer of {value.bit_length()} bits" if type(value) is int else "?"
    return shorten(text, SHOWN_CHARS)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
