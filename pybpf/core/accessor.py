"""Access specs: what a CO-RE relocation points at, in one BTF.

Clang encodes the thing a relocation is about as a root type id plus an
*access string* of ``:``-separated indices ("0:1:2").  The first index is an
array index on the root (``&p[0]`` for ``p->x``); each further index selects a
member of a struct/union (anonymous members included) or an element of an array.

:func:`parse_access` turns that into an :class:`AccessSpec` against the object's
BTF.  Its ``accessors`` keep only the semantically meaningful steps (the root
index, *named* members, array indices) – the ones that must be found again, by
name, in the target BTF – while ``raw`` keeps every step and ``bit_offset`` the
position they lead to.  Target specs built by :mod:`pybpf.core.match` have the
same shape, so the value computations work on either side.
"""

from __future__ import annotations

from typing import Optional, Tuple

import attrs

from ..btf import Spec
from ..btf.ext import COREReloKind, CORERelo
from ..btf.types import Kind
from ..errors import CORERelocationError, ParseError

__all__ = [
    "Accessor", "AccessSpec", "parse_access", "format_path", "is_field_kind", "is_type_kind",
    "is_enumval_kind", "is_flex_array", "sizeof", "MAX_SPEC_LEN", "KIND_NAMES",
]

MAX_SPEC_LEN = 64
"""Most steps an access string may have (libbpf's BPF_CORE_SPEC_MAX_LEN)."""

_FIELD_KINDS = frozenset({
    COREReloKind.FIELD_BYTE_OFFSET, COREReloKind.FIELD_BYTE_SIZE, COREReloKind.FIELD_EXISTS,
    COREReloKind.FIELD_SIGNED, COREReloKind.FIELD_LSHIFT_U64, COREReloKind.FIELD_RSHIFT_U64,
})
_TYPE_KINDS = frozenset({
    COREReloKind.TYPE_ID_LOCAL, COREReloKind.TYPE_ID_TARGET, COREReloKind.TYPE_EXISTS,
    COREReloKind.TYPE_MATCHES, COREReloKind.TYPE_SIZE,
})
_ENUMVAL_KINDS = frozenset({COREReloKind.ENUMVAL_EXISTS, COREReloKind.ENUMVAL_VALUE})

KIND_NAMES = {
    COREReloKind.FIELD_BYTE_OFFSET: "byte_off",
    COREReloKind.FIELD_BYTE_SIZE: "byte_sz",
    COREReloKind.FIELD_EXISTS: "field_exists",
    COREReloKind.FIELD_SIGNED: "signed",
    COREReloKind.FIELD_LSHIFT_U64: "lshift_u64",
    COREReloKind.FIELD_RSHIFT_U64: "rshift_u64",
    COREReloKind.TYPE_ID_LOCAL: "local_type_id",
    COREReloKind.TYPE_ID_TARGET: "target_type_id",
    COREReloKind.TYPE_EXISTS: "type_exists",
    COREReloKind.TYPE_MATCHES: "type_matches",
    COREReloKind.TYPE_SIZE: "type_size",
    COREReloKind.ENUMVAL_EXISTS: "enumval_exists",
    COREReloKind.ENUMVAL_VALUE: "enumval_value",
}
"""Short names of the relocation kinds, as libbpf prints them."""


def is_field_kind(kind: COREReloKind) -> bool:
    """FIELD_* relocations: about a member reached through an access string."""
    return kind in _FIELD_KINDS


def is_type_kind(kind: COREReloKind) -> bool:
    """TYPE_* relocations: about the root type itself (access string "0")."""
    return kind in _TYPE_KINDS


def is_enumval_kind(kind: COREReloKind) -> bool:
    """ENUMVAL_* relocations: about one enumerator (access string = its index)."""
    return kind in _ENUMVAL_KINDS


@attrs.frozen
class Accessor:
    """One meaningful step of an access.

    ``type_id`` is the (modifier-free) struct/union holding a named member, the
    element type for an array index, or the root type for the first step.
    ``index`` is the member, element or enumerator index.  ``name`` is the
    member or enumerator name, ``None`` for an array index.
    """
    type_id: int
    index: int
    name: Optional[str] = None


@attrs.frozen
class AccessSpec:
    """A relocation's access resolved in one BTF (the object's or a target's).

    ``bit_offset`` is where the access leads, from the start of the root object.
    Type relocations have no accessors; enum relocations have exactly one.
    """
    btf: Spec = attrs.field(eq=False, repr=False)
    root_type_id: int
    kind: COREReloKind
    accessors: Tuple[Accessor, ...] = ()
    raw: Tuple[int, ...] = ()
    bit_offset: int = 0


