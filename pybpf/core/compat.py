"""Name and type compatibility rules of CO-RE, as libbpf defines them.

Three relations are used, each for a different kind of relocation:

* :func:`fields_compatible` – may a local field be read through a target
  field of this type?  (field relocations, libbpf ``bpf_core_fields_are_compat``)
* :func:`types_compatible` – is the target type "the same" type for
  ``bpf_core_type_exists``/``_size``/``_id_kernel``?  (``bpf_core_types_are_compat``)
* :func:`types_match` – the stricter ``bpf_core_type_matches`` relation
  (``__bpf_core_types_match``): same layout-relevant shape, members by name.

Each returns ``True``/``False``; a type graph too deep or cyclic to decide raises
:class:`DepthExceeded` (libbpf fails the load with ``-EINVAL`` in that case rather
than guessing), which :func:`pybpf.core.relocate` reports as a
:class:`~pybpf.errors.CORERelocationError`.
"""

from __future__ import annotations

from ..btf import Spec
from ..btf.types import Kind

__all__ = [
    "essential_name", "kinds_compatible", "fields_compatible", "types_compatible", "types_match",
    "MAX_DEPTH", "DepthExceeded",
]

MAX_DEPTH = 32
"""Depth limit libbpf applies to both type walks (pointer/array/function chains and nesting)."""

_ENUM_KINDS = (Kind.ENUM, Kind.ENUM64)
_COMPOSITE_KINDS = (Kind.STRUCT, Kind.UNION)


class DepthExceeded(Exception):
    """A type walk exceeded :data:`MAX_DEPTH` (libbpf: -EINVAL).  Internal: never
    escapes :func:`pybpf.core.relocate`, which turns it into a CORERelocationError."""


def essential_name(name: str) -> str:
    """``name`` without its CO-RE flavor suffix: ``foo___v2`` -> ``foo``.

    The cut is at the *last* ``X___Y`` where neither X nor Y is an underscore, so
    ``a___b___c`` -> ``a___b`` and ``a____b`` (four underscores) is not flavored.
    """
    for i in range(len(name) - 5, -1, -1):
        if (name[i] != "_" and name[i + 1:i + 4] == "___" and name[i + 4] != "_"):
            return name[:i + 1]
    return name


def kinds_compatible(a: Kind, b: Kind) -> bool:
    """Same BTF kind, or both enums (ENUM and ENUM64 stand for each other)."""
    return a == b or (a in _ENUM_KINDS and b in _ENUM_KINDS)


def _names_match(local_name: str, targ_name: str) -> bool:
    """Names equal modulo flavor; an anonymous target only matches an anonymous local."""
    if not targ_name:
        return not local_name
    return essential_name(local_name) == essential_name(targ_name)


def _plain_ints(a: object, b: object) -> bool:
    """Neither int is a legacy bitfield-like int (non-zero BTF_INT_OFFSET)."""
    return a.bit_offset == 0 and b.bit_offset == 0  # type: ignore[attr-defined]


def fields_compatible(local: Spec, local_id: int, targ: Spec, targ_id: int) -> bool:
    """Whether a local field of type ``local_id`` can be relocated onto a target field of ``targ_id``.

    Modifiers and typedefs are skipped.  Any struct/union accepts any struct/union;
    pointers and floats are compatible whatever they point to or their size; integers
    whatever their size and sign (except legacy bit-offset ints); enums and forward
    declarations need equal essential names unless one side is anonymous; arrays
    compare their element types.
    """
    for _ in range(MAX_DEPTH):
        local_id = local.skip_modifiers(local_id)
        targ_id = targ.skip_modifiers(targ_id)
        lk = local.kind_of(local_id)
        tk = targ.kind_of(targ_id)
        if lk in _COMPOSITE_KINDS and tk in _COMPOSITE_KINDS:
            return True
        if not kinds_compatible(lk, tk):
            return False
        if lk in (Kind.PTR, Kind.FLOAT):
            return True
        if lk in (Kind.FWD, Kind.ENUM, Kind.ENUM64):
            ln = essential_name(local.type(local_id).name)
            tn = essential_name(targ.type(targ_id).name)
            return not ln or not tn or ln == tn
        if lk == Kind.INT:
            return _plain_ints(local.type(local_id), targ.type(targ_id))
        if lk == Kind.ARRAY:
            local_id = local.type(local_id).type  # type: ignore[union-attr]
            targ_id = targ.type(targ_id).type  # type: ignore[union-attr]
            continue
        return False
    raise DepthExceeded()


