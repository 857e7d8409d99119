"""Encode and decode Python values through BTF types.

``codec_for(spec, type_id)`` returns a :class:`Codec` that turns the bytes of a
map key/value, a ring buffer record or a global variable into Python values
and back:

* integers -> ``int`` (``bool`` for BTF bool), floats -> ``float``, pointers -> ``int``
* enums -> the type's :class:`enum.IntEnum` member (plain ``int`` for values it does not
  name); encoding accepts an int, a member or the enumerator's name
* ``char`` arrays -> ``str`` (up to the first NUL); other byte arrays (``__u8[]``) -> ``bytes``
* other arrays -> ``list``
* structs, unions and DATASECs -> a *record*: an instance of a tuple subclass generated
  once per type (attribute access, ``_asdict()``, ``_fields``, ``_replace()``, equality and
  hashing like a named tuple; members of anonymous struct/union members are reachable
  directly, as in C).  Encoding accepts a record, a ``dict`` (missing fields are zero) or
  a tuple/list of field values.
* bitfields in both byte orders, ``__int128`` and odd-sized BTF ints.

Why it is fast: a type's whole layout -- nested structs, arrays, bitfield storage units --
is compiled into *one* precompiled :class:`struct.Struct` and a generated Python
expression that builds the value from the unpacked tuple, so decoding is one
``unpack_from`` plus the construction of the result.  :meth:`Codec.decode_many` decodes
a packed run of records (a batch lookup, a ring of fixed-size events) with
``Struct.iter_unpack`` and C-level ``map``.  Encoding packs canonical values (the codec's
own records, full-length lists) in one ``Struct.pack`` and normalises anything else first.

:func:`numpy_dtype` gives the structured numpy dtype of a type, for vectorised paths.
"""

from __future__ import annotations

import enum
import gc
import itertools
import operator
import re
import struct
import sys
import weakref
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import NotSupportedError
from .layout import (
    MAX_DEPTH as _MAX_DEPTH, CodecError, LayoutCompiler, Slow as _Slow, field_names, is_char,
    make_record_class, _bitfield,
)
from .parse import Spec
from .types import IntEncoding, Kind

__all__ = ["Codec", "CodecError", "BytesCodec", "codec_for", "numpy_dtype", "record_class",
           "bitfield_values"]


_FAST_FAIL = (_Slow, struct.error, AttributeError, IndexError, TypeError, ValueError,
              OverflowError, KeyError)


class Codec:
    """Converts between ``size`` bytes and a Python value.

    ``decode(buf, offset=0)`` reads one value from any buffer (bytes, bytearray,
    memoryview, mmap); ``decode_many(buf, count, stride)`` a packed run of them;
    ``encode(value)`` returns ``size`` bytes.
    """
    size: int = 0

    def decode(self, buf: Any, offset: int = 0) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def encode_into(self, buf: Any, offset: int, value: Any) -> None:
        """Encode ``value`` into ``buf[offset:offset + size]`` (a writable buffer)."""
        buf[offset:offset + self.size] = self.encode(value)

    def decode_many(self, buf: Any, count: Optional[int] = None, stride: Optional[int] = None,
                    offset: int = 0) -> List[Any]:
        """Decode ``count`` values laid out every ``stride`` bytes from ``offset``
        (default: as many as fit, ``stride = size``)."""
        stride = stride or self.size
        if count is None:
            count = (len(memoryview(buf).cast("B")) - offset) // stride if stride else 0
        dec = self.decode
        return [dec(buf, offset + i * stride) for i in range(count)]

    def encode_many(self, values: Sequence[Any]) -> bytes:
        """``values`` encoded back to back (``len(values) * size`` bytes)."""
        return b"".join(map(self.encode, values))

    def zero(self) -> Any:
        """The value of ``size`` zero bytes (what a C ``= {}`` initialiser gives)."""
        return self.decode(bytes(self.size))

    def exact_decoder(self) -> Tuple[Callable[[Any], Any], Optional[Callable[[Any], Any]]]:
        """``(read, make)`` such that ``decode(buf)`` equals ``make(read(buf))`` (or
        ``read(buf)`` when ``make`` is ``None``) for a buffer of exactly ``size`` bytes.

        For flat layouts both are C-level callables (``Struct.unpack`` and a tuple
        constructor), so a caller that inlines them decodes a map value without a
        Python frame: the single-element lookup path uses it.
        """
        return self.decode, None

    def int_pack_into(self) -> Optional[Callable[[Any, int, int], None]]:
        """For codecs of plain integers: a ``pack_into(buf, offset, value)`` that encodes an
        ``int`` with no normalisation (``struct.error`` when it does not fit, so the caller
        can fall back to :meth:`encode` for its message); ``None`` for other codecs.

        Element operations use it to write an integer key straight into a prepared buffer.
        """
        return None