def sizeof(btf: Spec, type_id: int) -> int:
    """Size of a type in bytes; a type without size is a relocation error."""
    try:
        return btf.sizeof(type_id)
    except ParseError as e:
        raise CORERelocationError(f"cannot size {btf.type_name(type_id)}: {e.reason}") from None


def _parse_indices(access: str) -> Tuple[int, ...]:
    if not access or access[0] == ":":
        raise CORERelocationError(f"malformed access string {access!r}")
    parts = access.split(":")
    if not all(p.isdigit() and p.isascii() for p in parts):
        raise CORERelocationError(f"malformed access string {access!r}")
    if len(parts) > MAX_SPEC_LEN:
        raise CORERelocationError(f"access string {access!r} has more than {MAX_SPEC_LEN} steps")
    return tuple(int(p) for p in parts)


def parse_access(btf: Spec, relo: CORERelo) -> AccessSpec:
    """Resolve ``relo``'s access string against the object's BTF ``btf``.

    Raises :class:`CORERelocationError` when the string does not fit the types
    (index past a struct's members or an array's end, a step into a scalar).
    """
    kind = relo.kind
    access = relo.access_str
    if is_type_kind(kind):
        if access != "0":
            raise CORERelocationError(f"type relocation has access string {access!r}, expected '0'")
        return AccessSpec(btf, relo.type_id, kind)
    raw = _parse_indices(access)
    root = btf.skip_modifiers(relo.type_id)
    first = raw[0]
    if is_enumval_kind(kind):
        t = btf.type(root)
        if t.kind not in (Kind.ENUM, Kind.ENUM64):
            raise CORERelocationError(f"enum relocation on {btf.type_name(relo.type_id)}, not an enum")
        if len(raw) > 1 or first >= len(t.values):  # type: ignore[union-attr]
            raise CORERelocationError(f"enumerator index {access!r} out of range of "
                                      f"{btf.type_name(root)}")
        name = t.values[first].name  # type: ignore[union-attr]
        return AccessSpec(btf, relo.type_id, kind, (Accessor(root, first, name),), raw)
    if not is_field_kind(kind):  # pragma: no cover - COREReloKind has no other members
        raise CORERelocationError(f"unknown relocation kind {kind}")

    accessors = [Accessor(root, first)]
    bit_offset = first * sizeof(btf, root) * 8
    cur = root
    for idx in raw[1:]:
        cur = btf.skip_modifiers(cur)
        t = btf.type(cur)
        if t.kind in (Kind.STRUCT, Kind.UNION):
            members = t.members  # type: ignore[union-attr]
            if idx >= len(members):
                raise CORERelocationError(f"member index {idx} past the {len(members)} members "
                                          f"of {btf.type_name(cur)}")
            m = members[idx]
            bit_offset += m.offset
            if m.name:
                accessors.append(Accessor(cur, idx, m.name))
            cur = m.type
        elif t.kind == Kind.ARRAY:
            elem = btf.skip_modifiers(t.type)  # type: ignore[union-attr]
            if not is_flex_array(btf, accessors[-1], t.nelems) and idx >= t.nelems:  # type: ignore[union-attr]
                raise CORERelocationError(f"index {idx} past the end of {btf.type_name(cur)}")
            accessors.append(Accessor(elem, idx))
            bit_offset += idx * sizeof(btf, elem) * 8
            cur = elem
        else:
            raise CORERelocationError(f"access string {access!r} steps into "
                                      f"{btf.type_name(cur)}, not a struct, union or array")
    return AccessSpec(btf, relo.type_id, kind, tuple(accessors), raw, bit_offset)


def is_flex_array(btf: Spec, parent: Accessor, nelems: int) -> bool:
    """A zero-length array that is the last named member of its struct (``int x[];``)."""
    if parent.name is None or nelems > 0:
        return False
    holder = btf.type(parent.type_id)
    return parent.index == len(holder.members) - 1  # type: ignore[union-attr]


def format_path(spec: AccessSpec) -> str:
    """A readable, source-level view of the access: ``task_struct.pids[1].pid``,
    ``enum pid_type::PIDTYPE_TGID``, ``struct task_struct``."""
    btf = spec.btf
    root = btf.type(spec.root_type_id)
    name = root.name or "(anon)"
    if is_type_kind(spec.kind):
        return btf.type_name(spec.root_type_id)
    if is_enumval_kind(spec.kind):
        prefix = btf.type_name(spec.root_type_id) if root.kind != Kind.TYPEDEF else name
        return f"{prefix}::{spec.accessors[0].name}" if spec.accessors else prefix
    out = [name]
    for i, acc in enumerate(spec.accessors):
        if acc.name is not None:
            out.append(f".{acc.name}")
        elif i > 0 or acc.index > 0:
            out.append(f"[{acc.index}]")
    return "".join(out)
