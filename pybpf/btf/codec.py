"""Encode and decode Python values through BTF types.

``codec_for(spec, type_id)`` returns a :class:`Codec` that turns the bytes of a
map key/value or global variable into Python values and back:

* integers -> ``int`` (``bool`` for BTF bool), floats -> ``float``, pointers -> ``int``
* enums -> the type's :class:`enum.IntEnum` member (plain ``int`` for unknown values);
  encoding accepts an int or the enumerator's name
* ``char`` arrays -> ``str`` (up to the first NUL); encoding accepts ``str`` or ``bytes``
* other arrays -> ``list``
* structs and unions -> an instance of a class generated per type (attribute access,
  ``_asdict()``, equality); encoding accepts that class, a ``dict`` or a tuple
* bitfields are handled in both byte orders.

Codecs are cached per (spec, type id); structs made only of byte-aligned
integers decode through one precompiled ``struct.Struct``.
"""

from __future__ import annotations

import enum
import keyword
import struct
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs

from ..errors import BPFError
from .parse import Spec
from .types import Kind

__all__ = ["Codec", "codec_for", "BytesCodec"]

_INT_FMT = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
            (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}


class Codec:
    """Converts between bytes of ``size`` and a Python value."""
    size: int = 0

    def decode(self, buf: Any, offset: int = 0) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def encode_into(self, buf: Any, offset: int, value: Any) -> None:
        buf[offset:offset + self.size] = self.encode(value)


class BytesCodec(Codec):
    """The identity codec, for maps without BTF: values are ``bytes`` of a fixed size."""

    def __init__(self, size: int):
        self.size = size

    def decode(self, buf: Any, offset: int = 0) -> bytes:
        return bytes(buf[offset:offset + self.size])

    def encode(self, value: Any) -> bytes:
        if isinstance(value, int) and not isinstance(value, bool) and self.size in (1, 2, 4, 8):
            return value.to_bytes(self.size, "little", signed=value < 0)
        b = bytes(value)
        if len(b) != self.size:
            raise ValueError(f"expected {self.size} bytes, got {len(b)}")
        return b


class _IntCodec(Codec):
    def __init__(self, size: int, signed: bool, bo: str, is_bool: bool = False):
        self.size = size
        self.signed = signed
        self.is_bool = is_bool
        fmt = _INT_FMT.get((size, signed))
        self._st = struct.Struct(bo + fmt) if fmt else None
        self._bo = "little" if bo == "<" else "big"

    def decode(self, buf: Any, offset: int = 0) -> Any:
        if self._st is not None:
            v = self._st.unpack_from(buf, offset)[0]
        else:
            v = int.from_bytes(bytes(buf[offset:offset + self.size]), self._bo, signed=self.signed)
        return bool(v) if self.is_bool else v

    def encode(self, value: Any) -> bytes:
        v = int(value)
        try:
            if self._st is not None:
                return self._st.pack(v)
            return v.to_bytes(self.size, self._bo, signed=self.signed)
        except (struct.error, OverflowError):
            raise ValueError(f"{value!r} does not fit a {'signed' if self.signed else 'unsigned'} "
                             f"{self.size}-byte integer") from None


class _FloatCodec(Codec):
    def __init__(self, size: int, bo: str):
        self.size = size
        if size not in (4, 8):
            raise BPFError(f"unsupported float size {size}")
        self._st = struct.Struct(bo + ("f" if size == 4 else "d"))

    def decode(self, buf: Any, offset: int = 0) -> float:
        return self._st.unpack_from(buf, offset)[0]

    def encode(self, value: Any) -> bytes:
        return self._st.pack(float(value))


class _EnumCodec(_IntCodec):
    def __init__(self, size: int, signed: bool, bo: str, name: str, values: Sequence[Tuple[str, int]]):
        super().__init__(size, signed, bo)
        uniq: Dict[str, int] = {}
        for n, v in values:
            uniq.setdefault(n, v)
        self.enum: Optional[type] = None
        if uniq:
            try:
                self.enum = enum.IntEnum(name or "anon_enum", uniq)  # type: ignore[misc]
            except (ValueError, TypeError):
                self.enum = None
        self._by_value = {int(m): m for m in self.enum} if self.enum else {}

    def decode(self, buf: Any, offset: int = 0) -> Any:
        v = super().decode(buf, offset)
        return self._by_value.get(v, v)

    def encode(self, value: Any) -> bytes:
        if isinstance(value, str):
            if self.enum is None or value not in self.enum.__members__:
                raise ValueError(f"unknown enumerator {value!r}")
            value = self.enum[value]
        return super().encode(value)


