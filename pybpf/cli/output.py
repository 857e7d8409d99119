"""Rendering for the command line: aligned text tables, JSON documents, value formatting.

Every subcommand builds plain data (dicts, lists, ints, strings) first and
only then renders it, either as text for people or, with ``--json``, as one
JSON document for programs.  Keeping the two renderings on the same data
means ``--json`` never lacks a field the text shows.
"""

from __future__ import annotations

import enum
import json
import sys
from typing import Any, Iterable, Mapping, Optional, Sequence, TextIO

from ..consts import MapFlags, MapType, ProgType

__all__ = [
    "Table", "emit_json", "jsonable", "format_value", "hex_bytes", "hex_list", "map_type_name",
    "prog_type_name", "map_flags_names", "yes_no",
]


class Table:
    """A text table: left-aligned columns separated by two spaces, header in capitals.

    Cells are converted with ``str``; ``None`` prints as ``-``.  Numeric
    columns listed in ``right`` are right-aligned.
    """

    def __init__(self, columns: Sequence[str], *, right: Iterable[str] = (), indent: int = 0):
        self.columns = list(columns)
        self.right = {self.columns.index(c) for c in right}
        self.rows: list[list[str]] = []
        self.indent = indent

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)} columns")
        self.rows.append(["-" if c is None else str(c) for c in cells])

    def __len__(self) -> int:
        return len(self.rows)

    def render(self) -> str:
        """The table as lines of text (no trailing newline); trailing blanks are stripped."""
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        pad = " " * self.indent

        def line(cells: Sequence[str]) -> str:
            parts = [c.rjust(widths[i]) if i in self.right else c.ljust(widths[i])
                     for i, c in enumerate(cells)]
            return (pad + "  ".join(parts)).rstrip()

        return "\n".join([line(self.columns), *(line(r) for r in self.rows)])


def jsonable(value: Any) -> Any:
    """``value`` (as decoded by a BTF codec) turned into JSON types.

    Enum members become their name, records (structs/unions) dicts, bytes a
    hex string, tuples lists; anything else unknown becomes ``str(value)``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, enum.Enum):
            return value.name
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    asdict = getattr(value, "_asdict", None)
    if callable(asdict):
        return {k: jsonable(v) for k, v in asdict().items()}
    return str(value)


def format_value(value: Any, limit: int = 60) -> str:
    """A short, C-like text form of a decoded value (``{a=1, b=[1, 2]}``), cut at ``limit``."""
    text = _format(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _format(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return hex_bytes(bytes(value)) if value else "''"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    asdict = getattr(value, "_asdict", None)
    if callable(asdict):
        return "{" + ", ".join(f"{k}={_format(v)}" for k, v in asdict().items()) + "}"
    return str(value)


def emit_json(doc: Any, out: Optional[TextIO] = None) -> None:
    """Write ``doc`` as one indented JSON document followed by a newline."""
    out = out or sys.stdout
    json.dump(doc, out, indent=2, default=jsonable)
    out.write("\n")


def hex_bytes(data: bytes) -> str:
    """``"2a 00 00 00"``: bytes as space-separated lowercase hex pairs (bpftool's map dump)."""
    return bytes(data).hex(" ")


def hex_list(data: bytes) -> list:
    """``["0x2a", "0x00"]``: bytes as bpftool's ``--json`` map dump spells them."""
    return [f"0x{b:02x}" for b in bytes(data)]


def _enum_name(enum_cls: type, value: int, prefix: str) -> str:
    try:
        return enum_cls(value).name.lower()  # type: ignore[call-arg,attr-defined]
    except ValueError:
        return f"{prefix}{value}"


def map_type_name(value: int) -> str:
    """``"percpu_array"`` for BPF_MAP_TYPE_PERCPU_ARRAY (bpftool's spelling); unknown ``type_N``."""
    return _enum_name(MapType, value, "type_")


def prog_type_name(value: int) -> str:
    """``"raw_tracepoint"`` for BPF_PROG_TYPE_RAW_TRACEPOINT (bpftool's spelling)."""
    return _enum_name(ProgType, value, "type_")


def map_flags_names(flags: int) -> str:
    """``"0x480 (rdonly_prog|mmapable)"``; ``"0"`` when no flag is set."""
    if not flags:
        return "0"
    names = []
    rest = flags
    for f in MapFlags:
        if f.value and flags & f.value == f.value and f.value & (f.value - 1) == 0:
            names.append(f.name.lower())  # type: ignore[union-attr]
            rest &= ~f.value
    if rest:
        names.append(hex(rest))
    return f"{flags:#x} ({'|'.join(names)})"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
