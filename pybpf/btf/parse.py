"""BTF parsing: raw BTF bytes -> :class:`Spec`.

The parser indexes type offsets in one pass and decodes each type only when
it is asked for, so kernel BTF (100k+ types) is cheap to open.  Split BTF
(kernel modules) is supported through ``base``.  Every malformed input raises
:class:`pybpf.errors.ParseError`; nothing else escapes.
"""

from __future__ import annotations

import mmap
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from typing import Dict, Iterator, List, Optional, Sequence, Union as _U

from ..errors import ParseError
from .cache import NameIndex, TypeIndex, build_name_index
from .types import (
    MODIFIER_KINDS, AnyType, Array, Const, Datasec, DeclTag, Enum, Enum64, EnumValue, Float, Func,
    FuncProto, Fwd, Int, IntEncoding, Kind, Linkage, Member, Param, Ptr, Restrict, Struct,
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
# The byte holding kflag|kind of a record -> Kind (None for kinds this parser does not know).
_KIND_OF_BYTE: List[Optional[Kind]] = [Kind(b & 0x1F) if b & 0x1F in _EXTRA else None
                                       for b in range(256)]
_KIND_MASK = bytes(b & 0x1F for b in range(256))
_NATIVE = "<" if sys.byteorder == "little" else ">"
Buffer = _U[bytes, bytearray, memoryview, mmap.mmap]

_VOID = Void()


class Spec:
    """A parsed BTF blob: types by id, names, strings.

    Build one with :meth:`parse` (raw BTF bytes); :func:`pybpf.kbtf.load_kernel_btf`
    opens kernel BTF (with an on-disk index cache) and :mod:`pybpf.elf` the
    BTF of objects.

    Type ids of a split spec (module BTF) continue after its ``base``'s ids;
    lookups by id or name fall through to the base.
    """

    def __init__(self, data: Buffer, *, base: Optional["Spec"] = None, byteorder: str,
                 hdr_len: int, type_off: int, type_len: int, str_off: int, str_len: int,
                 file: Optional[str] = None):
        self.raw: _U[bytes, mmap.mmap] = data  # type: ignore[assignment]
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
        self._kind_at = 7 if byteorder == "<" else 4     # byte holding kflag|kind in a record
        self._offsets: Sequence[int] = array("I")
        self._names: Optional[NameIndex] = None
        self._name_offs: Optional[Sequence[int]] = None   # from the walk, until the name index exists
        self._cache: Dict[int, AnyType] = {}
        self._str_cache: Dict[int, str] = {}
        self._find_cache: Dict[str, Sequence[int]] = {}
        self._align_cache: Dict[int, int] = {}

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def parse(cls, data: Buffer, *, base: Optional["Spec"] = None, file: Optional[str] = None,
              index: Optional[TypeIndex] = None) -> "Spec":
        """Parse raw BTF (as in /sys/kernel/btf/* or an ELF's .BTF section).

        ``data`` may be ``bytes`` or a read-only ``mmap`` (kept, not copied);
        other buffers are copied.  ``index`` is a previously built
        :class:`~pybpf.btf.cache.TypeIndex` of the same blob (from the on-disk
        cache): it replaces the indexing pass after a plausibility check, and
        a :class:`ParseError` says when it does not fit the blob.
        """
        if not isinstance(data, (bytes, mmap.mmap)):
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
        if index is not None:
            spec._adopt(index)
        else:
            spec._walk()
        return spec

    def _fail(self, msg: str, offset: Optional[int] = None) -> ParseError:
        return ParseError(msg, file=self.file or "<bytes>", section=".BTF", offset=offset)

    def _words(self) -> Sequence[int]:
        """The type section as native ``uint32`` words (a view when byte orders agree)."""
        start, end = self._types_start, self._types_end
        if (end - start) % 4:
            raise self._fail("BTF type section ends inside a type record", end)
        if self.byteorder == _NATIVE:
            return memoryview(self.raw)[start:end].cast("I")
        words = array("I", self.raw[start:end])
        words.byteswap()
        return words

    def _walk(self) -> None:
        """The one indexing pass: the word offset and name offset of every type record.

        The size of a record depends only on its ``info`` word (kind and vlen),
        and vmlinux has a few hundred distinct ``info`` values, so sizes are
        memoized per ``info`` and the loop does one dict lookup per type.
        Name offsets are gathered on the way for the name index (built on the
        first lookup by name, see :meth:`_name_index`).
        """
        words = self._words()
        offsets = array("I")
        name_offs = array("I")
        add = offsets.append
        add_name = name_offs.append
        steps: Dict[int, int] = {}
        n = len(words)
        i = 0
        try:
            while i < n:
                add(i)
                add_name(words[i])
                info = words[i + 1]
                try:
                    i += steps[info]
                except KeyError:
                    kind = (info >> 24) & 0x1F
                    if kind == 0 or not _VALID_KIND[kind]:
                        raise self._fail(f"unknown BTF kind {kind} for type "
                                         f"[{self.start_id + len(offsets) - 1}]",
                                         self._types_start + 4 * i) from None
                    step = steps[info] = 3 + (_EXTRA_FIXED[kind] + _EXTRA_VLEN[kind] * (info & 0xFFFF)) // 4
                    i += step
        except IndexError:
            raise self._fail("truncated BTF type record", self._types_start + 4 * i) from None
        if i != n:
            raise self._fail("BTF type section ends inside a type record", self._types_start + 4 * i)
        self._offsets = offsets
        self._name_offs = name_offs

    def _adopt(self, index: TypeIndex) -> None:
        """Use a cached index after checking that it plausibly belongs to this blob."""
        offs = index.offsets
        nwords = (self._types_end - self._types_start) // 4
        ok = True
        if len(offs):
            words = self._words()
            last = offs[-1]
            ok = offs[0] == 0 and last < nwords
            if ok:
                info = words[last + 1] if last + 1 < nwords else 0
                kind = (info >> 24) & 0x1F
                ok = _VALID_KIND[kind] and kind != 0 and \
                    last + 3 + (_EXTRA_FIXED[kind] + _EXTRA_VLEN[kind] * (info & 0xFFFF)) // 4 == nwords
            step = max(1, len(offs) // 16)
            for j in range(0, len(offs), step):
                if not ok:
                    break
                w = offs[j]
                ok = w < nwords - 1 and _VALID_KIND[(words[w + 1] >> 24) & 0x1F]
        elif nwords:
            ok = False
        names = index.names
        if ok and names is not None:
            ids = names.by_name
            ok = len(names.name_offs) == len(offs) and all(ids[j] < len(offs) for j in (0, -1) if len(ids))
        if not ok:
            raise self._fail("the cached type index does not fit this BTF")
        self._offsets = offs
        self._names = names

    def kinds(self) -> bytes:
        """The kind of each of this spec's own types, one byte per type (index ``id - start_id``),
        gathered at C speed: scanning a spec for a kind is a ``bytes.find`` loop."""
        view = memoryview(self.raw)[self._types_start + self._kind_at:self._types_end]
        return bytes(map(view.__getitem__, map((4).__mul__, self._offsets))).translate(_KIND_MASK)

    def ids_of_kind(self, kind: Kind) -> List[int]:
        """Ids of this spec's own types of ``kind``, ascending."""
        kinds = self.kinds()
        needle = bytes([int(kind)])
        out = []
        pos = kinds.find(needle)
        while pos >= 0:
            out.append(self.start_id + pos)
            pos = kinds.find(needle, pos + 1)
        return out

    def record_pos(self, type_id: int) -> int:
        """Byte offset in :attr:`raw` of the record of own type ``type_id`` (for raw patching)."""
        idx = type_id - self.start_id
        if not 0 <= idx < len(self._offsets):
            raise self._fail(f"BTF type id {type_id} is not one of this spec's own types")
        return self._types_start + 4 * self._offsets[idx]

    @property
    def index_offsets(self) -> Sequence[int]:
        """Word offset of each own type record in the type section (see :class:`TypeIndex`)."""
        return self._offsets

    @property
    def types_range(self) -> "tuple[int, int]":
        """[start, end) of the type section in :attr:`raw`."""
        return self._types_start, self._types_end

    @property
    def index(self) -> TypeIndex:
        """This spec's :class:`~pybpf.btf.cache.TypeIndex` with its name index (built if needed),
        as saved by the on-disk cache."""
        return TypeIndex(self._offsets, self._name_index())

    # -- strings ----------------------------------------------------------------------------
    @property
    def _str_len_total(self) -> int:
        return self._str_base + self._str_len

    def _name_bytes(self, off: int) -> bytes:
        """The raw bytes of the string at offset ``off`` (combined base + own table)."""
        if off < self._str_base:
            assert self.base is not None
            return self.base._name_bytes(off)
        rel = off - self._str_base
        if rel >= self._str_len:
            raise self._fail(f"BTF string offset {off} outside the string section")
        start = self._str_start + rel
        nul = self.raw.find(b"\0", start, self._str_start + self._str_len)
        if nul < 0:
            raise self._fail(f"unterminated BTF string at offset {off}")
        return self.raw[start:nul]

    def string(self, off: int) -> str:
        """The string at offset ``off`` of the (combined base + own) string table."""
        s = self._str_cache.get(off)
        if s is None:
            b = self._name_bytes(off)
            try:
                s = b.decode("utf-8")
            except UnicodeDecodeError:
                s = b.decode("latin-1")
            self._str_cache[off] = s
        return s

    @property
    def strings_raw(self) -> bytes:
        """This spec's own raw string section (not its base's)."""
        return bytes(self.raw[self._str_start:self._str_start + self._str_len])

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
                raise self._fail(f"BTF type id {type_id} out of range")
            return self.base.type(type_id)
        idx = type_id - self.start_id
        if idx >= len(self._offsets) or idx < 0:
            raise self._fail(f"BTF type id {type_id} out of range (have {len(self)})")
        t = self._decode(self._types_start + 4 * self._offsets[idx], type_id)
        self._cache[type_id] = t
        return t

    def kind_of(self, type_id: int) -> Kind:
        """The kind of a type without decoding it."""
        idx = type_id - self.start_id
        if 0 <= idx < len(self._offsets):
            k = _KIND_OF_BYTE[self.raw[self._types_start + 4 * self._offsets[idx] + self._kind_at]]
            if k is None:
                raise self._fail(f"BTF type [{type_id}] has an unknown kind")
            return k
        if type_id == 0:
            return Kind.UNKN
        if type_id < self.start_id and self.base is not None:
            return self.base.kind_of(type_id)
        raise self._fail(f"BTF type id {type_id} out of range")

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
            vals64: List[EnumValue] = []
            for i in range(vlen):
                vn, lo, hi = s.enum64.unpack_from(data, p + 12 * i)
                v = (hi << 32) | lo
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                vals64.append(EnumValue(self.string(vn), v))
            return Enum64(name, size_type, kflag, tuple(vals64))
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
    def _name_index(self) -> NameIndex:
        if self._names is None:
            name_offs = self._name_offs
            if name_offs is None:
                words = self._words()
                name_offs = array("I", map(words.__getitem__, self._offsets))
            own_strings = bytes(self.raw[self._str_start:self._str_start + self._str_len]) \
                if self.base is None else None
            self._names = build_name_index(name_offs, own_strings, self._name_bytes)
            self._name_offs = None
        return self._names

    def _own_ids(self, name: str) -> Sequence[int]:
        """Ids of this spec's own types named ``name`` (ascending)."""
        ids = self._find_cache.get(name)
        if ids is not None:
            return ids
        index = self._name_index()
        names, by_name, name_of = index.names, index.by_name, index.name_offs.__getitem__
        found: List[int] = []
        for key in _name_keys(name):
            pos = bisect_left(names, key, key=self._name_bytes)
            while pos < len(names) and self._name_bytes(names[pos]) == key:
                off = names[pos]
                lo = bisect_left(by_name, off, key=name_of)
                found.extend(by_name[lo:bisect_right(by_name, off, lo, key=name_of)])
                pos += 1
        found = [self.start_id + i for i in found]
        if len(found) > 1:
            found.sort()
        ids = tuple(found)
        if len(self._find_cache) < 4096:
            self._find_cache[name] = ids
        return ids

    def find(self, name: str, kind: Optional[Kind] = None) -> List[int]:
        """Ids of the types named ``name`` (of ``kind`` if given), base types first."""
        ids = list(self.base.find(name, kind)) if self.base is not None else []
        own = self._own_ids(name)
        if kind is None:
            ids.extend(own)
        else:
            ids.extend(i for i in own if self.kind_of(i) == kind)
        return ids

    def find_one(self, name: str, kind: Optional[Kind] = None) -> int:
        """The id of the first type named ``name`` (of ``kind``); KeyError when absent."""
        ids = self.find(name, kind)
        if not ids:
            raise KeyError(f"no BTF type named {name!r}" + (f" of kind {kind.name}" if kind else ""))
        return ids[0]

    def names(self) -> Iterator[str]:
        """All distinct type names of this spec (not the base's), in byte order."""
        return (self.string(off) for off in self._name_index().names)

    def names_containing(self, fragment: str) -> List[str]:
        """This spec's own type names that contain ``fragment`` (e.g. ``"___"`` for flavors).

        Searches the raw string section (C speed) and maps each hit to the type
        names around it, instead of decoding every name: cheap on vmlinux BTF.
        """
        needle = _name_keys(fragment)[0]
        if not needle:
            return list(self.names())
        index = self._name_index()
        by_name, name_of = index.by_name, index.name_offs.__getitem__
        raw, lo, hi = self.raw, self._str_start, self._str_start + self._str_len
        found: Dict[int, None] = {}
        pos = raw.find(needle, lo, hi)
        while pos >= 0:
            start = raw.rfind(b"\0", lo, pos) + 1      # the string holding the hit ...
            base = self._str_base - lo
            # ... and every type name that starts inside it, up to the hit
            first = bisect_left(by_name, start + base, key=name_of)
            last = bisect_right(by_name, pos + base, first, key=name_of)
            for k in range(first, last):
                found[name_of(by_name[k])] = None
            end = raw.find(b"\0", pos, hi)
            pos = raw.find(needle, end, hi) if end >= 0 else -1
        return [self.string(off) for off in found]

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


def _name_keys(name: str) -> List[bytes]:
    """The raw bytes a decoded name may have come from: UTF-8, or Latin-1 for the
    names :meth:`Spec.string` decoded that way because they were not UTF-8."""
    try:
        keys = [name.encode("utf-8")]
    except UnicodeEncodeError:
        keys = []
    if not name.isascii():
        try:
            latin = name.encode("latin-1")
        except UnicodeEncodeError:
            pass
        else:
            try:
                latin.decode("utf-8")
            except UnicodeDecodeError:
                keys.append(latin)
    return keys or [b""]


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