class BytesCodec(Codec):
    """The identity codec, for maps without BTF: values are ``bytes`` of a fixed size.

    Encoding also accepts an ``int`` for 1/2/4/8-byte values (little-endian), so
    ``m[3]`` works on a map with 4-byte keys and no BTF.
    """

    def __init__(self, size: int):
        self.size = size

    def decode(self, buf: Any, offset: int = 0) -> bytes:
        return bytes(buf[offset:offset + self.size])

    def decode_many(self, buf: Any, count: Optional[int] = None, stride: Optional[int] = None,
                    offset: int = 0) -> List[bytes]:
        n, stride = self.size, stride or self.size
        mv = memoryview(buf).cast("B")
        if count is None:
            count = (len(mv) - offset) // stride if stride else 0
        if stride == n:
            raw = bytes(mv[offset:offset + count * n])
            return [raw[i:i + n] for i in range(0, count * n, n)]
        return [bytes(mv[offset + i * stride:offset + i * stride + n]) for i in range(count)]

    def exact_decoder(self) -> Tuple[Callable[[Any], Any], Optional[Callable[[Any], Any]]]:
        return bytes, None

    def int_pack_into(self) -> Optional[Callable[[Any, int, int], None]]:
        code = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(self.size)   # unsigned; encode() takes
        return struct.Struct("<" + code).pack_into if code else None   # negatives too

    def encode(self, value: Any) -> bytes:
        if isinstance(value, int) and not isinstance(value, bool) and self.size in (1, 2, 4, 8):
            try:
                return value.to_bytes(self.size, "little", signed=value < 0)
            except OverflowError:
                raise CodecError(f"{value} does not fit {self.size} bytes") from None
        try:
            b = bytes(value)
        except TypeError:
            raise CodecError(f"cannot encode {type(value).__name__} as {self.size} bytes") from None
        if len(b) != self.size:
            raise CodecError(f"expected {self.size} bytes, got {len(b)}")
        return b


_tn_new = tuple.__new__
_first = operator.itemgetter(0)
_VALUE_KINDS = frozenset({Kind.INT, Kind.PTR, Kind.ARRAY, Kind.STRUCT, Kind.UNION, Kind.ENUM,
                          Kind.ENUM64, Kind.FLOAT, Kind.VAR, Kind.DATASEC})


class _CodecCompiler(LayoutCompiler):
    """Layout compiler hooks for live codecs: generated code refers to the codec's own
    record classes, enum lookup tables and union/array sub-codecs."""

    def _enum_expr(self, rid: int, s: str) -> str:
        return f"{self._name(self.c.enum_map(rid), 'e')}.get({s}, {s})"

    def _record_expr(self, rid: int, x: str, parts: List[str]) -> str:
        cn = self._name(self.c.record(rid)[0], "C")
        # the fast encoder takes our records, or plain tuples of the right length
        self.guards.append(f"(type({x}) is {cn} or type({x}) is tuple and len({x}) == {len(parts)})")
        return f"_tn({cn}, ({', '.join(parts)},))" if parts else f"_tn({cn}, ())"

    def _sub_record(self, rid: int, off: int, size: int, x: str) -> str:
        sub = self.c.codec(rid)
        d, e = self._name(sub.decode, "u"), self._name(sub.encode, "ue")
        return f"{d}({self._slot(off, size, f'{size}s', 1, f'{e}({x})')})"

    def _long_array(self, erid: int, n: int, es: int, off: int, x: str) -> Optional[str]:
        sub = _ArrayCodec(self.c.codec(erid), n)
        d, e = self._name(sub.decode, "a"), self._name(sub.encode, "ae")
        return f"{d}({self._slot(off, n * es, f'{n * es}s', 1, f'{e}({x})')})"


