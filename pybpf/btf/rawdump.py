"""Text and dict renderings of BTF types, one record per type id.

:func:`dump_raw` prints a spec in the exact line format of
``bpftool btf dump file X format raw`` (so the two can be diffed, and so people
who read bpftool output can read ours); :func:`type_to_dict` gives the same
fields as a dict, shaped like ``bpftool --json btf dump``, for the CLI's
``--json`` output.

Pure: works on a :class:`~pybpf.btf.Spec` only.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

from .parse import Spec
from .types import (
    AnyEnum, Array, Composite, Datasec, DeclTag, Enum64, Float, Func, FuncProto, Fwd, Int,
    IntEncoding, Kind, Linkage, Type, Var,
)

__all__ = ["dump_raw", "format_type", "type_to_dict"]

_LINKAGE = {Linkage.STATIC: "static", Linkage.GLOBAL: "global", Linkage.EXTERN: "extern"}


def _name(t: Type) -> str:
    return t.name or "(anon)"


def _int_encoding(enc: IntEncoding) -> str:
    # bpftool names single flags only; combinations are "UNKN".
    return {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}.get(int(enc), "UNKN")


def _linkage(value: int) -> str:
    return _LINKAGE.get(value, "(unknown)")  # type: ignore[call-overload]


def _int_members(t: Composite) -> List[Dict[str, Any]]:
    out = []
    for m in t.members:
        d: Dict[str, Any] = {"name": m.name or "(anon)", "type_id": m.type, "bits_offset": m.offset}
        if m.bitfield_size:
            d["bitfield_size"] = m.bitfield_size
        out.append(d)
    return out


def type_to_dict(spec: Spec, type_id: int) -> Dict[str, Any]:
    """The fields of type ``type_id`` as a JSON-ready dict.

    Keys and values follow ``bpftool --json btf dump`` (``id``, ``kind``,
    ``name`` with ``"(anon)"`` for anonymous types, then the kind's fields,
    e.g. ``members`` for structs, ``values`` for enums).
    """
    t = spec.type(type_id)
    d: Dict[str, Any] = {"id": type_id, "kind": t.kind.name if t.kind else "UNKNOWN",
                         "name": _name(t)}
    k = t.kind
    if isinstance(t, Int):
        d.update(size=t.size, bits_offset=t.bit_offset, nr_bits=t.bits,
                 encoding=_int_encoding(t.encoding))
    elif k in (Kind.PTR, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPEDEF, Kind.TYPE_TAG):
        d["type_id"] = t.type  # type: ignore[union-attr]
    elif isinstance(t, Array):
        d.update(type_id=t.type, index_type_id=t.index_type, nr_elems=t.nelems)
    elif isinstance(t, Composite):
        d.update(size=t.size, vlen=len(t.members), members=_int_members(t))
    elif isinstance(t, AnyEnum):
        d.update(encoding="SIGNED" if t.signed else "UNSIGNED", size=t.size, vlen=len(t.values),
                 values=[{"name": v.name or "(anon)", "val": v.value} for v in t.values])
    elif isinstance(t, Fwd):
        d["fwd_kind"] = "union" if t.is_union else "struct"
    elif isinstance(t, Func):
        d.update(type_id=t.type, linkage=_linkage(t.linkage))
    elif isinstance(t, FuncProto):
        d.update(ret_type_id=t.return_type, vlen=len(t.params),
                 params=[{"name": p.name or "(anon)", "type_id": p.type} for p in t.params])
    elif isinstance(t, Var):
        d.update(type_id=t.type, linkage=_linkage(t.linkage))
    elif isinstance(t, Datasec):
        d.update(size=t.size, vlen=len(t.vars),
                 vars=[{"type_id": v.type, "offset": v.offset, "size": v.size} for v in t.vars])
    elif isinstance(t, Float):
        d["size"] = t.size
    elif isinstance(t, DeclTag):
        d.update(type_id=t.type, component_idx=t.component_idx)
    return d


def format_type(spec: Spec, type_id: int) -> str:
    """One type in bpftool's raw format: a header line plus one ``\\t``-indented line per item."""
    return "\n".join(_lines(spec, type_id))


def _lines(spec: Spec, type_id: int) -> List[str]:
    t = spec.type(type_id)
    head = f"[{type_id}] {t.kind.name if t.kind else 'UNKNOWN'} '{_name(t)}'"
    lines: List[str] = []
    if isinstance(t, Int):
        head += (f" size={t.size} bits_offset={t.bit_offset} nr_bits={t.bits}"
                 f" encoding={_int_encoding(t.encoding)}")
    elif t.kind in (Kind.PTR, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPEDEF, Kind.TYPE_TAG):
        head += f" type_id={t.type}"  # type: ignore[union-attr]
    elif isinstance(t, Array):
        head += f" type_id={t.type} index_type_id={t.index_type} nr_elems={t.nelems}"
    elif isinstance(t, Composite):
        head += f" size={t.size} vlen={len(t.members)}"
        for m in t.members:
            line = f"\t'{m.name or '(anon)'}' type_id={m.type} bits_offset={m.offset}"
            if m.bitfield_size:
                line += f" bitfield_size={m.bitfield_size}"
            lines.append(line)
    elif isinstance(t, AnyEnum):
        head += f" encoding={'SIGNED' if t.signed else 'UNSIGNED'} size={t.size} vlen={len(t.values)}"
        if isinstance(t, Enum64):
            suffix = "LL" if t.signed else "ULL"
            lines.extend(f"\t'{v.name or '(anon)'}' val={v.value}{suffix}" for v in t.values)
        else:
            lines.extend(f"\t'{v.name or '(anon)'}' val={v.value}" for v in t.values)
    elif isinstance(t, Fwd):
        head += f" fwd_kind={'union' if t.is_union else 'struct'}"
    elif isinstance(t, Func):
        head += f" type_id={t.type} linkage={_linkage(t.linkage)}"
    elif isinstance(t, FuncProto):
        head += f" ret_type_id={t.return_type} vlen={len(t.params)}"
        lines.extend(f"\t'{p.name or '(anon)'}' type_id={p.type}" for p in t.params)
    elif isinstance(t, Var):
        head += f" type_id={t.type}, linkage={_linkage(t.linkage)}"
    elif isinstance(t, Datasec):
        head += f" size={t.size} vlen={len(t.vars)}"
        for v in t.vars:
            vt = spec.type(v.type)
            lines.append(f"\ttype_id={v.type} offset={v.offset} size={v.size}"
                         f" ({vt.kind.name} '{_name(vt)}')")
    elif isinstance(t, Float):
        head += f" size={t.size}"
    elif isinstance(t, DeclTag):
        head += f" type_id={t.type} component_idx={t.component_idx}"
    return [head, *lines]


def dump_raw(spec: Spec) -> Iterator[str]:
    """Every type of ``spec`` (not of its base) as bpftool's ``format raw`` lines, in id order.

    Yields one string per output line (no trailing newline).
    """
    for type_id in range(spec.start_id, len(spec)):
        yield from _lines(spec, type_id)
