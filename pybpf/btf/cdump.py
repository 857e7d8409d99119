"""BTF -> C header (``vmlinux.h``).

:func:`dump_c` turns a :class:`~pybpf.btf.Spec` into a C header that clang can
compile BPF programs against, as ``bpftool btf dump ... format c`` does:
every named struct, union, enum and typedef, with layouts (``sizeof``,
``offsetof``, bitfield positions) identical to the BTF's, wrapped in the
``preserve_access_index`` pragma so that member accesses become CO-RE
relocations.

How it works:

* **Names.**  C has one tag namespace (struct, union and enum share it) and one
  ordinary namespace (typedef names and enum constants).  Kernel BTF holds a
  few distinct types with the same name (dedup cannot merge them), so the first
  by id keeps the name and later ones get ``___2``, ``___3`` ... (libbpf's
  convention, which CO-RE ignores when matching names).  Forward declarations
  take the name of the definition they stand for.
* **Order.**  Types are emitted in id order, each after what it needs: a
  member used by value needs its type *defined* first; a type behind a pointer
  (or in a function prototype) only needs a forward declaration ``struct foo;``.
  Because only by-value edges recurse, and C (and so BTF) has no by-value
  cycles, every cycle breaks at a pointer.  A typedef cannot be forward
  declared, so using one (even through a pointer) emits it, and a typedef of an
  anonymous struct emits that struct's definition inline.
* **Layout.**  Each struct is first laid out as clang would lay it out
  naturally (the SysV rules, which the BPF target uses).  Where a member's BTF
  offset is past its natural position, unnamed ``long: N;`` bitfields fill the
  gap (they take space but no alignment); where it is before (or the BTF size
  is below the natural size), the struct is ``__attribute__((packed))`` and
  padded explicitly.  Unions bigger than their largest member get an
  ``aligned`` attribute or an anonymous padding member.
* **Special cases.**  ``__builtin_va_list`` is a clang builtin whose BPF layout
  (8 bytes) differs from the kernel's (24 on x86-64), so a typedef of that name
  is replaced by the type it names (``typedef struct __va_list_tag
  va_list[1];``).  An anonymous enum reached twice is defined at its first use
  and replaced by its integer type afterwards (its constants may be defined
  only once).  Enums whose BTF size is not clang's natural size (the kernel's
  ``__packed`` enums) become ``packed`` or get an explicit underlying type.
  ``TYPE_TAG`` becomes ``__btf_type_tag(x)``, a macro the header defines as
  ``btf_type_tag`` where clang has it (``-DBPF_NO_BTF_TYPE_TAG`` drops them).
  Names that are not C identifiers (BTF from Rust) have the offending
  characters replaced by ``_``.

Pure: works on a Spec only.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Set, Tuple

import attrs

from ..errors import ParseError
from .parse import Spec
from .types import MODIFIER_KINDS, AnyEnum, Composite, FuncProto, Int, IntEncoding, Kind, Member

__all__ = ["dump_c"]

_QUALIFIERS = {Kind.CONST: "const", Kind.VOLATILE: "volatile", Kind.RESTRICT: "restrict"}
_TAGGED = (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64)
_INT_TYPES = {(1, False): "unsigned char", (1, True): "signed char",
              (2, False): "unsigned short", (2, True): "short",
              (4, False): "unsigned int", (4, True): "int",
              (8, False): "unsigned long", (8, True): "long",
              (16, False): "unsigned __int128", (16, True): "__int128"}
_FLOATS = {4: "float", 8: "double"}
# The words of C integer spellings BTF uses ("long unsigned int", "_Bool") and their sizes.
_INT_WORD_SIZES = {"char": 1, "_Bool": 1, "short": 2, "long": 8, "__int128": 16}
_INT_WORDS = frozenset(_INT_WORD_SIZES) | {"int", "signed", "unsigned"}
_VA_LIST = "__builtin_va_list"
_PTR_SIZE = 8          # the BPF target's pointer size
_PAD_UNIT = 64         # padding is emitted as `long: N;`, N <= 64
_MAX_CHAIN = 256       # longest pointer/array/modifier chain followed before calling it a cycle
_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")
_MODIFIERS_AND_ARRAY = MODIFIER_KINDS | {Kind.ARRAY}

_PROLOGUE = """\
#ifndef {guard}
#define {guard}

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