class _CompiledCodec(Codec):
    """A codec generated from a type's layout (see :mod:`pybpf.btf.layout`)."""

    def __init__(self, cache: "_SpecCache", tid: int):
        spec = cache.spec
        self.type_id = tid
        self.label = spec.type_name(tid)
        self.size = spec.sizeof(tid)
        comp = _CodecCompiler(cache)
        expr = comp.build(tid, 0, "x", 0)
        c = comp.finish(self.size, self.label)
        self.struct = c.st
        body = expr.format_map(c.refs)
        ns = dict(c.ns, _unpack=c.st.unpack_from, _pack=c.st.pack, _err=struct.error,
                  _short=self._short)
        flat_record = c.flat
        if body == "v[0]":
            src = "def decode(buf, offset=0):\n try:\n  return _unpack(buf, offset)[0]\n" \
                  " except _err:\n  raise _short(buf, offset) from None\n"
            row = "row = None\n"
        elif flat_record is not None:
            ns["_R"] = flat_record
            src = ("def decode(buf, offset=0):\n try:\n  return _tn(_R, _unpack(buf, offset))\n"
                   " except _err:\n  raise _short(buf, offset) from None\n")
            row = "row = None\n"
        else:
            src = (f"def decode(buf, offset=0):\n try:\n  v = _unpack(buf, offset)\n"
                   f" except _err:\n  raise _short(buf, offset) from None\n return {body}\n")
            row = f"def row(v):\n return {body}\n"
        guard = " and ".join(c.guards) or "True"
        args = ", ".join(c.packs)
        src += row + f"def fast(x):\n if {guard}:\n  return _pack({args})\n raise _Slow\n"
        exec(compile(src, f"<pybpf codec {self.label}>", "exec"), ns)
        self.decode = ns["decode"]  # type: ignore[method-assign]
        self._row: Optional[Callable[[Any], Any]] = ns["row"]
        self._flat = flat_record
        self._fast: Callable[[Any], bytes] = c.st.pack if c.packs == ["x"] else ns["fast"]
        self._scalar = body == "v[0]"
        fmt = c.st.format
        self._cast: Optional[str] = fmt[1] if self._scalar and len(fmt) == 2 and \
            fmt[1] in "bBhHiIqQfd" and fmt[0] == ("<" if sys.byteorder == "little" else ">") \
            else None
        self._normalize = cache.normalizer(tid)
        self._strides: Dict[int, struct.Struct] = {self.size: c.st}
        self._columns = _column_plan(fmt) if flat_record is not None else None

    def exact_decoder(self) -> Tuple[Callable[[Any], Any], Optional[Callable[[Any], Any]]]:
        if self._scalar:
            return self.struct.unpack, _first
        if self._flat is not None:
            return self.struct.unpack, partial(_tn_new, self._flat)
        return self.decode, None

    def int_pack_into(self) -> Optional[Callable[[Any, int, int], None]]:
        if self._scalar and self._fast == self.struct.pack and self._cast is not None \
                and self._cast in "bBhHiIqQ":
            return self.struct.pack_into
        return None

    def _short(self, buf: Any, offset: int) -> CodecError:
        try:
            have = len(memoryview(buf).cast("B")) - offset
        except TypeError:
            have = "?"
        return CodecError(f"{self.label}: need {self.size} bytes at offset {offset}, have {have}")

    def encode(self, value: Any) -> bytes:
        try:
            return self._fast(value)
        except _FAST_FAIL:
            pass
        canon = self._normalize(value, self.label)
        try:
            return self._fast(canon)
        except _FAST_FAIL as e:
            raise CodecError(f"{self.label}: cannot encode {value!r}: {e}") from None

    def decode_many(self, buf: Any, count: Optional[int] = None, stride: Optional[int] = None,
                    offset: int = 0) -> List[Any]:
        stride = stride or self.size
        mv = memoryview(buf)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        if count is None:
            count = (len(mv) - offset) // stride if stride else 0
        st = self._strides.get(stride)
        if st is None:
            if stride < self.size:
                raise CodecError(f"{self.label}: stride {stride} is below the size {self.size}")
            st = self._strides[stride] = struct.Struct(self.struct.format + "x" * (stride - self.size))
        end = offset + count * stride
        if end > len(mv):
            raise CodecError(f"{self.label}: {count} values need {end} bytes, have {len(mv)}")
        if self._cast is not None and stride == self.size:   # native-order numbers: one C pass
            return mv[offset:end].cast(self._cast).tolist()
        rows = st.iter_unpack(mv[offset:end])
        if self._scalar:
            return list(map(operator.itemgetter(0), rows))
        # Building many records at once: the cyclic GC would rescan the growing list on
        # every collection for nothing (records cannot form cycles), so pause it.
        paused = count > 4096 and gc.isenabled()
        if paused:
            gc.disable()
        try:
            if self._flat is not None:
                cols = self._columns
                if cols is not None and all(stride % n == 0 for _, _, n in cols):
                    # Field by field in C (memoryview.tolist over a strided view), then one
                    # record per row: no intermediate row tuple (zip reuses its own).
                    body = mv[offset:end]
                    return list(map(_tn_new, itertools.repeat(self._flat), zip(*[
                        body.cast(code)[off // n::stride // n].tolist()
                        for code, off, n in cols])))
                # (map over two iterables calls tuple.__new__(cls, row) directly: a partial
                # would build an argument tuple per record, about 15 % more.)
                return list(map(_tn_new, itertools.repeat(self._flat), rows))
            return list(map(self._row, rows))  # type: ignore[arg-type]
        finally:
            if paused:
                gc.enable()

    def encode_many(self, values: Sequence[Any]) -> bytes:
        # Plain numbers and records of plain numbers pack in one C-level pass; anything
        # else (or any failure) goes value by value, for the normalisation and messages.
        try:
            if self._scalar and self._fast == self.struct.pack:
                return b"".join(map(self.struct.pack, values))
            if self._flat is not None:
                flat = self._flat
                if all(type(v) is flat or type(v) is tuple for v in values):
                    return b"".join(itertools.starmap(self.struct.pack, values))
        except struct.error:
            pass
        return b"".join(map(self.encode, values))

    def __repr__(self) -> str:
        return f"<pybpf codec {self.label} size={self.size}>"


_COLUMN_CODES = frozenset("bBhHiIqQfd")
_FORMAT_ITEM = re.compile(r"(\d*)([a-zA-Z?])")


def _column_plan(fmt: str) -> Optional[List[Tuple[str, int, int]]]:
    """``[(code, offset, size)]`` when every item of a flat record's struct format is one
    native-order, naturally aligned number that ``memoryview.cast`` can read (padding
    allowed); ``None`` otherwise (then records are decoded row by row)."""
    if not fmt or fmt[0] != ("<" if sys.byteorder == "little" else ">"):
        return None
    plan: List[Tuple[str, int, int]] = []
    pos = 0
    for count, code in _FORMAT_ITEM.findall(fmt[1:]):
        n = int(count) if count else 1
        if code == "x":
            pos += n
            continue
        size = struct.calcsize("=" + code)
        if code not in _COLUMN_CODES or n != 1 or pos % size:
            return None
        plan.append((code, pos, size))
        pos += size
    return plan or None


class _ArrayCodec(Codec):
    """Long arrays of records: the element codec per element."""

    def __init__(self, elem: Codec, n: int):
        self.elem, self.n, self.size = elem, n, elem.size * n
        self._normalize = getattr(elem, "_normalize", None)

    def decode(self, buf: Any, offset: int = 0) -> List[Any]:
        return self.elem.decode_many(buf, self.n, self.elem.size, offset)

    def encode(self, value: Any) -> bytes:
        items = list(value)
        if len(items) > self.n:
            raise CodecError(f"{len(items)} items do not fit an array of {self.n}")
        return b"".join(map(self.elem.encode, items)).ljust(self.size, b"\0")


class _UnionCodec(Codec):
    """A union: every member decoded from the same bytes; encoding overlays the members
    whose encoding is not all zeros, in declaration order (so the member that was set wins
    over members left at their zero default)."""

    def __init__(self, cache: "_SpecCache", rid: int):
        spec = cache.spec
        t = spec.type(rid)
        self.size = t.size  # type: ignore[union-attr]
        self.label = spec.type_name(rid)
        self.cls, members = cache.record(rid)
        self.members: List[Tuple[int, Codec]] = []
        for moff, mbits, mtid in members:
            if mbits:
                mt = spec.type(spec.skip_modifiers(mtid))
                self.members.append((0, _BitsCodec(cache, moff, mbits, bool(getattr(mt, "signed", False)),
                                                   self.size)))
            else:
                self.members.append((moff // 8, cache.codec(mtid)))
        self._normalize = cache.normalizer(rid)

    def decode(self, buf: Any, offset: int = 0) -> Any:
        if len(buf) - offset < self.size:
            raise CodecError(f"{self.label}: need {self.size} bytes at offset {offset}")
        return _tn_new(self.cls, [c.decode(buf, offset + o) for o, c in self.members])

    def encode(self, value: Any) -> bytes:
        v = value if type(value) is self.cls else self._normalize(value, self.label)
        out = bytearray(self.size)
        for (o, c), item in zip(self.members, v):
            b = c.encode(item)
            if not any(b):
                continue
            if isinstance(c, _BitsCodec):
                cur = int.from_bytes(out, c.order) & ~c.mask
                out[:] = (cur | int.from_bytes(b, c.order)).to_bytes(self.size, c.order)
            else:
                out[o:o + len(b)] = b
        return bytes(out)


class _BitsCodec(Codec):
    """One bitfield member of a union, over the union's whole size."""

    def __init__(self, cache: "_SpecCache", bit_off: int, bits: int, signed: bool, size: int):
        self.size, self.bits, self.signed, self.order = size, bits, signed, cache.order
        self.shift = bit_off if cache.bo == "<" else size * 8 - bit_off - bits
        self.mask = ((1 << bits) - 1) << self.shift

    def decode(self, buf: Any, offset: int = 0) -> int:
        raw = int.from_bytes(bytes(buf[offset:offset + self.size]), self.order)
        v = (raw >> self.shift) & ((1 << self.bits) - 1)
        return v - (1 << self.bits) if self.signed and v >> (self.bits - 1) else v

    def encode(self, value: Any) -> bytes:
        return (_bitfield(value, self.bits, self.signed) << self.shift).to_bytes(self.size, self.order)


# -- per-spec cache: codecs, record classes, enums, normalisers ---------------------------------

class _SpecCache:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.bo = spec.byteorder
        self.order = "little" if self.bo == "<" else "big"
        self.codecs: Dict[int, Codec] = {}
        self.classes: Dict[int, Tuple[type, List[Tuple[int, int, int]]]] = {}
        self.enums: Dict[int, Tuple[Optional[type], Dict[int, Any]]] = {}
        self.norms: Dict[int, Callable[[Any, str], Any]] = {}
        self.weights: Dict[int, int] = {}

    def codec(self, tid: int) -> Codec:
        c = self.codecs.get(tid)
        if c is None:
            rid = self.spec.skip_modifiers(tid)
            kind = self.spec.kind_of(rid)
            if kind not in _VALUE_KINDS:
                raise CodecError(f"no value codec for BTF {kind.name} {self.spec.type_name(rid)}")
            c = _UnionCodec(self, rid) if kind == Kind.UNION else _CompiledCodec(self, tid)
            self.codecs[tid] = c
        return c

    def enum_class(self, rid: int) -> Optional[type]:
        return self._enum(rid)[0]

    def enum_map(self, rid: int) -> Dict[int, Any]:
        return self._enum(rid)[1]

    def _enum(self, rid: int) -> Tuple[Optional[type], Dict[int, Any]]:
        e = self.enums.get(rid)
        if e is None:
            t = self.spec.type(rid)
            uniq: Dict[str, int] = {}
            for v in t.values:  # type: ignore[union-attr]
                if v.name.isidentifier() and not v.name.startswith("_") and v.name not in ("mro",):
                    uniq.setdefault(v.name, v.value)
            cls: Optional[type] = None
            if uniq:
                try:
                    cls = enum.IntEnum(t.name or "anon_enum", uniq)  # type: ignore[misc]
                except (ValueError, TypeError):
                    cls = None
            e = self.enums[rid] = (cls, {int(m): m for m in cls} if cls else {})
        return e

    def record(self, rid: int) -> Tuple[type, List[Tuple[int, int, int]]]:
        """The record class of struct/union/DATASEC ``rid`` and its members
        ``(bit offset, bitfield bits, type id)``."""
        r = self.classes.get(rid)
        if r is not None:
            return r
        spec = self.spec
        t = spec.type(rid)
        if t.kind == Kind.DATASEC:
            names, members = [], []
            for vs in t.vars:  # type: ignore[union-attr]
                v = spec.type(vs.type)
                if v.kind != Kind.VAR:
                    continue
                names.append(v.name)
                members.append((vs.offset * 8, 0, vs.type))
        else:
            names = [m.name for m in t.members]  # type: ignore[union-attr]
            members = [(m.offset, m.bitfield_size, m.type) for m in t.members]  # type: ignore[union-attr]
        fields = field_names(names)
        zeros = [partial(self._zero_of, mtid, mbits) for _, mbits, mtid in members]
        aliases: Dict[str, Tuple[int, str]] = {}
        for i, (n, (_, mbits, mtid)) in enumerate(zip(names, members)):
            mk = spec.kind_of(spec.skip_modifiers(mtid))
            if not n and not mbits and mk in (Kind.STRUCT, Kind.UNION):
                for inner in self.record(spec.skip_modifiers(mtid))[0]._fields:  # type: ignore[attr-defined]
                    aliases.setdefault(inner, (i, inner))
        cls = make_record_class(t.name, fields, zeros, aliases)
        r = self.classes[rid] = (cls, members)
        return r

    def _zero_of(self, tid: int, bits: int) -> Any:
        if bits:
            return 0
        return self.codec(tid).zero()

    def normalizer(self, tid: int) -> Callable[[Any, str], Any]:
        f = self.norms.get(tid)
        if f is None:
            f = self.norms[tid] = _build_normalizer(self, tid, 0)
        return f


def _build_normalizer(cache: _SpecCache, tid: int, depth: int) -> Callable[[Any, str], Any]:
    """A function ``(value, where) -> canonical value`` (the form the fast encoder packs):
    records of the codec's own classes, full-length lists, ints in range; raises
    :class:`CodecError` naming the field otherwise."""
    if depth > _MAX_DEPTH:
        raise CodecError(f"BTF type [{tid}] nests too deeply to build a codec")
    spec = cache.spec
    rid = spec.skip_modifiers(tid)
    t = spec.type(rid)
    k = t.kind
    if k == Kind.VAR:
        return _build_normalizer(cache, t.type, depth + 1)  # type: ignore[union-attr]
    if k == Kind.INT and t.encoding & IntEncoding.BOOL and t.size == 1:  # type: ignore[union-attr]
        return lambda v, where: bool(v)
    if k in (Kind.INT, Kind.PTR):
        size = 8 if k == Kind.PTR else t.size  # type: ignore[union-attr]
        bits = t.bits if k == Kind.INT and t.bits else size * 8  # type: ignore[union-attr]
        signed = k == Kind.INT and t.signed  # type: ignore[union-attr]
        return partial(_norm_int, bits=bits, signed=signed)
    if k in (Kind.ENUM, Kind.ENUM64):
        cls = cache.enum_class(rid)
        return partial(_norm_enum, cls=cls, bits=t.size * 8, signed=t.signed)  # type: ignore[union-attr]
    if k == Kind.FLOAT:
        return _norm_float if t.size in (4, 8) else lambda v, where: v  # type: ignore[union-attr]
    if k == Kind.ARRAY:
        n = t.nelems  # type: ignore[union-attr]
        if n == 0 or spec.sizeof(rid) == 0:
            return lambda v, where: []    # holds no bytes (flexible or zero-sized elements)
        et = spec.type(spec.skip_modifiers(t.type))  # type: ignore[union-attr]
        if et.kind == Kind.INT and et.size == 1 and not et.bits % 8:  # type: ignore[union-attr]
            return partial(_norm_bytes, n=n, char=is_char(et))
        elem = _build_normalizer(cache, t.type, depth + 1)  # type: ignore[union-attr]
        zero = partial(cache.codec(t.type).zero)  # type: ignore[union-attr]
        return partial(_norm_list, n=n, elem=elem, zero=zero)
    if k in (Kind.STRUCT, Kind.UNION, Kind.DATASEC):
        cls, members = cache.record(rid)
        norms = []
        for moff, mbits, mtid in members:
            if mbits:
                mt = spec.type(spec.skip_modifiers(mtid))
                if mt.kind in (Kind.ENUM, Kind.ENUM64):
                    norms.append(partial(_norm_enum, cls=cache.enum_class(spec.skip_modifiers(mtid)),
                                         bits=mbits, signed=bool(getattr(mt, "signed", False))))
                else:
                    norms.append(partial(_norm_int, bits=mbits, signed=bool(getattr(mt, "signed", False))))
            else:
                norms.append(cache.normalizer(mtid))
        return partial(_norm_record, cls=cls, norms=norms)
    raise CodecError(f"no value codec for BTF {k.name} {spec.type_name(rid)}")


def _norm_int(v: Any, where: str, bits: int, signed: bool) -> int:
    try:
        v = operator.index(v)
    except TypeError:
        raise CodecError(f"{where}: expected an integer, got {type(v).__name__} {v!r}") from None
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= v <= hi:
        raise CodecError(f"{where}: {v} does not fit a {'signed' if signed else 'unsigned'} "
                         f"{bits}-bit integer")
    return v


def _norm_enum(v: Any, where: str, cls: Optional[type], bits: int, signed: bool) -> int:
    if isinstance(v, str):
        if cls is None or v not in cls.__members__:  # type: ignore[attr-defined]
            raise CodecError(f"{where}: unknown enumerator {v!r}")
        v = cls[v]  # type: ignore[index]
    return _norm_int(v, where, bits, signed)


def _norm_float(v: Any, where: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise CodecError(f"{where}: expected a number, got {v!r}") from None


def _norm_bytes(v: Any, where: str, n: int, char: bool) -> bytes:
    if isinstance(v, str):
        b = v.encode()
    else:
        try:
            b = bytes(v)
        except (TypeError, ValueError):
            raise CodecError(f"{where}: expected {'str' if char else 'bytes'}, got {v!r}") from None
    if len(b) > n:
        raise CodecError(f"{where}: {len(b)} bytes do not fit {'char' if char else 'u8'}[{n}]")
    return b


def _norm_list(v: Any, where: str, n: int, elem: Callable[[Any, str], Any],
               zero: Callable[[], Any]) -> List[Any]:
    try:
        items = list(v)
    except TypeError:
        raise CodecError(f"{where}: expected a sequence of {n}, got {v!r}") from None
    if len(items) > n:
        raise CodecError(f"{where}: {len(items)} items do not fit an array of {n}")
    out = [elem(x, f"{where}[{i}]") for i, x in enumerate(items)]
    out.extend(zero() for _ in range(n - len(out)))
    return out


def _norm_record(v: Any, where: str, cls: type, norms: List[Callable[[Any, str], Any]]) -> Any:
    fields = cls._fields  # type: ignore[attr-defined]
    if isinstance(v, dict):
        unknown = set(v) - set(fields)
        if unknown:
            raise CodecError(f"{where}: unknown field(s) {sorted(unknown)} for {cls.__name__}")
        v = cls(**v)
    elif type(v) is not cls:
        if isinstance(v, (tuple, list)):
            if len(v) > len(fields):
                raise CodecError(f"{where}: {len(v)} values for {len(fields)} fields of {cls.__name__}")
            v = cls(*v)
        else:
            raise CodecError(f"{where}: cannot encode {type(v).__name__} as {cls.__name__}")
    return _tn_new(cls, [f(x, f"{where}.{n}") for f, x, n in zip(norms, v, fields)])


# -- public API -------------------------------------------------------------------------------------

_CACHE: "weakref.WeakKeyDictionary[Spec, _SpecCache]" = weakref.WeakKeyDictionary()


def _cache(spec: Spec) -> _SpecCache:
    c = _CACHE.get(spec)
    if c is None:
        c = _CACHE[spec] = _SpecCache(spec)
    return c


def codec_for(spec: Spec, type_id: int) -> Codec:
    """The (cached) codec for BTF type ``type_id`` of ``spec``.

    Raises :class:`CodecError` for types that hold no value (void, functions,
    forward declarations).
    """
    try:
        return _cache(spec).codec(type_id)
    except RecursionError:
        raise CodecError(f"BTF type [{type_id}] nests too deeply to build a codec") from None


def record_class(spec: Spec, type_id: int) -> type:
    """The record class a codec decodes struct/union ``type_id`` into (build values with
    ``cls(field=...)``; unspecified fields are zero)."""
    rid = spec.skip_modifiers(type_id)
    if spec.kind_of(rid) not in (Kind.STRUCT, Kind.UNION, Kind.DATASEC):
        raise CodecError(f"{spec.type_name(type_id)} is not a struct or union")
    return _cache(spec).record(rid)[0]


def numpy_dtype(spec: Spec, type_id: int) -> Any:
    """The numpy structured dtype of BTF type ``type_id`` (for vectorised decoding:
    ``numpy.frombuffer(buf, dtype)``).

    Integers keep their size, signedness and the spec's byte order, enums are their
    integer type, ``char``/``u8`` arrays are ``S<n>`` byte strings, other arrays sub-array
    fields, structs nested dtypes, union members overlap at their offsets, and the
    itemsize is the C size.  numpy has no bitfields: each run of bitfields becomes an
    unsigned ``_bits<offset>`` field holding the storage bytes, and the dtype's
    ``metadata["bitfields"]`` says how to extract each one (see :func:`bitfield_values`).
    Raises :class:`~pybpf.errors.NotSupportedError` when numpy is not installed.
    """
    try:
        import numpy as np
    except ImportError:
        raise NotSupportedError("numpy dtypes", "numpy is not installed (pip install numpy)") from None
    return _dtype(np, spec, type_id, 0)


def _dtype(np: Any, spec: Spec, tid: int, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise CodecError(f"BTF type [{tid}] nests too deeply for a dtype")
    bo = spec.byteorder
    rid = spec.skip_modifiers(tid)
    t = spec.type(rid)
    k = t.kind
    if k == Kind.VAR:
        return _dtype(np, spec, t.type, depth + 1)  # type: ignore[union-attr]
    if k == Kind.INT or k in (Kind.ENUM, Kind.ENUM64):
        size = t.size  # type: ignore[union-attr]
        if k == Kind.INT and t.encoding & IntEncoding.BOOL and size == 1:  # type: ignore[union-attr]
            return np.dtype("?")
        if size not in (1, 2, 4, 8):
            return np.dtype(f"V{size}")
        return np.dtype(f"{bo}{'i' if t.signed else 'u'}{size}")  # type: ignore[union-attr]
    if k == Kind.PTR:
        return np.dtype(f"{bo}u8")
    if k == Kind.FLOAT:
        return np.dtype(f"{bo}f{t.size}") if t.size in (4, 8) else np.dtype(f"V{t.size}")  # type: ignore[union-attr]
    if k == Kind.ARRAY:
        et = spec.type(spec.skip_modifiers(t.type))  # type: ignore[union-attr]
        if et.kind == Kind.INT and et.size == 1:  # type: ignore[union-attr]
            return np.dtype(f"S{t.nelems}")  # type: ignore[union-attr]
        return np.dtype((_dtype(np, spec, t.type, depth + 1), (t.nelems,)))  # type: ignore[union-attr]
    if k in (Kind.STRUCT, Kind.UNION, Kind.DATASEC):
        cls, members = _cache(spec).record(rid)
        names, formats, offsets = [], [], []
        bitfields: Dict[str, Tuple[str, int, int, bool]] = {}
        units: Dict[int, Tuple[str, int]] = {}
        for name, (moff, mbits, mtid) in zip(cls._fields, members):  # type: ignore[attr-defined]
            if mbits:
                start, end = moff // 8, (moff + mbits + 7) // 8
                size = next(s for s in (1, 2, 4, 8, 16) if s >= end - start)
                unit = units.get(start)
                if unit is None or unit[1] < size:
                    units[start] = (f"_bits{start}", size)
                rel = moff - start * 8
                shift = rel if bo == "<" else size * 8 - rel - mbits
                mt = spec.type(spec.skip_modifiers(mtid))
                bitfields[name] = (f"_bits{start}", shift, mbits, bool(getattr(mt, "signed", False)))
                continue
            names.append(name)
            formats.append(_dtype(np, spec, mtid, depth + 1))
            offsets.append(moff // 8)
        for start, (uname, size) in units.items():
            names.append(uname)
            formats.append(np.dtype(f"{bo}u{size}") if size <= 8 else np.dtype("V16"))
            offsets.append(start)
        meta = {"bitfields": bitfields} if bitfields else None
        d = {"names": names, "formats": formats, "offsets": offsets, "itemsize": t.size}  # type: ignore[union-attr]
        return np.dtype(d, metadata=meta) if meta else np.dtype(d)
    raise CodecError(f"no numpy dtype for BTF {k.name} {spec.type_name(rid)}")


def bitfield_values(records: Any, name: str) -> Any:
    """The values of bitfield ``name`` for a numpy array decoded with :func:`numpy_dtype`
    (vectorised shift, mask and sign extension)."""
    meta = records.dtype.metadata or {}
    try:
        unit, shift, bits, signed = meta["bitfields"][name]
    except KeyError:
        raise CodecError(f"{name!r} is not a bitfield of this dtype") from None
    v = (records[unit].astype("u8") >> shift) & ((1 << bits) - 1)
    if signed:
        v = v.astype("i8")
        v = (v ^ (1 << (bits - 1))) - (1 << (bits - 1))
    return v

