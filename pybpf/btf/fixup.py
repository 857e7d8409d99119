"""Object BTF fix-ups before it goes to the kernel (pure).

clang leaves DATASEC sizes and variable offsets at zero and marks extern
variables/functions with extern linkage, which the kernel refuses.  As libbpf
does, sizes and offsets are filled in from the ELF section table and symbols,
and extern linkage is turned into global.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import attrs

from ..errors import ParseError
from .marshal import marshal
from .parse import Spec
from .types import AnyType, Datasec, Func, Kind, Linkage, Var

__all__ = ["fixup_object_btf"]

_U32_MAX = 0xFFFFFFFF


def _too_big(spec: Spec, datasec: str, what: str) -> ParseError:
    # ELF symbol values and section sizes are 64-bit, BTF's fields 32-bit.
    return ParseError(f"DATASEC {datasec!r}: {what} does not fit BTF's 32 bits",
                      file=spec.file or "<bytes>", section=".BTF")


def fixup_object_btf(spec: Spec, section_sizes: Mapping[str, int],
                     var_offsets: Mapping[Tuple[str, str], int]) -> Spec:
    """Return a copy of ``spec`` with DATASECs sized and laid out, and extern linkage removed.

    ``section_sizes`` maps ELF section names to sizes; ``var_offsets`` maps
    (section, variable) to the variable's symbol value.  Type ids and string
    offsets are preserved, so func/line info and CO-RE records stay valid.
    """
    types: List[AnyType] = []
    changed = False
    for tid, t in spec.types():
        k = t.kind
        if k == Kind.DATASEC:
            assert isinstance(t, Datasec)
            vars_ = []
            for vi in t.vars:
                vname = spec.type(vi.type).name
                off = var_offsets.get((t.name, vname), vi.offset)
                if off > _U32_MAX:
                    raise _too_big(spec, t.name, f"variable {vname!r} offset {off:#x}")
                vars_.append(attrs.evolve(vi, offset=off))
            vars_.sort(key=lambda v: v.offset)
            size = section_sizes.get(t.name, t.size)
            if not size and vars_:
                size = max(v.offset + v.size for v in vars_)
            if size > _U32_MAX:
                raise _too_big(spec, t.name, f"size {size:#x}")
            nt = attrs.evolve(t, size=size, vars=tuple(vars_))
            changed |= nt != t
            t = nt
        elif k == Kind.VAR and t.linkage == Linkage.EXTERN:  # type: ignore[union-attr]
            t = attrs.evolve(t, linkage=Linkage.GLOBAL)
            changed = True
        elif k == Kind.FUNC and t.linkage == Linkage.EXTERN:  # type: ignore[union-attr]
            t = attrs.evolve(t, linkage=Linkage.GLOBAL)
            changed = True
        types.append(t)
    if not changed:
        return spec
    raw = marshal(types, spec.byteorder, spec.strings_raw)  # type: ignore[attr-defined]
    return Spec.parse(raw, file=spec.file)