"""
_TYPE_TAG_MACRO = """\
#ifndef __btf_type_tag
#if defined(__has_attribute) && !defined(BPF_NO_BTF_TYPE_TAG)
#if __has_attribute(btf_type_tag)
#define __btf_type_tag(x) __attribute__((btf_type_tag(x)))
#endif
#endif
#endif
#ifndef __btf_type_tag
#define __btf_type_tag(x)
#endif

"""
_EPILOGUE = """\
#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* {guard} */
"""


def dump_c(spec: Spec, *, guard: str = "__VMLINUX_H__",
           roots: Optional[Iterable[int]] = None) -> str:
    """A C header declaring the types of ``spec``.

    ``guard`` names the include-guard macro.  ``roots``, if given, limits the
    header to those type ids and what they need; by default every named
    struct, union, enum and typedef is emitted, plus anonymous enums (whose
    constants are often the only C form of kernel flags).  FUNC, VAR, DATASEC
    and DECL_TAG have no C type form and are skipped.

    Raises :class:`~pybpf.errors.ParseError` when the BTF cannot be written as
    C: a struct containing itself by value, a typedef that needs itself, a
    cyclic type chain, a FUNC or VAR used as a member type.
    """
    body = _CWriter(spec).run(roots)
    prologue = _PROLOGUE.format(guard=guard)
    if "__btf_type_tag(" in body:
        prologue += _TYPE_TAG_MACRO
    return prologue + body + _EPILOGUE.format(guard=guard)


# -- layout ---------------------------------------------------------------------------------

@attrs.frozen
class _Layout:
    """How a struct/union must be written so clang reproduces its BTF layout."""
    align: int                              # alignment of the emitted type, bytes
    packed: bool = False
    aligned: int = 0                        # __attribute__((aligned(N))), 0 for none
    pads: Tuple[Tuple[int, ...], ...] = ()  # per member: `long: N` widths before it
    tail: Tuple[int, ...] = ()              # `long: N` widths after the last member
    union_pad: int = 0                      # bytes of an anonymous padding member (unions)


def _align_up(v: int, a: int) -> int:
    return (v + a - 1) // a * a


def _pad_pieces(cur: int, target: int) -> Tuple[int, ...]:
    """Widths of unnamed ``long`` bitfields that advance bit position ``cur`` to ``target``.

    No piece crosses a 64-bit boundary, so each sits exactly at the current
    position in packed and unpacked structs alike.
    """
    out = []
    while cur < target:
        w = min(target - cur, _PAD_UNIT - cur % _PAD_UNIT)
        out.append(w)
        cur += w
    return tuple(out)


def _place(cur: int, align: int, width: int, packed: bool) -> int:
    """Bit offset where clang puts the next member after bit ``cur``.

    ``align`` is the member type's alignment in bytes, ``width`` its bitfield
    width (0 for a plain member).  A plain member starts at the next byte
    (packed) or at its alignment; a bitfield starts at ``cur`` unless, in an
    unpacked struct, it would straddle a storage unit of its type.
    """
    if width:
        unit = align * 8
        if packed or cur // unit == (cur + width - 1) // unit:
            return cur
        return _align_up(cur, unit)
    return _align_up(cur, 8 if packed else align * 8)


def _natural_enum_size(values: Iterable[int]) -> int:
    """sizeof an enum with these constants in GNU C (int, unsigned int, else 64 bits)."""
    vals = list(values)
    lo, hi = min(vals, default=0), max(vals, default=0)
    if -(1 << 31) <= lo and hi < (1 << 31) or lo >= 0 and hi < (1 << 32):
        return 4
    return 8


def _packed_enum_size(values: Iterable[int]) -> int:
    """sizeof the same enum with ``__attribute__((packed))``: the smallest type holding all values."""
    vals = list(values)
    lo, hi = min(vals, default=0), max(vals, default=0)
    for size in (1, 2, 4):
        bits = size * 8
        if lo >= 0 and hi < (1 << bits) or -(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1)):
            return size
    return 8


def _c_ident(name: str) -> str:
    """``name`` made a C identifier (BTF from Rust or Go holds names like ``Option<u32>``)."""
    if name.isidentifier() and name.isascii():
        return name
    name = _NOT_IDENT.sub("_", name)
    return "_" + name if not name or name[0].isdigit() else name


def _c_int_name(t: Int) -> str:
    """The BTF name of an INT if it is a C spelling of that size, else a C type that is.

    Kernel BTF names are C (``long unsigned int``); Rust's are not (``usize``,
    a 4-byte ``char``), and would not compile or would change the layout.
    """
    words = t.name.split()
    if words and _INT_WORDS.issuperset(words):
        # `int` (or a lone `signed`/`unsigned`) is 4 bytes unless another word says otherwise.
        size = next((_INT_WORD_SIZES[w] for w in words if w not in ("int", "signed", "unsigned")), 4)
        if size == t.size:
            return t.name
    if t.encoding & IntEncoding.BOOL and t.size == 1:
        return "_Bool"
    return _INT_TYPES.get((t.size, t.signed), t.name)


def _enum_literal(v: int) -> str:
    if v >= 1 << 63:
        return f"{v}ULL"
    if v == -(1 << 63):
        return "(-9223372036854775807LL - 1)"
    return str(v)


# -- the writer -----------------------------------------------------------------------------

class _CWriter:
    """One C-header rendering of a Spec: names, emission state and output."""

    def __init__(self, spec: Spec):
        self.spec = spec
        # Kinds of all ids, read once: cheaper than decoding types just to skip FUNCs & co.
        self.kinds: List[Kind] = [Kind.UNKN] + [spec.kind_of(i) for i in range(1, len(spec))]
        self.out: List[str] = []
        self.tag: Dict[int, str] = {}            # struct/union/enum/fwd id -> "struct foo"
        self.ordinary: Dict[int, str] = {}       # typedef id -> C name
        self.enumerators: Dict[int, List[str]] = {}
        self.ordinary_names: Set[str] = set()    # typedef names and enum constants in use
        self.layouts: Dict[int, _Layout] = {}
        self.needed: Set[Tuple[int, bool]] = set()  # need() calls already satisfied
        self.laying_out: Set[int] = set()
        self.declared: Set[str] = set()          # "struct foo" that has been declared or defined
        self.defined: Set[int] = set()           # composites and named enums written out
        self.busy: Set[int] = set()              # composites/typedefs being written (cycle check)
        self.typedefs: Set[int] = set()          # typedefs written out
        self.anon_enums: Set[int] = set()        # anonymous enums whose constants are out

    def fail(self, msg: str) -> ParseError:
        return ParseError(msg, file=self.spec.file or "<bytes>", section=".BTF")

    # -- driver --------------------------------------------------------------------------
    def run(self, roots: Optional[Iterable[int]]) -> str:
        self.assign_names()
        try:
            if roots is None:
                self.dump_all()
            else:
                for tid in roots:
                    self.dump_root(tid)
        except RecursionError:  # only by-value nesting recurses: kernel BTF needs < 100 levels
            raise self.fail("BTF types nest too deeply to write as C") from None
        return "".join(self.out)

    def dump_all(self) -> None:
        anon_enums = []
        for tid, k in enumerate(self.kinds):
            if k == Kind.TYPEDEF or tid in self.tag:
                self.dump_root(tid)
            elif k in (Kind.ENUM, Kind.ENUM64):
                anon_enums.append(tid)
        # Anonymous enums no emitted type used: their constants still matter (flags, ids).
        for tid in anon_enums:
            if tid not in self.anon_enums:
                self.dump_root(tid)

    def dump_root(self, tid: int) -> None:
        """Emit one type at top level (and, first, what it needs)."""
        t = self.spec.type(tid)
        k = t.kind
        if k == Kind.TYPEDEF:
            if tid in self.ordinary:
                self.need(t.type, True)  # type: ignore[union-attr]
                self.declare_typedef(tid)
        elif k in (Kind.STRUCT, Kind.UNION) and t.name:
            self.define(tid)
        elif k in (Kind.ENUM, Kind.ENUM64):
            if t.name:
                self.need(tid, True)
            elif tid not in self.anon_enums and t.values:  # type: ignore[union-attr]
                self.anon_enums.add(tid)
                self.out.append(self.enum_body(tid, 0) + ";\n\n")
        elif k not in (Kind.FUNC, Kind.VAR, Kind.DATASEC, Kind.DECL_TAG):
            self.need(tid, True)

    # -- names ---------------------------------------------------------------------------
    def assign_names(self) -> None:
        """Give every tagged type, typedef and enum constant a unique C name (id order wins)."""
        spec = self.spec
        tags: Dict[str, str] = {}     # bare tag name -> "struct"/"union"/"enum" owning it
        fwds: List[Tuple[int, str, str]] = []
        for tid, k in enumerate(self.kinds):
            if k in _TAGGED:
                t = spec.type(tid)
                kw = "enum" if k in (Kind.ENUM, Kind.ENUM64) else k.name.lower()
                if k in (Kind.ENUM, Kind.ENUM64):
                    self.enumerators[tid] = [self.claim_ordinary(v.name)
                                             for v in t.values]  # type: ignore[union-attr]
                if not t.name:
                    continue
                if kw == "enum" and not t.values:  # type: ignore[union-attr]
                    fwds.append((tid, kw, _c_ident(t.name)))  # BTF's enum forward declaration
                    continue
                name = self.unique(_c_ident(t.name), tags)
                tags[name] = kw
                self.tag[tid] = f"{kw} {name}"
            elif k == Kind.FWD:
                t = spec.type(tid)
                if t.name:  # a nameless FWD (invalid BTF) is written as void
                    fwds.append((tid, "union" if t.is_union else "struct",  # type: ignore[union-attr]
                                 _c_ident(t.name)))
            elif k == Kind.TYPEDEF:
                t = spec.type(tid)
                if t.name and t.name != _VA_LIST:  # the others are looked through where used
                    self.ordinary[tid] = self.claim_ordinary(t.name)
        for tid, kw, name in fwds:
            if tags.get(name, kw) != kw:
                name = self.unique(name, tags)
            tags[name] = kw
            self.tag[tid] = f"{kw} {name}"

    @staticmethod
    def unique(name: str, used: Iterable[str]) -> str:
        if name not in used:
            return name
        n = 2
        while f"{name}___{n}" in used:
            n += 1
        return f"{name}___{n}"

    def claim_ordinary(self, name: str) -> str:
        name = self.unique(_c_ident(name), self.ordinary_names)
        self.ordinary_names.add(name)
        return name

    # -- dependencies --------------------------------------------------------------------
    def need(self, tid: int, complete: bool) -> None:
        """Make sure a declarator of type ``tid`` can be written next.

        ``complete`` means the type is used by value (a member, an array
        element), so structs must be defined, not just declared.
        """
        if (tid, complete) in self.needed:
            return
        self.need_uncached(tid, complete)
        self.needed.add((tid, complete))

    def need_uncached(self, tid: int, complete: bool) -> None:
        spec = self.spec
        for _ in range(_MAX_CHAIN):
            k = self.kinds[tid]
            if k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG):
                tid = spec.type(tid).type  # type: ignore[union-attr]
            elif k == Kind.PTR:
                tid, complete = spec.type(tid).type, False  # type: ignore[union-attr]
            elif k == Kind.ARRAY:
                tid, complete = spec.type(tid).type, True  # type: ignore[union-attr]
            else:
                break
        else:
            raise self.fail(f"BTF type chain at [{tid}] is too long or cyclic")
        if k in (Kind.STRUCT, Kind.UNION):
            if tid in self.tag:
                if complete:
                    self.define(tid)
                else:
                    self.declare(self.tag[tid])
            else:  # anonymous: defined inline, so what it holds must come first
                if tid in self.busy:
                    raise self.fail(f"BTF type [{tid}] contains itself by value")
                self.busy.add(tid)
                self.need_members(tid)
                self.busy.discard(tid)
        elif k in (Kind.ENUM, Kind.ENUM64):
            if tid not in self.tag:
                pass  # anonymous: written inline where used
            elif spec.type(tid).values:  # type: ignore[union-attr]
                self.define_enum(tid)
            else:  # BTF's enum forward declaration
                self.declare(self.tag[tid])
        elif k == Kind.FWD:
            if tid in self.tag:
                self.declare(self.tag[tid])
        elif k == Kind.TYPEDEF:
            t = spec.type(tid)
            if tid not in self.ordinary:
                self.need(t.type, complete)  # type: ignore[union-attr]
                return
            self.declare_typedef(tid)
            if complete:
                self.need(t.type, True)  # type: ignore[union-attr]
        elif k == Kind.FUNC_PROTO:
            fp = spec.type(tid)
            self.need(fp.return_type, False)  # type: ignore[union-attr]
            for p in fp.params:  # type: ignore[union-attr]
                if p.type:
                    self.need(p.type, False)
        elif k in (Kind.FUNC, Kind.VAR, Kind.DATASEC, Kind.DECL_TAG):
            raise self.fail(f"BTF type [{tid}] ({k.name}) is used as a C type")

    def need_members(self, tid: int) -> None:
        for m in self.spec.type(tid).members:  # type: ignore[union-attr]
            inline = self.inline_target(m)
            if inline:
                self.define(inline)
            else:
                self.need(m.type, True)

    def inline_target(self, m: Member) -> int:
        """For an unnamed member of a *named* struct type (-fms-extensions), that struct's id."""
        if m.name:
            return 0
        tid = self.resolve(m.type)
        if self.kinds[tid] in (Kind.STRUCT, Kind.UNION) and tid in self.tag:
            return tid
        return 0

    def declare(self, tag: str) -> None:
        if tag not in self.declared:
            self.declared.add(tag)
            self.out.append(f"{tag};\n\n")

    def define(self, tid: int) -> None:
        """Write the definition of named struct/union ``tid`` after everything it holds by value."""
        if tid in self.defined:
            return
        if tid in self.busy:
            raise self.fail(f"BTF type [{tid}] {self.tag[tid]} contains itself by value")
        self.busy.add(tid)
        self.need_members(tid)
        self.busy.discard(tid)
        self.defined.add(tid)
        self.declared.add(self.tag[tid])
        self.out.append(self.composite_body(tid, 0, self.tag[tid]) + ";\n\n")

    def define_enum(self, tid: int) -> None:
        if tid not in self.defined:
            self.defined.add(tid)
            self.declared.add(self.tag[tid])
            self.out.append(self.enum_body(tid, 0) + ";\n\n")

    def declare_typedef(self, tid: int) -> None:
        if tid in self.typedefs:
            return
        if tid in self.busy:
            raise self.fail(f"BTF typedef [{tid}] {self.ordinary[tid]} needs itself")
        self.busy.add(tid)
        target = self.spec.type(tid).type  # type: ignore[union-attr]
        self.need(target, False)
        self.busy.discard(tid)
        self.typedefs.add(tid)
        self.out.append(f"typedef {self.decl(target, self.ordinary[tid], 0)};\n\n")

    # -- layout --------------------------------------------------------------------------
    def c_align(self, tid: int) -> int:
        """Alignment (bytes) of type ``tid`` as this header declares it."""
        tid = self.resolve(tid, arrays=True)
        k = self.kinds[tid]
        if k == Kind.PTR:
            return _PTR_SIZE
        if k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
            size = self.spec.type(tid).size  # type: ignore[union-attr]
            return size if size in (1, 2, 4, 8, 16) else 1
        if k in (Kind.STRUCT, Kind.UNION):
            return self.layout(tid).align
        return 1

    def c_sizeof(self, tid: int) -> int:
        """sizeof type ``tid`` in this header (pointers have the BPF target's 8 bytes)."""
        count = 1
        for _ in range(_MAX_CHAIN):
            tid = self.resolve(tid)
            k = self.kinds[tid]
            if k != Kind.ARRAY:
                return count * (_PTR_SIZE if k == Kind.PTR else self.spec.sizeof(tid))
            t = self.spec.type(tid)
            count *= t.nelems  # type: ignore[union-attr]
            tid = t.type  # type: ignore[union-attr]
        raise self.fail(f"BTF array chain at type [{tid}] is too long or cyclic")

    def resolve(self, tid: int, arrays: bool = False) -> int:
        """Follow typedefs and qualifiers (and with ``arrays``, element types) to the type
        that decides size and alignment."""
        kinds = _MODIFIERS_AND_ARRAY if arrays else MODIFIER_KINDS
        for _ in range(_MAX_CHAIN):
            if self.kinds[tid] not in kinds:
                return tid
            tid = self.spec.type(tid).type  # type: ignore[union-attr]
        raise self.fail(f"BTF type chain at [{tid}] is too long or cyclic")

    def bitfield(self, m: Member) -> Tuple[int, int]:
        """(bit offset, width) of a member; width 0 for a plain member.

        Besides kflag bitfields this understands the old encoding, where the
        member's INT type carries the width and an extra bit offset.
        """
        if m.bitfield_size:
            return m.offset, m.bitfield_size
        t = self.spec.type(m.type)
        if isinstance(t, Int) and (t.bit_offset or t.bits != t.size * 8):
            return m.offset + t.bit_offset, t.bits
        return m.offset, 0

    def layout(self, tid: int) -> _Layout:
        lay = self.layouts.get(tid)
        if lay is None:
            if tid in self.laying_out:
                raise self.fail(f"BTF type [{tid}] contains itself by value")
            self.laying_out.add(tid)
            t = self.spec.type(tid)
            assert isinstance(t, Composite)
            if t.kind == Kind.UNION:
                lay = self.union_layout(t)
            else:
                lay = self.struct_layout(t, False) or self.struct_layout(t, True)
                if lay is None:
                    raise self.fail(f"BTF struct [{tid}] {t.name or '(anon)'} has a layout C "
                                    f"cannot express (members overlap or overrun its size)")
            self.layouts[tid] = lay
            self.laying_out.discard(tid)
        return lay

    def struct_layout(self, t: Composite, packed: bool) -> Optional[_Layout]:
        """Lay ``t`` out as clang would; None if its BTF layout is unreachable this way."""
        cur = 0
        align = 1
        pads = []
        for m in t.members:
            off, width = self.bitfield(m)
            a = self.c_align(m.type)
            pos = _place(cur, a, width, packed)
            # Padding can move a member forward only to a spot it would stay at.
            if off < pos or (off > pos and _place(off, a, width, packed) != off):
                return None
            pads.append(_pad_pieces(cur, off) if off > pos else ())
            cur = off + (width or self.c_sizeof(m.type) * 8)
            if not packed:
                align = max(align, a)
        size = t.size * 8
        natural = _align_up(_align_up(cur, 8), align * 8)
        if natural > size or size % (align * 8):
            return None
        tail = _pad_pieces(cur, size) if natural < size else ()
        return _Layout(align=align, packed=packed, pads=tuple(pads), tail=tail)

    def union_layout(self, t: Composite) -> _Layout:
        biggest = 0
        align = 1
        for m in t.members:
            _off, width = self.bitfield(m)
            biggest = max(biggest, _align_up(width, 8) // 8 if width else self.c_sizeof(m.type))
            align = max(align, self.c_align(m.type))
        pads = tuple(() for _ in t.members)
        size = t.size
        pad = size if biggest < size else 0
        if _align_up(biggest, align) > size or size % align:
            return _Layout(align=1, packed=True, pads=pads, union_pad=pad)
        if _align_up(biggest, align) == size:
            return _Layout(align=align, pads=pads)
        # Bigger than its members: an over-aligned union (____cacheline_aligned), or padding.
        a = align * 2
        while a <= size:
            if _align_up(biggest, a) == size:
                return _Layout(align=a, aligned=a, pads=pads)
            a *= 2
        return _Layout(align=align, pads=pads, union_pad=pad)

    # -- declarators ---------------------------------------------------------------------
    def decl(self, tid: int, inner: str, indent: int) -> str:
        """The C declaration of ``inner`` (a name, or ``""`` for an abstract one) with type ``tid``.

        Walks the type from the outside in, growing the declarator: pointers
        prefix ``*``, arrays and function prototypes suffix ``[n]``/``(...)``
        (parenthesizing a pointer declarator first), qualifiers go after the
        ``*`` they qualify or before the base type.
        """
        spec = self.spec
        quals: List[str] = []   # qualifiers waiting for the pointer or base type they apply to
        tags: List[str] = []
        for _ in range(_MAX_CHAIN):
            t = spec.type(tid)
            k = t.kind
            if k in _QUALIFIERS:
                if _QUALIFIERS[k] not in quals:  # `const` on an array and on its element
                    quals.append(_QUALIFIERS[k])
                tid = t.type  # type: ignore[union-attr]
            elif k == Kind.TYPE_TAG:
                value = t.name.replace("\\", "\\\\").replace('"', '\\"')
                tags.append(f'__btf_type_tag("{value}")')
                tid = t.type  # type: ignore[union-attr]
            elif k == Kind.PTR:
                mods = " ".join(quals + tags[::-1])
                inner = "*" + (mods + " " + inner if mods and inner else mods or inner)
                quals, tags = [], []
                tid = t.type  # type: ignore[union-attr]
            elif k == Kind.ARRAY:
                if inner.startswith("*"):
                    inner = f"({inner})"
                inner += f"[{t.nelems}]"  # type: ignore[union-attr]
                tid = t.type  # type: ignore[union-attr]
            elif k == Kind.FUNC_PROTO:
                if inner.startswith("*"):
                    inner = f"({inner})"
                inner += f"({self.params(t, indent)})"  # type: ignore[arg-type]
                quals, tags = [], []
                tid = t.return_type  # type: ignore[union-attr]
            elif k == Kind.TYPEDEF and tid not in self.ordinary:
                tid = t.type  # type: ignore[union-attr]
            else:
                base = self.base(tid, indent)
                break
        else:
            raise self.fail(f"BTF type chain at [{tid}] is too long or cyclic")
        text = " ".join(quals + [base] + tags[::-1])  # the innermost tag sits next to the base
        return f"{text} {inner}" if inner else text

    def base(self, tid: int, indent: int) -> str:
        """The type-specifier part of a declaration: a name, or an inline definition."""
        t = self.spec.type(tid)
        k = t.kind
        if k == Kind.UNKN:
            return "void"
        if k == Kind.INT:
            return _c_int_name(t)  # type: ignore[arg-type]
        if k == Kind.FLOAT:
            if t.name in ("float", "double"):
                return t.name
            return _FLOATS.get(t.size, t.name)  # type: ignore[union-attr]
        if k == Kind.TYPEDEF:
            return self.ordinary[tid]
        if k in (Kind.STRUCT, Kind.UNION, Kind.FWD):
            if tid in self.tag:
                return self.tag[tid]
            if k == Kind.FWD:
                return "void"
            return self.composite_body(tid, indent, None)
        if k in (Kind.ENUM, Kind.ENUM64):
            if tid in self.tag:
                return self.tag[tid]
            if tid in self.anon_enums or not t.values:  # type: ignore[union-attr]
                # Constants already defined (or none): stand in with the same-size integer.
                return _INT_TYPES.get((t.size, t.signed), "int")  # type: ignore[union-attr]
            self.anon_enums.add(tid)
            return self.enum_body(tid, indent)
        raise self.fail(f"BTF type [{tid}] ({k.name}) is used as a C type")

    def params(self, fp: FuncProto, indent: int) -> str:
        if not fp.params:
            return "void"
        out = []
        for p in fp.params:
            if p.type == 0:
                out.append("...")
                continue
            # A parameter named like a typedef would shadow it for the parameters after it.
            name = _c_ident(p.name) if p.name else ""
            if name in self.ordinary_names:
                name = ""
            out.append(self.decl(p.type, name, indent))
        return ", ".join(out)

    # -- definitions ---------------------------------------------------------------------
    def composite_body(self, tid: int, indent: int, tag: Optional[str]) -> str:
        """``struct [tag] { ... } [attributes]`` for struct/union ``tid``."""
        t = self.spec.type(tid)
        assert isinstance(t, Composite)
        lay = self.layout(tid)
        kw = "union" if t.kind == Kind.UNION else "struct"
        head = f"{tag or kw} {{"
        ind = "\t" * (indent + 1)
        lines = [head]
        for m, pads in zip(t.members, lay.pads):
            lines.extend(f"{ind}long: {w};" for w in pads)
            lines.append(f"{ind}{self.member(m, indent + 1)};")
        lines.extend(f"{ind}long: {w};" for w in lay.tail)
        if lay.union_pad:
            lines.append(f"{ind}struct {{")
            lines.extend(f"{ind}\tlong: {w};" for w in _pad_pieces(0, lay.union_pad * 8))
            lines.append(f"{ind}}};")
        end = "\t" * indent + "}"
        if len(lines) == 1:
            return f"{head}}}" + self.attributes(lay)
        return "\n".join(lines) + "\n" + end + self.attributes(lay)

    @staticmethod
    def attributes(lay: _Layout) -> str:
        if lay.packed:
            return " __attribute__((packed))"
        if lay.aligned:
            return f" __attribute__((aligned({lay.aligned})))"
        return ""

    def member(self, m: Member, indent: int) -> str:
        inline = self.inline_target(m)
        if inline:  # -fms-extensions style embedding: copy the struct's body without its tag
            return self.composite_body(inline, indent, None)
        _off, width = self.bitfield(m)
        text = self.decl(m.type, _c_ident(m.name) if m.name else "", indent)
        return f"{text}: {width}" if width else text

    def enum_body(self, tid: int, indent: int) -> str:
        """``enum [name] [: type] { A = 1, ... } [packed]`` for enum ``tid``."""
        t = self.spec.type(tid)
        assert isinstance(t, AnyEnum)
        values = [v.value for v in t.values]
        head = self.tag.get(tid, "enum")
        attr = ""
        if t.size != _natural_enum_size(values):
            if t.size == _packed_enum_size(values):
                attr = " __attribute__((packed))"
            else:
                signed = t.signed or any(v < 0 for v in values)
                head += f" : {_INT_TYPES.get((t.size, signed), 'int')}"
        ind = "\t" * (indent + 1)
        lines = [head + " {"]
        lines.extend(f"{ind}{name} = {_enum_literal(v)},"
                     for name, v in zip(self.enumerators[tid], values))
        lines.append("\t" * indent + "}" + attr)
        return "\n".join(lines)
