"""Map definitions: BTF-defined maps in ``.maps`` and legacy ``struct bpf_map_def`` in ``maps``."""

from __future__ import annotations

import struct
from typing import Dict, Optional, Tuple

from ..btf import Kind, Spec
from ..btf.types import Composite, Datasec
from ..errors import ParseError
from ..spec.map import MapKind, MapSpec, Pinning
from .elffile import ElfObject, Section

__all__ = ["parse_btf_maps", "parse_legacy_maps"]

# enum bpf_map_type values needed to interpret definitions (stable UAPI numbers).
_PROG_ARRAY = 3
_ARRAY_OF_MAPS = 12
_HASH_OF_MAPS = 13
_R_BPF_64_ABS64 = 2

_INT_ATTRS = ("type", "max_entries", "map_flags", "numa_node", "map_extra", "pinning",
              "key_size", "value_size")


def _fail(elf: ElfObject, msg: str) -> ParseError:
    return ParseError(msg, file=elf.file, section=".maps")


def _ptr_array_value(btf: Spec, tid: int, what: str, elf: ElfObject) -> int:
    """``__uint(name, N)`` is encoded as ``int (*name)[N]``: return N."""
    t = btf.type(btf.skip_modifiers(tid))
    if t.kind != Kind.PTR:
        raise _fail(elf, f"map attribute {what} is not declared with __uint()")
    a = btf.type(btf.skip_modifiers(t.type))  # type: ignore[union-attr]
    if a.kind != Kind.ARRAY:
        raise _fail(elf, f"map attribute {what} is not declared with __uint()")
    return a.nelems  # type: ignore[union-attr]


def _map_def(btf: Spec, name: str, tid: int, elf: ElfObject, inner: bool = False) -> Tuple[MapSpec, Optional[int], int]:
    """Parse one map definition struct.  Returns (spec, values member type id, values bit offset)."""
    st = btf.type(btf.skip_modifiers(tid))
    if not isinstance(st, Composite) or st.kind != Kind.STRUCT:
        raise _fail(elf, f"map {name!r} is not defined by a struct")
    ms = MapSpec(name=name, type=0, key_size=0, value_size=0, max_entries=0, kind=MapKind.BTF,
                 section=".maps", btf=btf)
    values_tid: Optional[int] = None
    values_off = 0
    seen = {}
    for m in st.members:
        if m.name in _INT_ATTRS:
            v = _ptr_array_value(btf, m.type, m.name, elf)
            seen[m.name] = v
        elif m.name == "key":
            kt = btf.type(btf.skip_modifiers(m.type))
            if kt.kind != Kind.PTR:
                raise _fail(elf, f"map {name!r}: key must be declared with __type()")
            ms.key_type_id = kt.type  # type: ignore[union-attr]
            ms.key_size = btf.sizeof(kt.type) if kt.type else 0  # type: ignore[union-attr]
        elif m.name == "value":
            vt = btf.type(btf.skip_modifiers(m.type))
            if vt.kind != Kind.PTR:
                raise _fail(elf, f"map {name!r}: value must be declared with __type()")
            ms.value_type_id = vt.type  # type: ignore[union-attr]
            ms.value_size = btf.sizeof(vt.type) if vt.type else 0  # type: ignore[union-attr]
        elif m.name == "values":
            values_tid = m.type
            values_off = m.offset
        else:
            raise _fail(elf, f"map {name!r}: unknown attribute {m.name!r}")
    ms.type = seen.get("type", 0)
    ms.max_entries = seen.get("max_entries", 0)
    ms.flags = seen.get("map_flags", 0)
    ms.numa_node = seen.get("numa_node", 0)
    ms.map_extra = seen.get("map_extra", 0)
    pin = seen.get("pinning", 0)
    if pin not in (0, 1):
        raise _fail(elf, f"map {name!r}: unsupported pinning {pin}")
    ms.pinning = Pinning(pin)
    for attr, field in (("key_size", "key_size"), ("value_size", "value_size")):
        if attr in seen:
            if getattr(ms, field) and getattr(ms, field) != seen[attr]:
                raise _fail(elf, f"map {name!r}: {attr} {seen[attr]} contradicts the size of its type")
            setattr(ms, field, seen[attr])
    if values_tid is not None:
        arr = btf.type(btf.skip_modifiers(values_tid))
        if arr.kind != Kind.ARRAY:
            raise _fail(elf, f"map {name!r}: values must be an array")
        elem = btf.type(btf.skip_modifiers(arr.type))  # type: ignore[union-attr]
        if elem.kind != Kind.PTR:
            raise _fail(elf, f"map {name!r}: values must be an array of pointers")
        target = btf.skip_modifiers(elem.type)  # type: ignore[union-attr]
        tk = btf.kind_of(target)
        if ms.type in (_ARRAY_OF_MAPS, _HASH_OF_MAPS):
            if tk != Kind.STRUCT:
                raise _fail(elf, f"map {name!r}: inner map definition must be a struct")
            if inner:
                raise _fail(elf, f"map {name!r}: nested map-in-map definitions are not supported")
            ms.inner_map, _, _ = _map_def(btf, name + ".inner", target, elf, inner=True)
            ms.value_size = 4
            if not ms.key_size:
                ms.key_size = 4
        elif ms.type == _PROG_ARRAY:
            if tk != Kind.FUNC_PROTO:
                raise _fail(elf, f"map {name!r}: prog array values must be program pointers")
            ms.value_size = 4
            if not ms.key_size:
                ms.key_size = 4
        else:
            raise _fail(elf, f"map {name!r}: 'values' is only valid for prog arrays and map-in-map")
    return ms, values_tid, values_off


