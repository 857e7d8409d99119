"""Matching a local access spec against one target candidate type.

:func:`match_candidate` finds, in the target BTF, the same named members and
array elements the local access goes through (descending into anonymous
struct/union members as needed), checking at every named member that the
local and target field types are compatible.  It returns the target's
:class:`~pybpf.core.accessor.AccessSpec`, or a :class:`Mismatch` telling in
source terms why the candidate does not fit; genuinely malformed input raises
:class:`~pybpf.errors.CORERelocationError`.
"""

from __future__ import annotations

from typing import List, Union as _U

import attrs

from ..btf import Spec
from ..btf.ext import COREReloKind
from ..btf.types import Kind
from ..errors import CORERelocationError
from .accessor import (
    MAX_SPEC_LEN, Accessor, AccessSpec, is_flex_array, is_enumval_kind, is_type_kind, sizeof,
)
from .compat import DepthExceeded, essential_name, fields_compatible, types_compatible, types_match

__all__ = ["Mismatch", "match_candidate"]


@attrs.frozen
class Mismatch:
    """Why a candidate target type cannot satisfy a relocation (a readable phrase)."""
    reason: str


def match_candidate(local: AccessSpec, targ: Spec, targ_id: int) -> _U[AccessSpec, Mismatch]:
    """Resolve ``local``'s access in candidate type ``targ_id`` of ``targ``."""
    kind = local.kind
    try:
        if is_type_kind(kind):
            return _match_type(local, targ, targ_id)
        if is_enumval_kind(kind):
            return _match_enumval(local, targ, targ_id)
        return _FieldMatcher(local, targ).run(targ_id)
    except DepthExceeded:
        raise CORERelocationError(
            f"{targ.type_name(targ_id)} [{targ_id}] nests too deeply to compare with local "
            f"{local.btf.type_name(local.root_type_id)}") from None


def _match_type(local: AccessSpec, targ: Spec, targ_id: int) -> _U[AccessSpec, Mismatch]:
    if local.kind == COREReloKind.TYPE_MATCHES:
        ok = types_match(local.btf, local.root_type_id, targ, targ_id)
        verb = "does not match"
    else:
        ok = types_compatible(local.btf, local.root_type_id, targ, targ_id)
        verb = "is not compatible with"
    if not ok:
        return Mismatch(f"{targ.type_name(targ_id)} [{targ_id}] {verb} the local "
                        f"{local.btf.type_name(local.root_type_id)}")
    return AccessSpec(targ, targ_id, local.kind)


def _match_enumval(local: AccessSpec, targ: Spec, targ_id: int) -> _U[AccessSpec, Mismatch]:
    enum_id = targ.skip_modifiers(targ_id)
    t = targ.type(enum_id)
    if t.kind not in (Kind.ENUM, Kind.ENUM64):
        return Mismatch(f"{targ.type_name(targ_id)} [{targ_id}] is not an enum")
    want = essential_name(local.accessors[0].name or "")
    for i, v in enumerate(t.values):  # type: ignore[union-attr]
        if essential_name(v.name) == want:
            return AccessSpec(targ, targ_id, local.kind, (Accessor(enum_id, i, v.name),), (i,))
    return Mismatch(f"enumerator '{local.accessors[0].name}' not found in "
                    f"{targ.type_name(enum_id)} [{enum_id}]")


class _FieldMatcher:
    """Builds a target field spec step by step (one instance per candidate)."""

    def __init__(self, local: AccessSpec, targ: Spec):
        self.local = local
        self.targ = targ
        self.accessors: List[Accessor] = []
        self.raw: List[int] = []
        self.bit_offset = 0

    def _push_raw(self, idx: int) -> None:
        if len(self.raw) >= MAX_SPEC_LEN:
            raise CORERelocationError(f"target access is deeper than {MAX_SPEC_LEN} steps")
        self.raw.append(idx)

    def run(self, targ_id: int) -> _U[AccessSpec, Mismatch]:
        targ = self.targ
        root_id = targ_id
        for i, lacc in enumerate(self.local.accessors):
            targ_id = targ.skip_modifiers(targ_id)
            if lacc.name is not None:
                found = self._member(lacc, targ_id)
                if isinstance(found, Mismatch):
                    return found
                targ_id = found
                continue
            if i > 0:
                t = targ.type(targ_id)
                if t.kind != Kind.ARRAY:
                    return Mismatch(f"{targ.type_name(targ_id)} is not an array, cannot index "
                                    f"it with [{lacc.index}]")
                flex = is_flex_array(targ, self.accessors[-1], t.nelems)  # type: ignore[union-attr]
                if not flex and lacc.index >= t.nelems:  # type: ignore[union-attr]
                    return Mismatch(f"index {lacc.index} is past the end of "
                                    f"{targ.type_name(targ_id)}")
                targ_id = targ.skip_modifiers(t.type)  # type: ignore[union-attr]
            self._push_raw(lacc.index)
            self.accessors.append(Accessor(targ_id, lacc.index))
            self.bit_offset += lacc.index * sizeof(targ, targ_id) * 8
        return AccessSpec(targ, root_id, self.local.kind, tuple(self.accessors), tuple(self.raw),
                          self.bit_offset)

    def _member(self, lacc: Accessor, targ_id: int) -> _U[int, Mismatch]:
        """Find the member named like ``lacc`` in composite ``targ_id`` (searching
        anonymous members too); on success record the step and return the member's type."""
        targ = self.targ
        holder = targ.type(targ.skip_modifiers(targ_id))
        if holder.kind not in (Kind.STRUCT, Kind.UNION):
            return Mismatch(f"{targ.type_name(targ_id)} is not a struct or union, cannot have "
                            f"field '{lacc.name}'")
        res = self._search(lacc, targ.skip_modifiers(targ_id))
        if res is None:
            return Mismatch(f"field '{lacc.name}' not found in {targ.type_name(targ_id)} "
                            f"[{targ.skip_modifiers(targ_id)}]")
        return res

    def _search(self, lacc: Accessor, comp_id: int) -> _U[int, Mismatch, None]:
        """Depth-first search of ``comp_id``'s members; ``None`` when the name is absent."""
        targ = self.targ
        comp = targ.type(comp_id)
        local = self.local.btf
        local_member = local.type(lacc.type_id).members[lacc.index]  # type: ignore[union-attr]
        for i, m in enumerate(comp.members):  # type: ignore[union-attr]
            self._push_raw(i)
            self.bit_offset += m.offset
            if not m.name:
                inner = targ.skip_modifiers(m.type)
                if targ.kind_of(inner) in (Kind.STRUCT, Kind.UNION):
                    found = self._search(lacc, inner)
                    if found is not None:
                        return found
            elif m.name == lacc.name:
                if not fields_compatible(local, local_member.type, targ, m.type):
                    return Mismatch(
                        f"field '{m.name}' of {targ.type_name(comp_id)} [{comp_id}] has type "
                        f"{targ.type_name(m.type)}, incompatible with the local "
                        f"{local.type_name(local_member.type)}")
                self.accessors.append(Accessor(comp_id, i, m.name))
                return m.type
            self.bit_offset -= m.offset
            self.raw.pop()
        return None

