"""Resolving CO-RE relocations: local BTF + records + target BTF -> :class:`Fixup` list.

:func:`relocate` is a pure function; it never touches the kernel and never
modifies its inputs.  For every relocation it

1. parses the access string against the object's BTF (:mod:`.accessor`);
2. finds the candidate target types by essential name (:mod:`.candidates`);
3. matches the access in each candidate (:mod:`.match`) and computes the
   local (compiler-assumed) and target values;
4. insists that all matching candidates agree, otherwise the relocation is
   ambiguous and :class:`~pybpf.errors.CORERelocationError` names them;
5. when nothing matches, resolves to 0 (existence checks and all type-based
   kinds, as libbpf does) or poisons the instruction.

The semantics are libbpf's (``relo_core.c``), including its quirks: values
are computed as 64-bit unsigned, the candidate list of a local type is
narrowed to the candidates that matched its previous relocations, and a
bitfield's LSHIFT depends on byte order (the object's is used).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import attrs

from ..btf import Spec
from ..btf.ext import COREReloKind, CORERelo
from ..btf.types import AnyEnum, Int, IntEncoding, Kind
from ..errors import CORERelocationError
from .accessor import (
    KIND_NAMES, AccessSpec, format_path, is_enumval_kind, is_field_kind, parse_access, sizeof,
)
from .candidates import Candidate, CandidateCache, target_label
from .compat import essential_name
from .fixup import INSN_SIZE, Fixup, patch_insn
from .match import Mismatch, match_candidate

__all__ = ["relocate"]

_U64 = (1 << 64) - 1


class _Poison(Exception):
    """The relocation cannot be satisfied and its instruction must be poisoned."""


@attrs.frozen
class _Value:
    """A value computed from one side's spec (libbpf's val/field_sz/type_id/validate)."""
    value: int
    size: int = 0          # field size deciding a load/store width; 0 if not applicable
    type_id: int = 0       # modifier-free field type behind ``size``
    validate: bool = True  # whether the compiler's value is reliable enough to check


# -- values -----------------------------------------------------------------------------------

def _field_value(kind: COREReloKind, spec: Optional[AccessSpec], big_endian: bool) -> _Value:
    if kind == COREReloKind.FIELD_EXISTS:
        return _Value(1 if spec is not None else 0)
    if spec is None:
        raise _Poison()
    btf = spec.btf
    acc = spec.accessors[-1]
    if acc.name is None:  # the access ends on an array element (or the root object)
        size = sizeof(btf, acc.type_id)
        if kind == COREReloKind.FIELD_BYTE_OFFSET:
            return _Value(spec.bit_offset // 8, size, acc.type_id)
        if kind == COREReloKind.FIELD_BYTE_SIZE:
            return _Value(size)
        raise CORERelocationError(f"{KIND_NAMES[kind]} relocation cannot apply to an array element")
    member = btf.type(acc.type_id).members[acc.index]  # type: ignore[union-attr]
    field_id = btf.skip_modifiers(member.type)
    ft = btf.type(field_id)
    bit_off = spec.bit_offset
    bit_sz = member.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        # The smallest naturally aligned load, starting from the field type's size,
        # that covers the whole bitfield.
        byte_sz = ft.size if isinstance(ft, (Int, AnyEnum)) else 0
        if byte_sz <= 0:
            raise CORERelocationError(f"bitfield '{acc.name}' has type {btf.type_name(field_id)}, "
                                      "not an integer or enum")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise CORERelocationError(f"bitfield '{acc.name}' cannot be read with one 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = sizeof(btf, field_id)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    if kind == COREReloKind.FIELD_BYTE_OFFSET:
        if bitfield:
            return _Value(byte_off, validate=False)
        return _Value(byte_off, byte_sz, field_id)
    if kind == COREReloKind.FIELD_BYTE_SIZE:
        return _Value(byte_sz, validate=not bitfield)
    if kind == COREReloKind.FIELD_SIGNED:
        signed = (isinstance(ft, AnyEnum) and ft.signed) or \
            (isinstance(ft, Int) and bool(ft.encoding & IntEncoding.SIGNED))
        return _Value(int(signed))
    if kind == COREReloKind.FIELD_LSHIFT_U64:
        if big_endian:
            shift = (8 - byte_sz) * 8 + (bit_off - byte_off * 8)
        else:
            shift = 64 - (bit_off + bit_sz - byte_off * 8)
        return _Value(shift & _U64, validate=not bitfield)
    if kind == COREReloKind.FIELD_RSHIFT_U64:
        return _Value((64 - bit_sz) & _U64)
    raise CORERelocationError(f"unsupported field relocation {kind!r}")  # pragma: no cover


def _type_value(kind: COREReloKind, spec: Optional[AccessSpec]) -> _Value:
    if spec is None:  # type-based relocations resolve to 0 when the type is missing
        return _Value(0)
    if kind == COREReloKind.TYPE_ID_TARGET:
        return _Value(spec.root_type_id, validate=False)  # ids shift when objects are linked
    if kind in (COREReloKind.TYPE_EXISTS, COREReloKind.TYPE_MATCHES):
        return _Value(1)
    if kind == COREReloKind.TYPE_SIZE:
        return _Value(sizeof(spec.btf, spec.root_type_id))
    raise CORERelocationError(f"unsupported type relocation {kind!r}")  # pragma: no cover


def _enum_value(kind: COREReloKind, spec: Optional[AccessSpec]) -> _Value:
    if kind == COREReloKind.ENUMVAL_EXISTS:
        return _Value(1 if spec is not None else 0)
    if spec is None:
        raise _Poison()
    acc = spec.accessors[0]
    t = spec.btf.type(acc.type_id)
    v = t.values[acc.index].value  # type: ignore[union-attr]
    if t.kind == Kind.ENUM:  # libbpf reads a 32-bit enumerator as s32, sign-extended
        v &= 0xFFFFFFFF
        v = v - (1 << 32) if v & 0x80000000 else v
    return _Value(v)


def _value(kind: COREReloKind, spec: Optional[AccessSpec], big_endian: bool) -> _Value:
    if is_field_kind(kind):
        return _field_value(kind, spec, big_endian)
    if is_enumval_kind(kind):
        return _enum_value(kind, spec)
    return _type_value(kind, spec)


@attrs.frozen
class _Outcome:
    """Local and target values of a relocation against one candidate (or none)."""
    local: _Value
    target: Optional[_Value]   # None: poisoned

    @property
    def poisoned(self) -> bool:
        return self.target is None

    def size_problem(self, local: Spec, target: Optional[Spec], where: str) -> str:
        """Why a load/store cannot change width to the target field's size ("" if it can).

        As libbpf: only pointers and non-signed integers keep their value when
        read with another width (zero extension); anything else is poisoned.
        """
        if self.target is None or self.local.size == self.target.size:
            return ""
        lt = local.type(self.local.type_id)
        tt = target.type(self.target.type_id) if target is not None else None
        if tt is not None:
            if lt.kind == Kind.PTR and tt.kind == Kind.PTR:
                return ""
            if (lt.kind == Kind.INT and tt.kind == Kind.INT
                    and lt.encoding != IntEncoding.SIGNED  # type: ignore[union-attr]
                    and tt.encoding != IntEncoding.SIGNED):  # type: ignore[union-attr]
                return ""
        lname = local.type_name(self.local.type_id) if self.local.type_id else "a bitfield"
        tname = target.type_name(self.target.type_id) \
            if target is not None and self.target.type_id else "a bitfield"
        return (f"it is {lname} ({self.local.size} bytes) locally but {tname} "
                f"({self.target.size} bytes) in {where}; only pointers and unsigned integers "
                "can be read or written with another width")


def _outcome(kind: COREReloKind, local: AccessSpec, targ: Optional[AccessSpec],
             big_endian: bool) -> _Outcome:
    lv = _value(kind, local, big_endian)
    try:
        tv: Optional[_Value] = _value(kind, targ, big_endian)
    except _Poison:
        tv = None
    return _Outcome(lv, tv)


# -- one relocation ---------------------------------------------------------------------------

_KIND_WORDS = {Kind.STRUCT: "struct", Kind.UNION: "union", Kind.ENUM: "enum", Kind.ENUM64: "enum",
               Kind.TYPEDEF: "typedef", Kind.INT: "integer type", Kind.FWD: "forward declaration",
               Kind.FLOAT: "float type", Kind.FUNC_PROTO: "function prototype"}


def _describe_failure(local: AccessSpec, cands: Sequence[Candidate],
                      mismatches: Sequence[Tuple[Candidate, Mismatch]],
                      labels: Sequence[str]) -> str:
    """Why no candidate matched, in source terms."""
    if not cands:
        t = local.btf.type(local.root_type_id)
        word = _KIND_WORDS.get(t.kind, t.kind.name.lower())
        where = labels[0] if len(labels) == 1 else f"{labels[0]} or its modules"
        return f"no {word} named '{essential_name(t.name)}' in {where}"
    return "; ".join(f"{m.reason} of {c.label}" for c, m in mismatches)


def _ambiguity(first: Tuple[Candidate, AccessSpec, _Outcome],
               other: Tuple[Candidate, AccessSpec, _Outcome]) -> str:
    """The error text when two matching candidates resolve differently."""
    show_offsets = first[1].bit_offset != other[1].bit_offset

    def says(c: Candidate, s: AccessSpec, o: _Outcome) -> str:
        what = "fails" if o.target is None else f"gives {o.target.value}"
        if show_offsets:
            what += f" (field at bit offset {s.bit_offset})"
        return f"{c.describe()} {what}"
    return f"candidates disagree: {says(*first)}, {says(*other)}"


def _resolve(local_btf: Spec, relo: CORERelo, index: int, cache: CandidateCache,
             section: str, labels: Sequence[str]) -> Fixup:
    insn_index = relo.insn_off // INSN_SIZE
    base = dict(insn_index=insn_index, kind=relo.kind, local_type_id=relo.type_id,
                relo_index=index, section=section)
    prefix = (f"section {section!r}: " if section else "") + f"relocation #{index}"
    if relo.insn_off % INSN_SIZE:
        raise CORERelocationError(f"{prefix}: instruction offset {relo.insn_off} is not a "
                                  "multiple of 8")
    try:
        local = parse_access(local_btf, relo)
    except CORERelocationError as e:
        raise CORERelocationError(
            f"{prefix} ({KIND_NAMES[relo.kind]} at insn {insn_index}): [{relo.type_id}] "
            f"{local_btf.type_name(relo.type_id)} + {relo.access_str!r}: {e}") from None
    path = format_path(local)
    where = f"{prefix} ({KIND_NAMES[relo.kind]} {path} at insn {insn_index})"
    big_endian = local_btf.byteorder == ">"
    try:
        if relo.kind == COREReloKind.TYPE_ID_LOCAL:
            return Fixup(local_value=relo.type_id, target_value=relo.type_id, path=path,
                         validate=False, **base)  # type: ignore[arg-type]
        cands = cache.get(relo.type_id)
        chosen: Optional[Tuple[Candidate, AccessSpec, _Outcome]] = None
        matched: List[Candidate] = []
        mismatches: List[Tuple[Candidate, Mismatch]] = []
        for cand in cands:
            res = match_candidate(local, cand.spec, cand.type_id)
            if isinstance(res, Mismatch):
                mismatches.append((cand, res))
                continue
            out = _outcome(relo.kind, local, res, big_endian)
            if chosen is None:
                chosen = (cand, res, out)
            elif res.bit_offset != chosen[1].bit_offset or out.poisoned != chosen[2].poisoned or \
                    (out.target is not None and chosen[2].target is not None
                     and out.target.value & _U64 != chosen[2].target.value & _U64):
                raise CORERelocationError(_ambiguity(chosen, (cand, res, out)))
            matched.append(cand)
        cache.narrow(relo.type_id, matched)
        if chosen is None:
            out = _outcome(relo.kind, local, None, big_endian)
            reason = _describe_failure(local, cands, mismatches, labels)
            return _fixup(base, path, out, local_btf, None, f"{path}: {reason}")
        cand, _, out = chosen
        return _fixup(base, path, out, local_btf, cand, "")
    except CORERelocationError as e:
        raise CORERelocationError(f"{where}: {e}") from None


def _fixup(base: dict, path: str, out: _Outcome, local_btf: Spec, cand: Optional[Candidate],
           reason: str) -> Fixup:
    tv = out.target
    target = cand.spec if cand is not None else None
    return Fixup(
        local_value=out.local.value,
        target_value=tv.value if tv is not None else 0,
        path=path,
        poisoned=tv is None,
        reason=reason,
        validate=out.local.validate,
        target_type_id=cand.type_id if cand is not None else 0,
        target=target,
        target_index=cand.target if cand is not None else -1,
        target_type=cand.describe() if cand is not None else "",
        local_size=out.local.size,
        target_size=tv.size if tv is not None else 0,
        size_problem=out.size_problem(local_btf, target, cand.describe() if cand else ""),
        **base,
    )


# -- public -----------------------------------------------------------------------------------

def relocate(local: Spec, relos: Sequence[CORERelo], targets: Sequence[Spec],
             insns: Optional[bytes] = None, *, section: str = "",
             cache: Optional[CandidateCache] = None) -> List[Fixup]:
    """Resolve CO-RE relocations ``relos`` (of one section) against ``targets``.

    ``local`` is the object's BTF, ``targets[0]`` the kernel's (vmlinux) BTF and
    any further targets module (split) BTF whose candidates are used only when
    vmlinux has none.  With ``insns`` (the section's instructions), every
    fixup is also checked against its instruction – the expected local value,
    the instruction form, the new value's range – exactly as
    :func:`~pybpf.core.apply_fixups` will do, and load/store width changes
    that cannot be made come back as poisoned fixups; ``insns`` itself is not
    modified.  ``cache`` shares candidate lists between the sections of one
    object (libbpf narrows them object-wide); by default each call has its own.

    Returns one :class:`Fixup` per relocation, in order.  Raises
    :class:`~pybpf.errors.CORERelocationError` for malformed relocations,
    ambiguous candidates, or (with ``insns``) instructions that do not fit.
    """
    if not targets:
        raise CORERelocationError("CO-RE relocation needs at least one target BTF (vmlinux)")
    if cache is None:
        cache = CandidateCache(local, targets)
    else:
        cache.check(local, targets)
    labels = [target_label(t, i) for i, t in enumerate(targets)]
    fixups = [_resolve(local, relo, i, cache, section, labels) for i, relo in enumerate(relos)]
    if insns is not None:
        scratch = bytearray(insns)
        fixups = [patch_insn(scratch, fx, local.byteorder) for fx in fixups]
    return fixups
