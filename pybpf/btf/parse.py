"""BTF parsing: raw BTF bytes -> :class:`Spec`.

The parser indexes type offsets in one pass and decodes each type only when
it is asked for, so kernel BTF (100k+ types) is cheap to open.  Split BTF
(kernel modules) is supported through ``base``.  Every malformed input raises
:class:`pybpf.errors.ParseError`; nothing else escapes.
"""

from __future__ import annotations

import struct
from array import array
from typing import Dict, Iterator, List, Optional, Sequence, Union as _U

from ..errors import ParseError
from .types import (
    MODIFIER_KINDS, AnyType, Array, Const, Datasec, DeclTag, Enum, Enum64, EnumValue, Float, Func,
    FuncProto, Fwd, Int, IntEncoding, Kind, Linkage, Member, Param, Ptr, Restrict, Struct, Type,
    Typedef, TypeTag, Union, Var, VarSecinfo, Void, Volatile,
)

__all__ = ["Spec", "BTF_MAGIC", "HEADER_SIZE"]

BTF_MAGIC = 0xEB9F
HEADER_SIZE = 24
_MAX_RESOLVE_DEPTH = 64


class _Structs:
    """struct.Struct objects for one byte order, built once."""

    def __init__(self, bo: str):
        self.hdr = struct.Struct(bo + "HBBIIIII")
        self.common = struct.Struct(bo + "III")
        self.u32 = struct.Struct(bo + "I")
        self.s32 = struct.Struct(bo + "i")
        self.array = struct.Struct(bo + "III")
        self.member = struct.Struct(bo + "III")
        self.enum = struct.Struct(bo + "Ii")
        self.enumu = struct.Struct(bo + "II")
        self.enum64 = struct.Struct(bo + "III")
        self.param = struct.Struct(bo + "II")
        self.secinfo = struct.Struct(bo + "III")


_STRUCTS = {"<": _Structs("<"), ">": _Structs(">")}

# Size of the kind-specific data that follows the 12-byte common header:
# (fixed bytes, bytes per vlen item)
_EXTRA = {
    Kind.INT: (4, 0), Kind.PTR: (0, 0), Kind.ARRAY: (12, 0), Kind.STRUCT: (0, 12),
    Kind.UNION: (0, 12), Kind.ENUM: (0, 8), Kind.FWD: (0, 0), Kind.TYPEDEF: (0, 0),
    Kind.VOLATILE: (0, 0), Kind.CONST: (0, 0), Kind.RESTRICT: (0, 0), Kind.FUNC: (0, 0),
    Kind.FUNC_PROTO: (0, 8), Kind.VAR: (4, 0), Kind.DATASEC: (0, 12), Kind.FLOAT: (0, 0),
    Kind.DECL_TAG: (4, 0), Kind.TYPE_TAG: (0, 0), Kind.ENUM64: (0, 12),
}
_EXTRA_FIXED = [0] * 32
_EXTRA_VLEN = [0] * 32
for _k, (_f, _v) in _EXTRA.items():
    _EXTRA_FIXED[_k] = _f
    _EXTRA_VLEN[_k] = _v
_VALID_KIND = [k in _EXTRA for k in range(32)]

_VOID = Void()