class _CharArrayCodec(Codec):
    def __init__(self, n: int):
        self.size = n

    def decode(self, buf: Any, offset: int = 0) -> str:
        raw = bytes(buf[offset:offset + self.size])
        nul = raw.find(b"\0")
        if nul >= 0:
            raw = raw[:nul]
        return raw.decode("utf-8", "replace")

    def encode(self, value: Any) -> bytes:
        b = value.encode() if isinstance(value, str) else bytes(value)
        if len(b) > self.size:
            raise ValueError(f"{len(b)} bytes do not fit char[{self.size}]")
        return b.ljust(self.size, b"\0")


class _ArrayCodec(Codec):
    def __init__(self, elem: Codec, n: int):
        self.elem = elem
        self.n = n
        self.size = elem.size * n

    def decode(self, buf: Any, offset: int = 0) -> List[Any]:
        es = self.elem.size
        dec = self.elem.decode
        return [dec(buf, offset + i * es) for i in range(self.n)]

    def encode(self, value: Any) -> bytes:
        items = list(value)
        if len(items) > self.n:
            raise ValueError(f"{len(items)} items do not fit an array of {self.n}")
        out = b"".join(self.elem.encode(v) for v in items)
        return out.ljust(self.size, b"\0")


@attrs.frozen
class _Field:
    name: str
    codec: Optional[Codec]      # None for bitfields
    byte_off: int
    bit_off: int = 0
    bits: int = 0
    signed: bool = False


def _make_record_class(name: str, fields: Sequence[str]) -> type:
    safe = [f if f.isidentifier() and not keyword.iskeyword(f) else
            (f"{f}_" if f.isidentifier() else f"_{i}") for i, f in enumerate(fields)]
    cls = attrs.make_class(name or "anon", {f: attrs.field(default=0) for f in safe},
                           slots=True, repr_ns=None)

    def _asdict(self: Any) -> Dict[str, Any]:
        return {f: getattr(self, f) for f in safe}

    cls._asdict = _asdict  # type: ignore[attr-defined]
    cls._fields = tuple(safe)  # type: ignore[attr-defined]
    return cls


class _RecordCodec(Codec):
    def __init__(self, name: str, size: int, fields: List[_Field], bo: str, is_union: bool):
        self.size = size
        self.fields = fields
        self.bo = bo
        self.is_union = is_union
        self.cls = _make_record_class(name, [f.name for f in fields])
        self.names = list(self.cls._fields)  # type: ignore[attr-defined]
        self._fast: Optional[struct.Struct] = None
        if not is_union and fields and all(isinstance(f.codec, _IntCodec) and f.codec._st is not None
                                           and not isinstance(f.codec, _EnumCodec)
                                           and not f.codec.is_bool and not f.bits for f in fields):
            fmt, pos = bo, 0
            for f in fields:
                if f.byte_off < pos:
                    fmt = None  # type: ignore[assignment]
                    break
                fmt += "x" * (f.byte_off - pos) + f.codec._st.format[1:]  # type: ignore[union-attr]
                pos = f.byte_off + f.codec.size  # type: ignore[union-attr]
            if fmt is not None and pos <= size:
                self._fast = struct.Struct(fmt + "x" * (size - pos))

    def decode(self, buf: Any, offset: int = 0) -> Any:
        if self._fast is not None:
            return self.cls(*self._fast.unpack_from(buf, offset))
        vals = []
        for f in self.fields:
            if f.codec is not None:
                vals.append(f.codec.decode(buf, offset + f.byte_off))
            else:
                vals.append(self._get_bits(buf, offset, f))
        return self.cls(*vals)

    def _span(self, f: _Field) -> Tuple[int, int]:
        start = f.bit_off // 8
        end = (f.bit_off + f.bits + 7) // 8
        return start, end

    def _get_bits(self, buf: Any, offset: int, f: _Field) -> int:
        start, end = self._span(f)
        raw = int.from_bytes(bytes(buf[offset + start:offset + end]), "little" if self.bo == "<" else "big")
        width = (end - start) * 8
        if self.bo == "<":
            shift = f.bit_off - start * 8
        else:
            shift = width - (f.bit_off - start * 8) - f.bits
        v = (raw >> shift) & ((1 << f.bits) - 1)
        if f.signed and v >> (f.bits - 1):
            v -= 1 << f.bits
        return v

    def _set_bits(self, out: bytearray, f: _Field, value: int) -> None:
        start, end = self._span(f)
        order = "little" if self.bo == "<" else "big"
        raw = int.from_bytes(out[start:end], order)
        width = (end - start) * 8
        shift = f.bit_off - start * 8 if self.bo == "<" else width - (f.bit_off - start * 8) - f.bits
        mask = ((1 << f.bits) - 1) << shift
        raw = (raw & ~mask) | ((int(value) << shift) & mask)
        out[start:end] = raw.to_bytes(end - start, order)

    def encode(self, value: Any) -> bytes:
        if isinstance(value, self.cls):
            items = [(f, getattr(value, n)) for f, n in zip(self.fields, self.names)]
        elif isinstance(value, dict):
            unknown = set(value) - set(self.names)
            if unknown:
                raise ValueError(f"unknown field(s) {sorted(unknown)} for {self.cls.__name__}")
            items = [(f, value[n]) for f, n in zip(self.fields, self.names) if n in value]
        elif isinstance(value, (tuple, list)):
            if len(value) > len(self.fields):
                raise ValueError(f"{len(value)} values for {len(self.fields)} fields")
            items = list(zip(self.fields, value))
        else:
            raise TypeError(f"cannot encode {type(value).__name__} as {self.cls.__name__}")
        out = bytearray(self.size)
        for f, v in items:
            if f.codec is not None:
                out[f.byte_off:f.byte_off + f.codec.size] = f.codec.encode(v)
            else:
                self._set_bits(out, f, v)
        return bytes(out)


