"""The layout compiler behind :mod:`pybpf.btf.codec` and :mod:`pybpf.btf.pygen`.

It flattens one BTF type -- nested structs, arrays, bitfield storage units,
``char`` arrays -- into the slots of a single :class:`struct.Struct` plus two
generated Python expressions: one that builds the value from the unpacked
tuple, one per slot that computes what to pack from a value.  The codec turns
them into functions with ``exec`` (one ``unpack_from`` per decode); pygen writes
them into the generated module.  How records, enums and unions are built is left
to the hooks subclasses implement.

Also here: the record classes codecs decode into (tuple subclasses with named
fields) and the small helpers generated code calls.
"""

from __future__ import annotations

import keyword
import operator
import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import BPFError
from .types import IntEncoding, Kind

__all__ = ["LayoutCompiler", "Compiled", "CodecError", "Slow", "field_names", "make_record_class",
           "INT_CODE", "MAX_DEPTH", "is_char"]

INT_CODE = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
            (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}
MAX_DEPTH = 32
EXPAND_LIMIT = 64      # arrays of records up to this many elements are compiled inline
INLINE_LIMIT = 1024    # nested structs inlining to more slots get their own codec
_tuple_new = tuple.__new__

try:  # the C accessor namedtuple uses; fall back to itemgetter on other interpreters
    from collections import _tuplegetter as _getter  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    def _getter(i: int, doc: str) -> property:  # type: ignore[misc]
        return property(operator.itemgetter(i), doc=doc)


class CodecError(BPFError, ValueError, TypeError):
    """A value cannot be encoded as (or bytes cannot be decoded into) a BTF type.

    Also a ``ValueError``/``TypeError``, so callers written against plain Python
    conversions keep working.
    """


class Slow(Exception):
    """A fast encoder cannot take this value as is: normalise it first."""



# -- records ----------------------------------------------------------------------------------

_RESERVED = frozenset({"_fields", "_asdict", "_make", "_replace", "_zero", "_field_types"})


def field_names(names: Sequence[str]) -> List[str]:
    """C member names as Python identifiers: keywords get a trailing ``_`` (``in`` ->
    ``in_``), ``__x`` becomes ``_x_`` (no name mangling), anonymous members are
    ``_anon<i>``, duplicates get a suffix."""
    out: List[str] = []
    for i, n in enumerate(names):
        n = n or f"_anon{i}"
        if not n.isidentifier():
            n = f"_{i}"
        if n.startswith("__"):          # class bodies would mangle __name
            n = "_" + n.lstrip("_") + "_"
        elif keyword.iskeyword(n) or n in _RESERVED:
            n += "_"
        while n in out:
            n += f"_{i}"
        out.append(n)
    return out


