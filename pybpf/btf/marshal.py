"""BTF writer: a list of types -> raw BTF bytes.

Used to load object BTF after the loader's fix-ups (DATASEC sizes and
offsets, sanitisation for older kernels) and by tests to build BTF by hand.
"""

from __future__ import annotations

import struct
from typing import Dict, Sequence

from .parse import BTF_MAGIC, HEADER_SIZE
from .types import (
    AnyType, Composite, Datasec, DeclTag, Enum64, AnyEnum, Func, FuncProto, Kind, Var,
)

__all__ = ["marshal", "StringTable"]


class StringTable:
    """A BTF string section under construction (deduplicated, starts with "")."""

    def __init__(self, initial: bytes = b"") -> None:
        """Start empty, or from an existing string section whose offsets must stay valid
        (line info records point into the object's string table)."""
        self._offsets: Dict[str, int] = {"": 0}
        self._buf = bytearray(initial if initial else b"\0")
        if initial:
            pos = 0
            while pos < len(initial):
                end = initial.find(b"\0", pos)
                if end < 0:
                    raise ValueError("string table is not NUL-terminated")
                self._offsets.setdefault(initial[pos:end].decode("utf-8", "replace"), pos)
                pos = end + 1

    def add(self, s: str) -> int:
        off = self._offsets.get(s)
        if off is None:
            off = len(self._buf)
            self._buf += s.encode("utf-8") + b"\0"
            self._offsets[s] = off
        return off

    def bytes(self) -> bytes:
        return bytes(self._buf)


def marshal(types: Sequence[AnyType], byteorder: str = "<", strings: bytes = b"") -> bytes:
    """Encode ``types`` (ids 1..n in order; ``types[0]`` is type id 1) as raw BTF.

    ``strings`` seeds the string section so that offsets into it stay valid.
    """
    bo = byteorder
    strings = StringTable(strings)
    out = bytearray()
    common = struct.Struct(bo + "III")
    u32 = struct.Struct(bo + "I")
    i32 = struct.Struct(bo + "i")
    three = struct.Struct(bo + "III")
    two = struct.Struct(bo + "II")
    twoi = struct.Struct(bo + "Ii")

    def head(t: AnyType, vlen: int, size_or_type: int, kflag: bool = False) -> None:
        info = (int(t.kind) << 24) | (vlen & 0xFFFF) | ((1 << 31) if kflag else 0)
        out.extend(common.pack(strings.add(t.name), info, size_or_type & 0xFFFFFFFF))

    for t in types:
        k = t.kind
        if k == Kind.INT:
            head(t, 0, t.size)
            out.extend(u32.pack((int(t.encoding) << 24) | (t.bit_offset << 16) | t.bits))
        elif k == Kind.ARRAY:
            head(t, 0, 0)
            out.extend(three.pack(t.type, t.index_type, t.nelems))
        elif k in (Kind.STRUCT, Kind.UNION):
            assert isinstance(t, Composite)
            kflag = any(m.bitfield_size for m in t.members)
            head(t, len(t.members), t.size, kflag)
            for m in t.members:
                off = (m.bitfield_size << 24) | m.offset if kflag else m.offset
                out.extend(three.pack(strings.add(m.name), m.type, off))
        elif k == Kind.ENUM:
            assert isinstance(t, AnyEnum)
            head(t, len(t.values), t.size, t.signed)
            for v in t.values:
                if t.signed:
                    out.extend(twoi.pack(strings.add(v.name), v.value))
                else:
                    out.extend(two.pack(strings.add(v.name), v.value & 0xFFFFFFFF))
        elif k == Kind.ENUM64:
            assert isinstance(t, Enum64)
            head(t, len(t.values), t.size, t.signed)
            for v in t.values:
                val = v.value & 0xFFFFFFFFFFFFFFFF
                out.extend(three.pack(strings.add(v.name), val & 0xFFFFFFFF, val >> 32))
        elif k == Kind.FWD:
            head(t, 0, 0, t.is_union)  # type: ignore[union-attr]
        elif k in (Kind.PTR, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG):
            head(t, 0, t.type)  # type: ignore[union-attr]
        elif k == Kind.FUNC:
            assert isinstance(t, Func)
            head(t, int(t.linkage), t.type)
        elif k == Kind.FUNC_PROTO:
            assert isinstance(t, FuncProto)
            head(t, len(t.params), t.return_type)
            for p in t.params:
                out.extend(two.pack(strings.add(p.name), p.type))
        elif k == Kind.VAR:
            assert isinstance(t, Var)
            head(t, 0, t.type)
            out.extend(u32.pack(int(t.linkage)))
        elif k == Kind.DATASEC:
            assert isinstance(t, Datasec)
            head(t, len(t.vars), t.size)
            for v in t.vars:
                out.extend(three.pack(v.type, v.offset, v.size))
        elif k == Kind.FLOAT:
            head(t, 0, t.size)  # type: ignore[union-attr]
        elif k == Kind.DECL_TAG:
            assert isinstance(t, DeclTag)
            head(t, 0, t.type)
            out.extend(i32.pack(t.component_idx))
        else:
            raise ValueError(f"cannot marshal BTF kind {k!r}")
    strs = strings.bytes()
    hdr = struct.pack(bo + "HBBIIIII", BTF_MAGIC, 1, 0, HEADER_SIZE, 0, len(out), len(out), len(strs))
    return hdr + bytes(out) + strs