_CACHE: "weakref.WeakKeyDictionary[Spec, Dict[int, Codec]]" = weakref.WeakKeyDictionary()


def codec_for(spec: Spec, type_id: int) -> Codec:
    """The (cached) codec for BTF type ``type_id`` of ``spec``."""
    per = _CACHE.setdefault(spec, {})
    c = per.get(type_id)
    if c is None:
        c = _build(spec, type_id, 0)
        per[type_id] = c
    return c


def _is_char(spec: Spec, tid: int) -> bool:
    t = spec.type(spec.skip_modifiers(tid))
    return t.kind == Kind.INT and t.size == 1 and (bool(t.encoding & 2) or t.name in ("char", "unsigned char", "signed char"))  # type: ignore[union-attr]


def _build(spec: Spec, tid: int, depth: int) -> Codec:
    if depth > 32:
        raise BPFError("BTF type nests too deeply to build a codec")
    bo = spec.byteorder
    rid = spec.skip_modifiers(tid)
    t = spec.type(rid)
    k = t.kind
    if k == Kind.INT:
        if t.bits and t.bits != t.size * 8 or t.bit_offset:  # type: ignore[union-attr]
            raise BPFError(f"cannot build a codec for bit-sized int {spec.type_name(rid)}")
        return _IntCodec(t.size, t.signed, bo, is_bool=bool(t.encoding & 4))  # type: ignore[union-attr]
    if k in (Kind.ENUM, Kind.ENUM64):
        return _EnumCodec(t.size, t.signed, bo, t.name, [(v.name, v.value) for v in t.values])  # type: ignore[union-attr]
    if k == Kind.PTR:
        return _IntCodec(8, False, bo)
    if k == Kind.FLOAT:
        return _FloatCodec(t.size, bo)  # type: ignore[union-attr]
    if k == Kind.ARRAY:
        if _is_char(spec, t.type):  # type: ignore[union-attr]
            return _CharArrayCodec(t.nelems)  # type: ignore[union-attr]
        return _ArrayCodec(_build(spec, t.type, depth + 1), t.nelems)  # type: ignore[union-attr]
    if k in (Kind.STRUCT, Kind.UNION):
        fields = []
        for i, m in enumerate(t.members):  # type: ignore[union-attr]
            name = m.name or f"_anon{i}"
            if m.bitfield_size:
                mt = spec.type(spec.skip_modifiers(m.type))
                signed = bool(getattr(mt, "signed", False))
                fields.append(_Field(name, None, m.offset // 8, m.offset, m.bitfield_size, signed))
            else:
                if m.offset % 8:
                    raise BPFError(f"member {name} of {spec.type_name(rid)} is not byte aligned")
                fields.append(_Field(name, _build(spec, m.type, depth + 1), m.offset // 8))
        return _RecordCodec(t.name, t.size, fields, bo, k == Kind.UNION)  # type: ignore[union-attr]
    if k == Kind.DATASEC:
        return BytesCodec(t.size)  # type: ignore[union-attr]
    if k == Kind.VAR:
        return _build(spec, t.type, depth + 1)  # type: ignore[union-attr]
    raise BPFError(f"no value codec for BTF {k.name} {spec.type_name(rid)}")