def make_record_class(name: str, fields: Sequence[str], zeros: Sequence[Callable[[], Any]],
                       aliases: Dict[str, Tuple[int, str]]) -> type:
    """A tuple subclass with named, read-only fields (like ``collections.namedtuple``).

    ``zeros[i]()`` makes the default of field ``i``; ``aliases`` maps the members of an
    anonymous struct/union member ``i`` (``alias -> (i, inner name)``) to properties.
    """
    fields = tuple(fields)
    nf = len(fields)
    zeros = tuple(zeros)
    index = {f: i for i, f in enumerate(fields)}
    cname = name or "anon"

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        if len(args) > nf:
            raise CodecError(f"{cname} takes {nf} field values, got {len(args)}")
        vals = list(args) + [_UNSET] * (nf - len(args))
        for k, v in kwargs.items():
            i = index.get(k)
            if i is None:
                raise CodecError(f"{cname} has no field {k!r}")
            if vals[i] is not _UNSET:
                raise CodecError(f"{cname}: field {k!r} given twice")
            vals[i] = v
        for i in range(nf):
            if vals[i] is _UNSET:
                vals[i] = zeros[i]()
        return _tuple_new(cls, vals)

    def _make(cls: type, iterable: Any) -> Any:
        r = _tuple_new(cls, iterable)
        if len(r) != nf:
            raise CodecError(f"{cname} takes {nf} field values, got {len(r)}")
        return r

    def _asdict(self: Any) -> Dict[str, Any]:
        return dict(zip(fields, self))

    def _replace(self: Any, **kw: Any) -> Any:
        return type(self)(*[kw.pop(f, v) for f, v in zip(fields, self)], **kw)

    def __repr__(self: Any) -> str:
        return f"{cname}(" + ", ".join(f"{f}={v!r}" for f, v in zip(fields, self)) + ")"

    def __getnewargs__(self: Any) -> Tuple[Any, ...]:
        return tuple(self)

    ns: Dict[str, Any] = {
        "__slots__": (), "__doc__": f"BTF record {cname}: fields {', '.join(fields)}.",
        "_fields": fields, "__match_args__": fields, "__new__": __new__,
        "_make": classmethod(_make), "_asdict": _asdict, "_replace": _replace,
        "__repr__": __repr__, "__getnewargs__": __getnewargs__,
    }
    for i, f in enumerate(fields):
        ns[f] = _getter(i, f"field {f}")
    for alias, (i, inner) in aliases.items():
        if alias not in ns:
            ns[alias] = property(lambda self, _i=i, _n=inner: getattr(self[_i], _n),
                                 doc=f"{fields[i]}.{inner}")
    return type(cname if cname.isidentifier() else "anon", (tuple,), ns)


_UNSET = object()


# -- the layout compiler ------------------------------------------------------------------------

class _Slot:
    """``size`` bytes at ``off`` read by struct code ``fmt`` as ``count`` tuple items (a run
    for arrays of scalars, ``count > 1`` or not), written from encode expression ``pack``."""
    __slots__ = ("off", "size", "fmt", "count", "run", "pack")

    def __init__(self, off: int, size: int, fmt: str, count: int, pack: str, run: bool = False):
        self.off, self.size, self.fmt, self.count, self.run, self.pack = off, size, fmt, count, run, pack