def types_compatible(local: Spec, local_id: int, targ: Spec, targ_id: int,
                     level: int = MAX_DEPTH) -> bool:
    """libbpf's type compatibility for TYPE_EXISTS / TYPE_SIZE / TYPE_ID_TARGET.

    The root names were already matched by the candidate search; below the root
    names are ignored.  Kinds must agree (ENUM/ENUM64 mix); structs, unions,
    enums, forward declarations and void are compatible by kind alone; ints
    whatever their size; pointers and arrays by their target/element type;
    function prototypes by arity and, recursively, argument and return types.
    Floats and other kinds are not compatible (as in libbpf).
    """
    if not kinds_compatible(local.kind_of(local_id), targ.kind_of(targ_id)):
        return False
    for _ in range(MAX_DEPTH):
        local_id = local.skip_modifiers(local_id)
        targ_id = targ.skip_modifiers(targ_id)
        lk = local.kind_of(local_id)
        tk = targ.kind_of(targ_id)
        if not kinds_compatible(lk, tk):
            return False
        if lk in (Kind.UNKN, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD):
            return True
        lt = local.type(local_id)
        tt = targ.type(targ_id)
        if lk == Kind.INT:
            return _plain_ints(lt, tt)
        if lk in (Kind.PTR, Kind.ARRAY):
            local_id = lt.type  # type: ignore[union-attr]
            targ_id = tt.type  # type: ignore[union-attr]
            continue
        if lk == Kind.FUNC_PROTO:
            lps = lt.params  # type: ignore[union-attr]
            tps = tt.params  # type: ignore[union-attr]
            if len(lps) != len(tps):
                return False
            for lp, tp in zip(lps, tps):
                if level <= 0:
                    raise DepthExceeded()
                if not types_compatible(local, local.skip_modifiers(lp.type),
                                        targ, targ.skip_modifiers(tp.type), level - 1):
                    return False
            local_id = lt.return_type  # type: ignore[union-attr]
            targ_id = tt.return_type  # type: ignore[union-attr]
            continue
        return False
    raise DepthExceeded()


def types_match(local: Spec, local_id: int, targ: Spec, targ_id: int,
                behind_ptr: bool = False, level: int = MAX_DEPTH) -> bool:
    """libbpf's ``bpf_core_type_matches`` relation.

    Modifiers and typedefs are skipped, then names must match (modulo flavor).
    Kinds must agree, except that behind a pointer a struct/union matches a
    forward declaration of the same flavor (and vice versa), and ENUM matches
    ENUM64.  Ints need equal size and signedness; arrays equal length and
    matching elements; pointers matching pointees; enums equal size and every
    local enumerator present by name in the target; structs/unions every local
    member present by name with a matching type (only kind is checked behind a
    pointer); function prototypes equal arity and matching argument and return types.
    """
    if level <= 0:
        raise DepthExceeded()
    for _ in range(MAX_DEPTH):
        local_id = local.skip_modifiers(local_id)
        targ_id = targ.skip_modifiers(targ_id)
        lt = local.type(local_id)
        tt = targ.type(targ_id)
        if not _names_match(lt.name, tt.name):
            return False
        lk = lt.kind
        tk = tt.kind
        if lk == Kind.UNKN:
            return tk == Kind.UNKN
        if lk == Kind.FWD:
            lf = lt.is_union  # type: ignore[union-attr]
            if tk == Kind.FWD:
                return lf == tt.is_union  # type: ignore[union-attr]
            if not behind_ptr:
                return False
            return (tk == Kind.STRUCT and not lf) or (tk == Kind.UNION and lf)
        if lk in _ENUM_KINDS:
            return tk in _ENUM_KINDS and _enums_match(lt, tt)
        if lk in _COMPOSITE_KINDS:
            if behind_ptr:
                if lk == tk:
                    return True
                return tk == Kind.FWD and tt.is_union == (lk == Kind.UNION)  # type: ignore[union-attr]
            if lk != tk:
                return False
            return _composites_match(local, lt, targ, tt, level)
        if lk != tk:
            return False
        if lk == Kind.INT:
            return lt.size == tt.size and lt.signed == tt.signed  # type: ignore[union-attr]
        if lk == Kind.PTR:
            behind_ptr = True
            local_id = lt.type  # type: ignore[union-attr]
            targ_id = tt.type  # type: ignore[union-attr]
            continue
        if lk == Kind.ARRAY:
            if lt.nelems != tt.nelems:  # type: ignore[union-attr]
                return False
            local_id = lt.type  # type: ignore[union-attr]
            targ_id = tt.type  # type: ignore[union-attr]
            continue
        if lk == Kind.FUNC_PROTO:
            lps = lt.params  # type: ignore[union-attr]
            tps = tt.params  # type: ignore[union-attr]
            if len(lps) != len(tps):
                return False
            for lp, tp in zip(lps, tps):
                if not types_match(local, lp.type, targ, tp.type, behind_ptr, level - 1):
                    return False
            local_id = lt.return_type  # type: ignore[union-attr]
            targ_id = tt.return_type  # type: ignore[union-attr]
            continue
        return False
    raise DepthExceeded()


def _enums_match(lt: object, tt: object) -> bool:
    if lt.size != tt.size:  # type: ignore[attr-defined]
        return False
    lvals = lt.values  # type: ignore[attr-defined]
    tvals = tt.values  # type: ignore[attr-defined]
    if len(lvals) > len(tvals):
        return False
    return all(any(_names_match(lv.name, tv.name) for tv in tvals) for lv in lvals)


def _composites_match(local: Spec, lt: object, targ: Spec, tt: object, level: int) -> bool:
    lms = lt.members  # type: ignore[attr-defined]
    tms = tt.members  # type: ignore[attr-defined]
    if len(lms) > len(tms):
        return False
    for lm in lms:
        if not any(_names_match(lm.name, tm.name)
                   and types_match(local, lm.type, targ, tm.type, False, level - 1)
                   for tm in tms):
            return False
    return True

