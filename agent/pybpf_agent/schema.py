"""A small declarative schema for the agent's configuration.

Each setting is a :class:`Field` (type, default, allowed values, help); a
:class:`Section` groups fields.  :func:`validate` checks a parsed YAML tree
against the schema and fills defaults; every problem is a :class:`ConfigError`
whose one-line message names the key path, the bad value and what is allowed,
and suggests the closest known key for a misspelt one (difflib).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = ["ConfigError", "Field", "Section", "MapOf", "ListOf", "validate"]


class ConfigError(Exception):
    """A configuration problem.  ``str()`` is one line: ``path: problem``."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path or '<top>'}: {problem}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(v: Optional[float]) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


class Field:
    """One setting.

    ``kind`` is one of ``bool``, ``int``, ``float``, ``str``, ``any``;
    ``choices`` restricts the value; ``minimum``/``maximum`` bound numbers;
    ``check(value) -> Optional[str]`` returns a problem description or None.
    """

    def __init__(self, kind: str, default: Any, help: str = "", *, choices: Optional[Sequence[Any]] = None,
                 minimum: Optional[float] = None, maximum: Optional[float] = None,
                 check: Optional[Callable[[Any], Optional[str]]] = None, allowed: str = ""):
        self.kind = kind
        self.default = default
        self.help = help
        self.choices = tuple(choices) if choices is not None else None
        self.minimum = minimum
        self.maximum = maximum
        self.check = check
        self.allowed_text = allowed

    def allowed(self) -> str:
        if self.allowed_text:
            return self.allowed_text
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        what = {"bool": "true or false", "int": "an integer", "float": "a number",
                "str": "a string", "any": "any value"}[self.kind]
        lo, hi = _num(self.minimum), _num(self.maximum)
        if lo and hi:
            what += f" from {lo} to {hi}"
        elif lo:
            what += f" >= {lo}"
        elif hi:
            what += f" <= {hi}"
        return what

    def validate(self, value: Any, path: str) -> Any:
        def bad() -> ConfigError:
            return ConfigError(path, f"{_show(value)} is not allowed (expected {self.allowed()})")

        kind = self.kind
        if kind == "bool":
            if not isinstance(value, bool):
                raise bad()
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad()
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad()
            value = float(value)
        elif kind == "str":
            if not isinstance(value, str):
                raise bad()
        if self.choices is not None and value not in self.choices:
            raise bad()
        if self.minimum is not None and value < self.minimum:
            raise bad()
        if self.maximum is not None and value > self.maximum:
            raise bad()
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ConfigError(path, f"{_show(value)} is not allowed ({problem})")
        return value


class ListOf:
    """A list whose items all follow ``item`` (a Field or a Section)."""

    def __init__(self, item: Any, default: Optional[list] = None, help: str = ""):
        self.item = item
        self.default = list(default or [])
        self.help = help

    def validate(self, value: Any, path: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ConfigError(path, f"{_show(value)} is not allowed (expected a list)")
        return [_validate_node(self.item, v, f"{path}[{i}]") for i, v in enumerate(value)]


class MapOf:
    """A mapping with free-form string keys and values following ``value``."""

    def __init__(self, value: Any, default: Optional[dict] = None, help: str = ""):
        self.value = value
        self.default = dict(default or {})
        self.help = help

    def validate(self, value: Any, path: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(path, f"{_show(value)} is not allowed (expected a mapping)")
        return {str(k): _validate_node(self.value, v, f"{path}.{k}") for k, v in value.items()}


class Section:
    """A mapping with known keys; unknown keys are errors (with a did-you-mean)."""

    def __init__(self, fields: Mapping[str, Any], help: str = "",
                 check: Optional[Callable[[dict], Optional[Tuple[str, str]]]] = None):
        self.fields = dict(fields)
        self.help = help
        self.check = check

    @property
    def default(self) -> dict:
        return {k: _default(f) for k, f in self.fields.items()}

    def validate(self, value: Any, path: str) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(path, f"{_show(value)} is not allowed (expected a mapping with keys "
                              f"{', '.join(self.fields)})")
        out: Dict[str, Any] = {}
        for key, v in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in self.fields:
                close = difflib.get_close_matches(str(key), list(self.fields), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(sub, f"unknown key (known: {', '.join(self.fields)}){hint}")
            out[key] = _validate_node(self.fields[key], v, sub)
        for key, f in self.fields.items():
            if key not in out:
                out[key] = _default(f)
        if self.check is not None:
            problem = self.check(out)
            if problem:
                key, text = problem
                raise ConfigError(f"{path}.{key}" if path else key, text)
        return out


def _default(node: Any) -> Any:
    d = node.default
    if isinstance(d, (list, dict)):
        import copy
        return copy.deepcopy(d)
    return d


def _validate_node(node: Any, value: Any, path: str) -> Any:
    return node.validate(value, path)


def validate(schema: Section, tree: Any) -> dict:
    """Validate ``tree`` (parsed YAML) against ``schema``; returns it with defaults filled."""
    return schema.validate(tree, "")


def walk(node: Any, prefix: str = "") -> Iterable[Tuple[str, Any]]:
    """``(dotted path, Field)`` for every field of a schema (for docs and env overrides)."""
    if isinstance(node, Section):
        for k, f in node.fields.items():
            yield from walk(f, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix, node


def lookup(schema: Section, keys: List[str]) -> Tuple[Any, str]:
    """The schema node at ``keys`` (case-insensitive), and its canonical dotted path."""
    node: Any = schema
    parts: List[str] = []
    for k in keys:
        if isinstance(node, Section):
            match = next((name for name in node.fields if name.lower() == k.lower()), None)
            if match is None:
                close = difflib.get_close_matches(k.lower(), list(node.fields), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(".".join(parts + [k.lower()]),
                                  f"unknown key (known: {', '.join(node.fields)}){hint}")
            parts.append(match)
            node = node.fields[match]
        elif isinstance(node, MapOf):
            parts.append(k)
            node = node.value
        else:
            raise ConfigError(".".join(parts), f"{'.'.join(parts)} has no sub-key {k!r}")
    return node, ".".join(parts)