class LayoutCompiler:
    """Flattens one BTF type into struct slots plus generated decode/encode expressions.

    Decode expressions refer to slots as ``{S<n>}`` placeholders, resolved to ``v[i]`` (or
    ``v[i:j]`` for runs) once the slots are sorted by offset.  Encode expressions are
    written over ``x``, the value being encoded, addressed positionally (records are tuples).
    """

    def __init__(self, cache: Any):
        self.c = cache
        self.spec = cache.spec
        self.bo = cache.bo
        self.slots: List[_Slot] = []
        self.guards: List[str] = []
        self.top_record: Optional[Tuple[type, List[Optional[str]]]] = None
        order = cache.order
        self.ns: Dict[str, Any] = {
            "_tn": _tuple_new, "_Slow": Slow, "_cs": _enc_chars, "_bs": _enc_bytes, "_seq": _seq,
            "_bf": _bitfield, "_ib": lambda b, signed: int.from_bytes(b, order, signed=signed),
            "_ibe": lambda v, size, signed: _enc_bigint(v, size, order, signed)}

    def _name(self, obj: Any, prefix: str) -> str:
        n = f"_{prefix}{len(self.ns)}"
        self.ns[n] = obj
        return n

    def _slot(self, off: int, size: int, fmt: str, count: int, pack: str, run: bool = False) -> str:
        self.slots.append(_Slot(off, size, fmt, count, pack, run))
        return "{S%d}" % (len(self.slots) - 1)

    def build(self, tid: int, off: int, x: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise CodecError(f"BTF type [{tid}] nests too deeply to build a codec")
        spec = self.spec
        rid = spec.skip_modifiers(tid)
        t = spec.type(rid)
        k = t.kind
        if k == Kind.INT:
            return self._int(t, off, x)
        if k in (Kind.ENUM, Kind.ENUM64):
            s = self._slot(off, t.size, INT_CODE[(t.size, t.signed)], 1, x)  # type: ignore[union-attr]
            return self._enum_expr(rid, s)
        if k == Kind.PTR:
            return self._slot(off, 8, "Q", 1, x)
        if k == Kind.FLOAT:
            if t.size not in (4, 8):  # type: ignore[union-attr]
                return self._slot(off, t.size, f"{t.size}s", 1, f"_bs({x}, {t.size})")  # type: ignore[union-attr]
            return self._slot(off, t.size, "f" if t.size == 4 else "d", 1, x)  # type: ignore[union-attr]
        if k == Kind.ARRAY:
            return self._array(t.type, t.nelems, off, x, depth)  # type: ignore[union-attr]
        if k == Kind.STRUCT or k == Kind.DATASEC:
            if depth and self.weight(rid) > INLINE_LIMIT:   # big (or DAG-shaped): its own codec
                return self._sub_record(rid, off, t.size, x)  # type: ignore[union-attr]
            return self._record(rid, off, x, depth)
        if k == Kind.UNION:
            return self._sub_record(rid, off, t.size, x)  # type: ignore[union-attr]
        if k == Kind.VAR:
            return self.build(t.type, off, x, depth + 1)  # type: ignore[union-attr]
        raise CodecError(f"no value codec for BTF {k.name} {spec.type_name(rid)}")

    def _int(self, t: Any, off: int, x: str) -> str:
        size, signed = t.size, t.signed
        if t.bits and (t.bits != size * 8 or t.bit_offset):
            return self._bits([(off * 8 + t.bit_offset, t.bits, signed, x)])[0]
        if t.encoding & IntEncoding.BOOL and size == 1:
            return self._slot(off, 1, "?", 1, x)
        code = INT_CODE.get((size, signed))
        if code is None:  # __int128 and other odd sizes: through int.from_bytes
            s = self._slot(off, size, f"{size}s", 1, f"_ibe({x}, {size}, {signed})")
            return f"_ib({s}, {signed})"
        return self._slot(off, size, code, 1, x)

    def _array(self, etid: int, n: int, off: int, x: str, depth: int) -> str:
        spec = self.spec
        erid = spec.skip_modifiers(etid)
        et = spec.type(erid)
        if n == 0:
            return "[]"
        if et.kind == Kind.INT and et.size == 1 and not et.bits % 8:  # type: ignore[union-attr]
            if is_char(et):
                s = self._slot(off, n, f"{n}s", 1, f"_cs({x}, {n})")
                return f'{s}.partition(b"\\0")[0].decode("utf-8", "replace")'
            return self._slot(off, n, f"{n}s", 1, f"_bs({x}, {n})")
        code = self._scalar_code(et)
        if code is not None:
            s = self._slot(off, n * spec.sizeof(erid), f"{n}{code}", n, f"*_seq({x}, {n})", True)
            return f"list({s})"
        es = spec.sizeof(erid)
        if es == 0:
            return "[]"        # zero-sized elements hold nothing, however many there are
        if n > EXPAND_LIMIT:
            long = self._long_array(erid, n, es, off, x)
            if long is not None:
                return long
        self.guards.append(f"len({x}) == {n}")
        return "[" + ", ".join(self.build(erid, off + i * es, f"{x}[{i}]", depth + 1)
                               for i in range(n)) + "]"

    def _scalar_code(self, t: Any) -> Optional[str]:
        if t.kind == Kind.INT and not (t.bits and (t.bits != t.size * 8 or t.bit_offset)):
            if t.encoding & IntEncoding.BOOL and t.size == 1:
                return "?"
            return INT_CODE.get((t.size, t.signed))
        if t.kind == Kind.FLOAT and t.size in (4, 8):
            return "f" if t.size == 4 else "d"
        if t.kind == Kind.PTR:
            return "Q"
        return None

    # -- hooks: how values are named and built (codec and pygen implement them) -------------
    def _enum_expr(self, rid: int, s: str) -> str:
        """The value of enum ``rid`` read as ``s``."""
        raise NotImplementedError

    def _member(self, x: str, i: int, name: str) -> str:
        """Encode-side access to member ``i`` (``name``) of the record value ``x``."""
        return f"{x}[{i}]"

    def _record_expr(self, rid: int, x: str, parts: List[str]) -> str:
        """The record of type ``rid`` built from member expressions ``parts``."""
        raise NotImplementedError

    def _sub_record(self, rid: int, off: int, size: int, x: str) -> str:
        """A union, or a struct too big to inline, at ``off``: a bytes slot handed to the
        type's own decoder."""
        raise NotImplementedError

    def _long_array(self, erid: int, n: int, es: int, off: int, x: str) -> Optional[str]:
        """``n`` records of type ``erid`` too many to inline (``None``: inline them anyway)."""
        return None

    def weight(self, tid: int, depth: int = 0) -> int:
        """How many slots ``tid`` inlines to (memoised per spec: linear even for BTF whose
        structs share members DAG-style, where the inlined size is exponential)."""
        w = self.c.weights.get(tid)
        if w is not None:
            return w
        if depth > MAX_DEPTH:
            raise CodecError(f"BTF type [{tid}] nests too deeply to build a codec")
        spec = self.spec
        rid = spec.skip_modifiers(tid)
        t = spec.type(rid)
        k = t.kind
        if k in (Kind.STRUCT, Kind.DATASEC):
            w = 1 + sum(1 if mbits else self.weight(mtid, depth + 1)
                        for _, mbits, mtid in self.c.record(rid)[1])
        elif k == Kind.ARRAY:
            n = t.nelems  # type: ignore[union-attr]
            w = n * self.weight(t.type, depth + 1) if n <= EXPAND_LIMIT else 1  # type: ignore[union-attr]
        elif k == Kind.VAR:
            w = self.weight(t.type, depth + 1)  # type: ignore[union-attr]
        else:
            w = 1
        self.c.weights[tid] = w
        return w

    def _record(self, rid: int, off: int, x: str, depth: int) -> str:
        spec = self.spec
        cls, members = self.c.record(rid)
        parts: List[Optional[str]] = [None] * len(members)
        bitfields = []
        for i, (moff, mbits, mtid) in enumerate(members):
            xi = self._member(x, i, cls._fields[i])
            if mbits:
                mt = spec.type(spec.skip_modifiers(mtid))
                signed = bool(getattr(mt, "signed", False))
                bitfields.append((i, off * 8 + moff, mbits, signed, xi, mt))
            elif moff % 8:
                raise CodecError(f"member {cls._fields[i]} of {spec.type_name(rid)} "
                                 "is not byte aligned")
            else:
                parts[i] = self.build(mtid, off + moff // 8, xi, depth + 1)
        if bitfields:
            exprs = self._bits([(b, n, s, xi) for _, b, n, s, xi, _ in bitfields])
            for (i, _, _, _, _, mt), e in zip(bitfields, exprs):
                if mt.kind in (Kind.ENUM, Kind.ENUM64):
                    e = self._enum_expr(spec.skip_modifiers(members[i][2]), e)
                parts[i] = e
        if depth == 0:
            self.top_record = (cls, list(parts))
        return self._record_expr(rid, x, parts)  # type: ignore[arg-type]

    def _bits(self, fields: List[Tuple[int, int, bool, str]]) -> List[str]:
        """Bitfields ``(absolute bit offset, bits, signed, encode expr)`` -> decode exprs.

        Fields whose bytes overlap share one storage unit (one slot, read as an unsigned
        integer); each field is shifted and masked out of it, and sign-extended."""
        units: List[Tuple[int, int, List[int]]] = []
        for j in sorted(range(len(fields)), key=lambda j: fields[j][0]):
            b, n = fields[j][0], fields[j][1]
            start, end = b // 8, (b + n + 7) // 8
            if units and start < units[-1][1]:
                units[-1] = (units[-1][0], max(units[-1][1], end), units[-1][2] + [j])
            else:
                units.append((start, end, [j]))
        out = [""] * len(fields)
        for start, end, idx in units:
            size = end - start
            shifts = {}
            for j in idx:
                b, n = fields[j][0], fields[j][1]
                rel = b - start * 8
                shifts[j] = rel if self.bo == "<" else size * 8 - rel - n
            pack = " | ".join(f"(_bf({fields[j][3]}, {fields[j][1]}, {fields[j][2]}) << {shifts[j]})"
                              for j in idx)
            code = INT_CODE.get((size, False))
            if code is None:
                ref = f"_ib({self._slot(start, size, f'{size}s', 1, f'_ibe({pack}, {size}, False)')}, False)"
            else:
                ref = self._slot(start, size, code, 1, pack)
            for j in idx:
                n, signed = fields[j][1], fields[j][2]
                e = f"(({ref} >> {shifts[j]}) & {(1 << n) - 1})"
                if signed:
                    e = f"(({e} ^ {1 << (n - 1)}) - {1 << (n - 1)})"
                out[j] = e
        return out

    def finish(self, size: int, label: str) -> "Compiled":
        slots = sorted(range(len(self.slots)), key=lambda i: self.slots[i].off)
        fmt, pos, idx, refs, packs = self.bo, 0, 0, {}, []
        for i in slots:
            s = self.slots[i]
            if s.off < pos:
                raise CodecError(f"{label}: members overlap at byte {s.off}")
            fmt += ("x" * (s.off - pos) if s.off > pos else "") + s.fmt
            pos = s.off + s.size
            refs[f"S{i}"] = f"v[{idx}:{idx + s.count}]" if s.run else f"v[{idx}]"
            idx += s.count
            packs.append(s.pack)
        if pos > size:
            raise CodecError(f"{label}: members extend past its size {size}")
        fmt += "x" * (size - pos)
        flat = None
        if self.top_record is not None:  # a record of plain scalars in offset order
            cls, parts = self.top_record
            if [p.format_map(refs) for p in parts] == [f"v[{i}]" for i in range(idx)] and \
                    packs == [f"x[{i}]" for i in range(idx)]:
                flat = cls
        return Compiled(struct.Struct(fmt), refs, packs, self.guards, self.ns, flat)


class Compiled:
    __slots__ = ("st", "refs", "packs", "guards", "ns", "flat")

    def __init__(self, st: struct.Struct, refs: Dict[str, str], packs: List[str],
                 guards: List[str], ns: Dict[str, Any], flat: Optional[type]):
        self.st, self.refs, self.packs, self.guards, self.ns = st, refs, packs, guards, ns
        self.flat = flat



# -- helpers used by generated code ---------------------------------------------------------------

def is_char(t: Any) -> bool:
    return bool(t.encoding & IntEncoding.CHAR) or t.name == "char"


def _enc_chars(v: Any, n: int) -> bytes:
    b = v.encode() if type(v) is str else bytes(v)
    if len(b) > n:
        raise CodecError(f"{len(b)} bytes do not fit char[{n}]")
    return b


def _enc_bytes(v: Any, n: int) -> bytes:
    b = v.encode() if type(v) is str else bytes(v)
    if len(b) > n:
        raise CodecError(f"{len(b)} bytes do not fit a {n}-byte array")
    return b


def _seq(v: Any, n: int) -> Any:
    if len(v) != n:
        raise Slow
    return v


def _bitfield(v: Any, bits: int, signed: bool) -> int:
    v = operator.index(v)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= v <= hi:
        raise CodecError(f"{v} does not fit a {'signed' if signed else 'unsigned'} {bits}-bit field")
    return v & ((1 << bits) - 1)


def _enc_bigint(v: Any, size: int, order: str, signed: bool) -> bytes:
    try:
        return operator.index(v).to_bytes(size, order, signed=signed)
    except OverflowError:
        raise CodecError(f"{v} does not fit a {size}-byte integer") from None