class Spec:
    """A parsed BTF blob: types by id, names, strings.

    Build one with :meth:`parse` (raw BTF bytes) or, for kernel and ELF files,
    with the helpers in :mod:`pybpf.btf.kernel` and :mod:`pybpf.elf`.

    Type ids of a split spec (module BTF) continue after its ``base``'s ids;
    lookups by id or name fall through to the base.
    """

    def __init__(self, data: bytes, *, base: Optional["Spec"] = None, byteorder: str,
                 hdr_len: int, type_off: int, type_len: int, str_off: int, str_len: int,
                 file: Optional[str] = None):
        self.raw = data
        self.base = base
        self.byteorder = byteorder
        self.file = file
        self._s = _STRUCTS[byteorder]
        self._types_start = hdr_len + type_off
        self._types_end = self._types_start + type_len
        self._str_start = hdr_len + str_off
        self._str_len = str_len
        self.start_id = len(base) if base is not None else 1
        self._str_base = base._str_len_total if base is not None else 0
        self._offsets = array("I")
        self._cache: Dict[int, AnyType] = {}
        self._names: Optional[Dict[str, List[int]]] = None
        self._str_cache: Dict[int, str] = {}
        self._align_cache: Dict[int, int] = {}

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def parse(cls, data: _U[bytes, bytearray, memoryview], *, base: Optional["Spec"] = None,
              file: Optional[str] = None) -> "Spec":
        """Parse raw BTF (as in /sys/kernel/btf/* or an ELF's .BTF section)."""
        data = bytes(data)
        where = file or "<bytes>"
        if len(data) < HEADER_SIZE:
            raise ParseError(f"BTF is {len(data)} bytes, shorter than its {HEADER_SIZE}-byte header",
                             file=where, section=".BTF")
        if data[0:2] == b"\x9f\xeb":
            bo = "<"
        elif data[0:2] == b"\xeb\x9f":
            bo = ">"
        else:
            raise ParseError(f"bad BTF magic {data[0:2].hex()}", file=where, section=".BTF", offset=0)
        if base is not None and base.byteorder != bo:
            raise ParseError("split BTF and its base differ in byte order", file=where, section=".BTF")
        _magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            _STRUCTS[bo].hdr.unpack_from(data, 0)
        if version != 1:
            raise ParseError(f"unsupported BTF version {version}", file=where, section=".BTF", offset=2)
        if hdr_len < HEADER_SIZE or hdr_len > len(data):
            raise ParseError(f"bad BTF header length {hdr_len}", file=where, section=".BTF", offset=4)
        # Fields of a longer header than we know must be zero (the kernel applies the same rule).
        if any(data[HEADER_SIZE:hdr_len]):
            raise ParseError("BTF header has unknown non-zero fields", file=where, section=".BTF")
        body = len(data) - hdr_len
        if type_off % 4 or type_off + type_len > body or type_off + type_len < type_off:
            raise ParseError(f"BTF type section [{type_off}, +{type_len}) outside the blob",
                             file=where, section=".BTF")
        if str_off + str_len > body:
            raise ParseError(f"BTF string section [{str_off}, +{str_len}) outside the blob",
                             file=where, section=".BTF")
        if str_len and (data[hdr_len + str_off + str_len - 1] != 0 or
                        (base is None and data[hdr_len + str_off] != 0)):
            raise ParseError("BTF string section is not NUL-framed", file=where, section=".BTF")
        if max(type_off, str_off) < min(type_off + type_len, str_off + str_len) and type_len and str_len:
            raise ParseError("BTF type and string sections overlap", file=where, section=".BTF")
        spec = cls(data, base=base, byteorder=bo, hdr_len=hdr_len, type_off=type_off,
                   type_len=type_len, str_off=str_off, str_len=str_len, file=file)
        spec._index()
        return spec

    def _index(self) -> None:
        data = self.raw
        pos = self._types_start
        end = self._types_end
        unpack = self._s.common.unpack_from
        offsets = []
        append = offsets.append
        fixed = _EXTRA_FIXED
        per = _EXTRA_VLEN
        valid = _VALID_KIND
        while pos < end:
            if pos + 12 > end:
                raise ParseError("truncated BTF type record", file=self.file or "<bytes>",
                                 section=".BTF", offset=pos)
            _name, info, _sz = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            if not valid[kind] or kind == 0:
                raise ParseError(f"unknown BTF kind {kind} for type [{self.start_id + len(offsets)}]",
                                 file=self.file or "<bytes>", section=".BTF", offset=pos)
            append(pos)
            pos += 12 + fixed[kind] + per[kind] * (info & 0xFFFF)
        if pos != end:
            raise ParseError("BTF type section ends inside a type record",
                             file=self.file or "<bytes>", section=".BTF", offset=pos)
        self._offsets = array("I", offsets)

    # -- strings ----------------------------------------------------------------------------
    @property
    def _str_len_total(self) -> int:
        return self._str_base + self._str_len

    def string(self, off: int) -> str:
        """The string at offset ``off`` of the (combined base + own) string table."""
        s = self._str_cache.get(off)
        if s is not None:
            return s
        if off < self._str_base:
            assert self.base is not None
            return self.base.string(off)
        rel = off - self._str_base
        if rel >= self._str_len:
            raise ParseError(f"BTF string offset {off} outside the string section",
                             file=self.file or "<bytes>", section=".BTF")
        start = self._str_start + rel
        nul = self.raw.find(b"\0", start, self._str_start + self._str_len)
        if nul < 0:
            raise ParseError(f"unterminated BTF string at offset {off}",
                             file=self.file or "<bytes>", section=".BTF")
        try:
            s = self.raw[start:nul].decode("utf-8")
        except UnicodeDecodeError:
            s = self.raw[start:nul].decode("latin-1")
        self._str_cache[off] = s
        return s

    @property
    def strings_raw(self) -> bytes:
        """This spec's own raw string section (not its base's)."""
        return self.raw[self._str_start:self._str_start + self._str_len]

    # -- types ------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of type ids, including void and the base's types (next free id)."""
        return self.start_id + len(self._offsets)

    def __getitem__(self, type_id: int) -> AnyType:
        return self.type(type_id)

    def type(self, type_id: int) -> AnyType:
        """The type with id ``type_id`` (decoded on first use)."""
        t = self._cache.get(type_id)
        if t is not None:
            return t
        if type_id == 0:
            return _VOID
        if type_id < self.start_id:
            if self.base is None:
                raise ParseError(f"BTF type id {type_id} out of range", file=self.file or "<bytes>",
                                 section=".BTF")
            return self.base.type(type_id)
        idx = type_id - self.start_id
        if idx >= len(self._offsets) or idx < 0:
            raise ParseError(f"BTF type id {type_id} out of range (have {len(self)})",
                             file=self.file or "<bytes>", section=".BTF")
        t = self._decode(self._offsets[idx], type_id)
        self._cache[type_id] = t
        return t

    def kind_of(self, type_id: int) -> Kind:
        """The kind of a type without decoding it."""
        if type_id == 0:
            return Kind.UNKN
        if type_id < self.start_id:
            assert self.base is not None
            return self.base.kind_of(type_id)
        idx = type_id - self.start_id
        if not 0 <= idx < len(self._offsets):
            raise ParseError(f"BTF type id {type_id} out of range", file=self.file or "<bytes>",
                             section=".BTF")
        return Kind((self._s.u32.unpack_from(self.raw, self._offsets[idx] + 4)[0] >> 24) & 0x1F)

    def _check_id(self, ref: int, tid: int) -> int:
        if ref >= len(self):
            raise ParseError(f"BTF type [{tid}] refers to type id {ref}, past the last id {len(self) - 1}",
                             file=self.file or "<bytes>", section=".BTF")
        return ref

    def _decode(self, pos: int, tid: int) -> AnyType:
        s = self._s
        data = self.raw
        name_off, info, size_type = s.common.unpack_from(data, pos)
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        name = self.string(name_off)
        p = pos + 12
        chk = self._check_id
        if kind == Kind.INT:
            (v,) = s.u32.unpack_from(data, p)
            return Int(name, size_type, IntEncoding((v >> 24) & 0x7), (v >> 16) & 0xFF, v & 0xFF)
        if kind == Kind.PTR:
            return Ptr(name, chk(size_type, tid))
        if kind == Kind.ARRAY:
            t, it, n = s.array.unpack_from(data, p)
            return Array(name, chk(t, tid), chk(it, tid), n)
        if kind in (Kind.STRUCT, Kind.UNION):
            members = []
            unp = s.member.unpack_from
            for i in range(vlen):
                mn, mt, off = unp(data, p + 12 * i)
                if kflag:
                    members.append(Member(self.string(mn), chk(mt, tid), off & 0xFFFFFF, off >> 24))
                else:
                    members.append(Member(self.string(mn), chk(mt, tid), off, 0))
            cls = Struct if kind == Kind.STRUCT else Union
            return cls(name, size_type, tuple(members))
        if kind == Kind.ENUM:
            unp = s.enum.unpack_from if kflag else s.enumu.unpack_from
            vals = tuple(EnumValue(self.string(vn), vv)
                         for vn, vv in (unp(data, p + 8 * i) for i in range(vlen)))
            return Enum(name, size_type, kflag, vals)
        if kind == Kind.ENUM64:
            vals = []
            for i in range(vlen):
                vn, lo, hi = s.enum64.unpack_from(data, p + 12 * i)
                v = (hi << 32) | lo
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                vals.append(EnumValue(self.string(vn), v))
            return Enum64(name, size_type, kflag, tuple(vals))
        if kind == Kind.FWD:
            return Fwd(name, kflag)
        if kind == Kind.TYPEDEF:
            return Typedef(name, chk(size_type, tid))
        if kind == Kind.VOLATILE:
            return Volatile(name, chk(size_type, tid))
        if kind == Kind.CONST:
            return Const(name, chk(size_type, tid))
        if kind == Kind.RESTRICT:
            return Restrict(name, chk(size_type, tid))
        if kind == Kind.TYPE_TAG:
            return TypeTag(name, chk(size_type, tid))
        if kind == Kind.FUNC:
            return Func(name, chk(size_type, tid), Linkage(vlen) if vlen < 3 else vlen)  # type: ignore[arg-type]
        if kind == Kind.FUNC_PROTO:
            params = tuple(Param(self.string(pn), chk(pt, tid))
                           for pn, pt in (s.param.unpack_from(data, p + 8 * i) for i in range(vlen)))
            return FuncProto(name, chk(size_type, tid), params)
        if kind == Kind.VAR:
            (lk,) = s.u32.unpack_from(data, p)
            return Var(name, chk(size_type, tid), Linkage(lk) if lk < 3 else lk)  # type: ignore[arg-type]
        if kind == Kind.DATASEC:
            vs = tuple(VarSecinfo(chk(vt, tid), vo, vz)
                       for vt, vo, vz in (s.secinfo.unpack_from(data, p + 12 * i) for i in range(vlen)))
            return Datasec(name, size_type, vs)
        if kind == Kind.FLOAT:
            return Float(name, size_type)
        if kind == Kind.DECL_TAG:
            (ci,) = s.s32.unpack_from(data, p)
            return DeclTag(name, chk(size_type, tid), ci)
        raise ParseError(f"unknown BTF kind {kind}", file=self.file or "<bytes>", section=".BTF")

    def types(self) -> Iterator[tuple[int, AnyType]]:
        """(id, type) for every type of this spec (not the base's), in id order."""
        for i in range(self.start_id, len(self)):
            yield i, self.type(i)

    def all_types(self) -> Iterator[tuple[int, AnyType]]:
        """(id, type) for every type including the base's, from id 1."""
        if self.base is not None:
            yield from self.base.all_types()
        yield from self.types()

    # -- names ------------------------------------------------------------------------------
    def _name_index(self) -> Dict[str, List[int]]:
        if self._names is None:
            names: Dict[str, List[int]] = {}
            unpack = self._s.u32.unpack_from
            data = self.raw
            sid = self.start_id
            string = self.string
            for i, pos in enumerate(self._offsets):
                (no,) = unpack(data, pos)
                if no:
                    n = string(no)
                    lst = names.get(n)
                    if lst is None:
                        names[n] = [sid + i]
                    else:
                        lst.append(sid + i)
            self._names = names
        return self._names

    def find(self, name: str, kind: Optional[Kind] = None) -> List[int]:
        """Ids of the types named ``name`` (of ``kind`` if given), base types first."""
        ids = list(self.base.find(name, kind)) if self.base is not None else []
        own = self._name_index().get(name, ())
        if kind is None:
            ids.extend(own)
        else:
            ids.extend(i for i in own if self.kind_of(i) == kind)
        return ids

    def find_one(self, name: str, kind: Optional[Kind] = None) -> int:
        """The id of the only type named ``name`` (of ``kind``); KeyError when absent."""
        ids = self.find(name, kind)
        if not ids:
            raise KeyError(f"no BTF type named {name!r}" + (f" of kind {kind.name}" if kind else ""))
        return ids[0]

    def names(self) -> Iterator[str]:
        """All type names of this spec (not the base's)."""
        return iter(self._name_index())

    # -- helpers ----------------------------------------------------------------------------
    def skip_modifiers(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type id."""
        for _ in range(_MAX_RESOLVE_DEPTH):
            if self.kind_of(type_id) in MODIFIER_KINDS:
                type_id = self.type(type_id).type  # type: ignore[union-attr]
            else:
                return type_id
        raise ParseError(f"BTF modifier chain from type [{type_id}] is too long or cyclic",
                         file=self.file or "<bytes>", section=".BTF")

    def skip_qualifiers(self, type_id: int) -> int:
        """Follow const/volatile/restrict/type_tag (but not typedef)."""
        for _ in range(_MAX_RESOLVE_DEPTH):
            if self.kind_of(type_id) in (Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG):
                type_id = self.type(type_id).type  # type: ignore[union-attr]
            else:
                return type_id
        raise ParseError(f"BTF qualifier chain from type [{type_id}] is too long or cyclic",
                         file=self.file or "<bytes>", section=".BTF")

    def sizeof(self, type_id: int) -> int:
        """Size in bytes of a type (as the kernel's btf_type_size would compute it)."""
        nelems = 1
        for _ in range(_MAX_RESOLVE_DEPTH):
            t = self.type(type_id)
            k = t.kind
            if k in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.DATASEC, Kind.FLOAT):
                return nelems * t.size  # type: ignore[union-attr]
            if k == Kind.PTR:
                return nelems * 8
            if k == Kind.ARRAY:
                nelems *= t.nelems  # type: ignore[union-attr]
                type_id = t.type  # type: ignore[union-attr]
                continue
            if k in MODIFIER_KINDS or k == Kind.VAR:
                type_id = t.type  # type: ignore[union-attr]
                continue
            raise ParseError(f"BTF type [{type_id}] ({k.name}) has no size",
                             file=self.file or "<bytes>", section=".BTF")
        raise ParseError(f"BTF type [{type_id}] nests too deeply", file=self.file or "<bytes>",
                         section=".BTF")

    def alignof(self, type_id: int) -> int:
        """Natural alignment of a type (for C layout decisions).

        A struct that contains itself (through members, arrays or typedefs)
        cannot exist in C: it raises :class:`ParseError` instead of recursing
        forever.  Results are cached, so types shared by many members are
        walked once.
        """
        return self._alignof(type_id, 0)

    def _alignof(self, type_id: int, depth: int) -> int:
        cached = self._align_cache.get(type_id)
        if cached is not None:
            return cached
        if depth > _MAX_RESOLVE_DEPTH:
            raise ParseError(f"BTF type [{type_id}] nests too deeply or contains itself",
                             file=self.file or "<bytes>", section=".BTF")
        tid = type_id
        for _ in range(_MAX_RESOLVE_DEPTH):
            t = self.type(tid)
            k = t.kind
            if k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
                a = max(1, min(8, t.size))  # type: ignore[union-attr]
            elif k == Kind.PTR:
                a = 8
            elif k == Kind.ARRAY or k in MODIFIER_KINDS or k == Kind.VAR:
                tid = t.type  # type: ignore[union-attr]
                continue
            elif k in (Kind.STRUCT, Kind.UNION):
                a = 1
                for m in t.members:  # type: ignore[union-attr]
                    a = max(a, self._alignof(m.type, depth + 1))
            else:
                a = 1
            self._align_cache[type_id] = a
            return a
        raise ParseError(f"BTF type [{type_id}] nests too deeply or is cyclic",
                         file=self.file or "<bytes>", section=".BTF")

    def type_name(self, type_id: int) -> str:
        """A short C-like description of a type, for messages (``struct task_struct *``)."""
        try:
            return _describe(self, type_id, 0)
        except ParseError:
            return f"[{type_id}]"

    def __repr__(self) -> str:
        return f"<pybpf.btf.Spec {self.file or '<bytes>'} types={len(self) - 1}>"


def _describe(spec: Spec, tid: int, depth: int) -> str:
    if depth > 8:
        return "..."
    if tid == 0:
        return "void"
    t = spec.type(tid)
    k = t.kind
    if k == Kind.STRUCT:
        return f"struct {t.name or '(anon)'}"
    if k == Kind.UNION:
        return f"union {t.name or '(anon)'}"
    if k in (Kind.ENUM, Kind.ENUM64):
        return f"enum {t.name or '(anon)'}"
    if k == Kind.FWD:
        return f"{'union' if t.is_union else 'struct'} {t.name}"  # type: ignore[union-attr]
    if k == Kind.PTR:
        return _describe(spec, t.type, depth + 1) + " *"  # type: ignore[union-attr]
    if k == Kind.ARRAY:
        return f"{_describe(spec, t.type, depth + 1)}[{t.nelems}]"  # type: ignore[union-attr]
    if k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
        return f"{k.name.lower()} {_describe(spec, t.type, depth + 1)}"  # type: ignore[union-attr]
    if k == Kind.FUNC_PROTO:
        return "func_proto"
    return t.name or k.name.lower()

