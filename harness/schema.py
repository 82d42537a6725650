"""Reading YAML with positions, so every validation error names file, line and key.

PyYAML's composer keeps a mark on each node; we validate on nodes rather than on the plain
Python objects so an unknown key or a wrong type is reported where the user wrote it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_LOCAL = threading.local()


@dataclass(frozen=True)
class Where:
    """A position in a YAML file, printed as file:line."""

    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


class Node:
    """A YAML node with its position and the dotted key path that led to it."""

    def __init__(self, node: yaml.Node, path: Path, key: str) -> None:
        self._node = node
        self.path = path
        self.key = key

    @property
    def where(self) -> Where:
        return Where(self.path, self._node.start_mark.line + 1)

    def error(self, message: str) -> ConfigError:
        label = f" (key '{self.key}')" if self.key else ""
        return ConfigError(f"{self.where}{label}: {message}")

    # --- scalars -------------------------------------------------------------------------

    def _scalar(self) -> Any:
        if not isinstance(self._node, yaml.ScalarNode):
            raise self.error(f"expected a scalar value, got a {_kind(self._node)}")
        # The safe constructor resolves the scalar's tag in place: the same value as a
        # safe_load of the node, without serialising and re-parsing it (the fuzzer parses
        # thousands of generated workloads an hour).
        scalars = getattr(_LOCAL, "scalars", None)
        if scalars is None:  # one per thread: harness fuzz parses in two
            scalars = _LOCAL.scalars = yaml.constructor.SafeConstructor()
        value = scalars.construct_object(self._node, deep=True)
        scalars.constructed_objects.clear()  # its memo would keep every node alive
        return value

    def as_str(self) -> str:
        value = self._scalar()
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {value!r}")
        return value

    def as_text(self) -> str:
        """A string, integer or number as text (command arguments, sysctl values)."""
        value = self._scalar()
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(f"expected a string or a number, got {value!r}")
        return str(value)

    def as_bool(self) -> bool:
        value = self._scalar()
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, got {value!r}")
        return value

    def as_int(self, minimum: int | None = None) -> int:
        value = self._scalar()
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}")
        return value

    def as_float(self, minimum: float | None = None) -> float:
        value = self._scalar()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"expected a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}")
        return float(value)

    def as_size(self, align: int = 1) -> int:
        """A byte count: an integer or a string like '4K', '2M', '1G' (binary units)."""
        value = self._scalar()
        if isinstance(value, bool):
            raise self.error(f"expected a size such as 4096, '2M' or '1G', got {value!r}")
        if isinstance(value, int):
            size = value
        else:
            match = _SIZE_RE.match(str(value))
            if not match:
                raise self.error(f"expected a size such as 4096, '2M' or '1G', got {value!r}")
            size = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
        if size < 0:
            raise self.error(f"a size cannot be negative, got {value!r}")
        if size % align:
            raise self.error(f"must be a multiple of {align} bytes, got {value!r}")
        return size

    def as_choice(self, choices: tuple[str, ...] | list[str]) -> str:
        value = self.as_str()
        if value not in choices:
            raise self.error(f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    # --- collections ---------------------------------------------------------------------

    def items(self) -> list[Node]:
        if not isinstance(self._node, yaml.SequenceNode):
            raise self.error(f"expected a list, got a {_kind(self._node)}")
        return [Node(n, self.path, f"{self.key}[{i}]") for i, n in enumerate(self._node.value)]

    def mapping(self, allowed: tuple[str, ...] | list[str]) -> dict[str, Node]:
        """The node as a mapping; any key outside `allowed` is an error naming it."""
        if not isinstance(self._node, yaml.MappingNode):
            raise self.error(f"expected a mapping, got a {_kind(self._node)}")
        result: dict[str, Node] = {}
        for key_node, value_node in self._node.value:
            child_key = Node(key_node, self.path, self.key)
            name = child_key.as_str()
            dotted = f"{self.key}.{name}" if self.key else name
            if name not in allowed:
                hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
                raise Node(key_node, self.path, dotted).error(f"unknown key '{name}'{hint}")
            if name in result:
                raise Node(key_node, self.path, dotted).error(f"key '{name}' given twice")
            result[name] = Node(value_node, self.path, dotted)
        return result

    def entries(self) -> list[tuple[str, Node]]:
        """A mapping with free-form keys, in order: (key, value node)."""
        if not isinstance(self._node, yaml.MappingNode):
            raise self.error(f"expected a mapping, got a {_kind(self._node)}")
        result: list[tuple[str, Node]] = []
        for key_node, value_node in self._node.value:
            name = Node(key_node, self.path, self.key).as_str()
            dotted = f"{self.key}.{name}" if self.key else name
            if any(name == k for k, _ in result):
                raise Node(key_node, self.path, dotted).error(f"key '{name}' given twice")
            result.append((name, Node(value_node, self.path, dotted)))
        return result

    def is_mapping(self) -> bool:
        return isinstance(self._node, yaml.MappingNode)

    def is_null(self) -> bool:
        return isinstance(self._node, yaml.ScalarNode) and self._node.tag.endswith(":null")


def require(fields: dict[str, Node], name: str, parent: Node) -> Node:
    """fields[name], or an error at the parent naming the missing key."""
    if name not in fields:
        raise parent.error(f"missing required key '{name}'")
    return fields[name]


# libyaml's parser when PyYAML has it (Debian's does): the same nodes and marks, faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(path: Path) -> Node:
    """Parse a YAML file into a root Node; syntax errors name the file and line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{line}: YAML syntax error: {problem}") from None
    if node is None:
        raise ConfigError(f"{path}: the file is empty")
    return Node(node, path, "")


# libyaml's composer when PyYAML has it: same nodes and marks, a tenth of the time.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return "scalar"