def parse_btf_maps(elf: ElfObject, btf: Spec, sec: Section) -> Dict[str, MapSpec]:
    """Maps declared in the ``.maps`` section (the DATASEC of the same name)."""
    ds_ids = btf.find(".maps", Kind.DATASEC)
    if not ds_ids:
        raise _fail(elf, ".maps section has no BTF DATASEC: was the object built with -g?")
    ds = btf.type(ds_ids[0])
    assert isinstance(ds, Datasec)
    by_offset: Dict[int, Tuple[MapSpec, Optional[int], int]] = {}
    out: Dict[str, MapSpec] = {}
    # Symbol values give the real offsets (clang may leave DATASEC offsets at 0).
    sym_off = {s.name: s.value for s in elf.symbols if s.shndx == sec.index and s.type in (0, 1)}
    for vi in ds.vars:
        var = btf.type(vi.type)
        if var.kind != Kind.VAR:
            raise _fail(elf, f"DATASEC .maps entry [{vi.type}] is not a VAR")
        name = var.name
        if name in out:
            raise _fail(elf, f"map {name!r} is defined twice")
        ms, vtid, voff = _map_def(btf, name, var.type, elf)  # type: ignore[union-attr]
        off = sym_off.get(name, vi.offset)
        out[name] = ms
        by_offset[off] = (ms, vtid, voff)
    # Initial contents of prog arrays and map-in-map: relocations in .rel.maps.
    for r in elf.relocs.get(sec.index, []):
        owner = None
        for off, (ms, vtid, voff) in by_offset.items():
            if vtid is not None and off + voff // 8 <= r.offset < off + voff // 8 + 8 * 1_000_000:
                if owner is None or off > owner[0]:
                    owner = (off, ms, voff)
        if owner is None:
            raise _fail(elf, f"relocation at {r.offset:#x} in .maps does not fall in a 'values' array")
        off, ms, voff = owner
        idx, rem = divmod(r.offset - off - voff // 8, 8)
        if rem:
            raise _fail(elf, f"misaligned relocation in map {ms.name!r} values")
        if ms.max_entries and idx >= ms.max_entries:
            raise _fail(elf, f"map {ms.name!r}: initial value at index {idx} exceeds max_entries")
        sym = elf.symbols[r.sym]
        ms.contents.append((idx, sym.name))
    return out


def parse_legacy_maps(elf: ElfObject, sec: Section) -> Dict[str, MapSpec]:
    """Maps declared as ``struct bpf_map_def`` in the ``maps`` section (libbpf < 1.0 style)."""
    syms = sorted((s for s in elf.symbols if s.shndx == sec.index and s.type in (0, 1) and s.name),
                  key=lambda s: s.value)
    if not syms:
        if sec.size:
            raise ParseError("legacy maps section has no map symbols", file=elf.file, section="maps")
        return {}
    if sec.size % len(syms):
        raise ParseError(f"legacy maps section size {sec.size} is not a multiple of {len(syms)} maps",
                         file=elf.file, section="maps")
    def_size = sec.size // len(syms)
    if def_size < 20:
        raise ParseError(f"legacy map definitions of {def_size} bytes are too small (need 20)",
                         file=elf.file, section="maps")
    out: Dict[str, MapSpec] = {}
    bo = elf.byteorder
    for s in syms:
        if s.value + 20 > len(sec.data):
            raise ParseError(f"map {s.name!r} definition lies outside the section", file=elf.file,
                             section="maps")
        mtype, ks, vs, me, fl = struct.unpack_from(bo + "5I", sec.data, s.value)
        extra = sec.data[s.value + 20:s.value + def_size]
        if s.value + def_size <= len(sec.data) and any(extra[8:] if len(extra) > 8 else b""):
            raise ParseError(f"map {s.name!r}: unsupported fields in legacy map definition",
                             file=elf.file, section="maps")
        numa = struct.unpack_from(bo + "I", extra, 4)[0] if len(extra) >= 8 else 0
        out[s.name] = MapSpec(name=s.name, type=mtype, key_size=ks, value_size=vs, max_entries=me,
                              flags=fl, numa_node=numa, kind=MapKind.LEGACY, section="maps")
    return out
