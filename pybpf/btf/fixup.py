"""Object BTF fix-ups before it goes to the kernel (pure), done on the raw bytes.

clang leaves DATASEC sizes and variable offsets at zero and marks extern
variables and functions with extern linkage, all of which the kernel refuses.
As libbpf does:

* DATASECs of global data get their size from the ELF section and each
  variable's offset from its symbol, variables sorted by offset;
* ``.kconfig``: every variable gets its place in the ``.kconfig`` map (see
  :func:`kconfig_layout`) and global linkage;
* ``.ksyms``: each extern becomes a 4-byte global ``int`` variable at offset
  ``4 * i`` (the kernel never sees a ksym's real type); an extern function
  (kfunc) gets global linkage, names for its unnamed parameters, and a
  ``dummy_ksym`` int variable stands for it in the DATASEC;
* any other extern linkage becomes global.

The blob is patched in a copy of its bytes (no decode and re-encode of the
whole BTF), so type ids and string offsets stay what clang wrote: func/line
info and CO-RE records remain valid.  Only ``dummy_ksym`` is appended, after
the last type, when an object calls kfuncs.
"""

from __future__ import annotations

import struct
from array import array
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import attrs

from ..errors import ParseError
from .cache import TypeIndex
from .parse import Spec
from .types import Datasec, FuncProto, Int, Kind, Linkage, Var

__all__ = ["fixup_object_btf", "kconfig_layout", "KconfigVar", "KCONFIG_SEC", "KSYMS_SEC",
           "DUMMY_KSYM"]

KCONFIG_SEC = ".kconfig"
KSYMS_SEC = ".ksyms"
DUMMY_KSYM = "dummy_ksym"
_U32_MAX = 0xFFFFFFFF


@attrs.frozen
class KconfigVar:
    """Where a ``.kconfig`` extern lives in the ``.kconfig`` map, and its declared type."""
    name: str
    btf_id: int        # the VAR
    type_id: int       # its declared type
    offset: int
    size: int
    align: int


def kconfig_layout(spec: Spec) -> Tuple[Dict[str, KconfigVar], int]:
    """The ``.kconfig`` map layout: {name: KconfigVar} and the map's value size.

    libbpf's order: by alignment (largest first), then size (smallest first),
    then name; each variable at the next offset its alignment allows.
    """
    out: Dict[str, KconfigVar] = {}
    items = []
    for ds_id in spec.find(KCONFIG_SEC, Kind.DATASEC):
        ds = spec.type(ds_id)
        assert isinstance(ds, Datasec)
        for vi in ds.vars:
            var = spec.type(vi.type)
            if not isinstance(var, Var):
                raise ParseError(f"{KCONFIG_SEC}: {spec.type_name(vi.type)} is not a variable "
                                 "(extern functions cannot be __kconfig)", file=spec.file or "<bytes>",
                                 section=".BTF")
            size = spec.sizeof(var.type)
            if size <= 0:
                raise ParseError(f"{KCONFIG_SEC}: extern {var.name!r} has no size",
                                 file=spec.file or "<bytes>", section=".BTF")
            items.append((-spec.alignof(var.type), size, var.name, vi.type, var.type))
    off = 0
    for neg_align, size, name, btf_id, type_id in sorted(items):
        align = -neg_align
        off = (off + align - 1) // align * align
        out[name] = KconfigVar(name, btf_id, type_id, off, size, align)
        off += size
    return out, off


class _Patcher:
    """Writes fields of type records in a bytearray copy of a spec's blob."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.raw = bytearray(spec.raw)
        self.bo = spec.byteorder
        self.u32 = struct.Struct(self.bo + "I")

    def fail(self, msg: str) -> ParseError:
        return ParseError(msg, file=self.spec.file or "<bytes>", section=".BTF")

    def put(self, pos: int, value: int) -> None:
        self.u32.pack_into(self.raw, pos, value)

    def set_var_linkage(self, var_id: int, linkage: int) -> None:
        self.put(self.spec.record_pos(var_id) + 12, linkage)

    def set_var_type(self, var_id: int, type_id: int) -> None:
        self.put(self.spec.record_pos(var_id) + 8, type_id)

    def set_func_linkage(self, func_id: int, linkage: int) -> None:
        pos = self.spec.record_pos(func_id) + 4
        info = self.u32.unpack_from(self.raw, pos)[0]
        self.put(pos, (info & ~0xFFFF) | linkage)

    def set_param_name(self, proto_id: int, index: int, name_off: int) -> None:
        self.put(self.spec.record_pos(proto_id) + 12 + 8 * index, name_off)

    def set_datasec(self, ds_id: int, size: int, vars_: List[Tuple[int, int, int]]) -> None:
        if size > _U32_MAX:
            raise self.fail(f"DATASEC {self.spec.type(ds_id).name!r}: size {size:#x} does not fit "
                            "BTF's 32 bits")
        pos = self.spec.record_pos(ds_id)
        self.put(pos + 8, size)
        for i, (type_id, offset, vsize) in enumerate(vars_):
            if offset > _U32_MAX:
                raise self.fail(f"DATASEC {self.spec.type(ds_id).name!r}: variable "
                                f"{self.spec.type(type_id).name!r} offset {offset:#x} does not fit "
                                "BTF's 32 bits")
            self.put(pos + 12 + 12 * i, type_id)
            self.put(pos + 16 + 12 * i, offset)
            self.put(pos + 20 + 12 * i, vsize)


def fixup_object_btf(spec: Spec, section_sizes: Mapping[str, int],
                     var_offsets: Mapping[Tuple[str, str], int],
                     hidden_funcs: Iterable[str] = ()) -> Spec:
    """Return a fixed copy of object BTF ``spec`` (see the module docstring).

    ``section_sizes`` maps ELF section names to sizes; ``var_offsets`` maps
    (section, variable) to the variable's symbol value.  ``hidden_funcs`` are
    global functions with hidden/internal ELF visibility (``__hidden``, as in
    libbpf's usdt.bpf.h): as libbpf does, their BTF linkage becomes static, so the
    verifier checks them in their caller's context instead of as global functions.
    Returns ``spec`` itself when nothing needs fixing.
    """
    p = _Patcher(spec)
    changed = False
    hidden = set(hidden_funcs)
    if hidden:
        for tid in spec.ids_of_kind(Kind.FUNC):
            t = spec.type(tid)
            if t.name in hidden and t.linkage == Linkage.GLOBAL:  # type: ignore[union-attr]
                p.set_func_linkage(tid, Linkage.STATIC)
                changed = True
    datasecs: Dict[str, int] = {}
    for tid in spec.ids_of_kind(Kind.DATASEC):
        datasecs.setdefault(spec.type(tid).name, tid)
    externs = [tid for tid in spec.ids_of_kind(Kind.VAR) + spec.ids_of_kind(Kind.FUNC)
               if spec.type(tid).linkage == Linkage.EXTERN]  # type: ignore[union-attr]
    for name, ds_id in datasecs.items():
        if name == KCONFIG_SEC:
            changed |= _fix_kconfig(p, ds_id)
        elif name == KSYMS_SEC:
            continue    # below: it may append a type
        else:
            changed |= _fix_data(p, ds_id, section_sizes, var_offsets)
    handled: set = set()
    dummy: Optional[Tuple[int, bytes]] = None
    if KSYMS_SEC in datasecs:
        dummy = _fix_ksyms(p, datasecs[KSYMS_SEC], handled)
        changed = True
    for tid in externs:       # externs outside .kconfig/.ksyms (libbpf would refuse them)
        if tid in handled:
            continue
        if spec.kind_of(tid) == Kind.VAR:
            p.set_var_linkage(tid, Linkage.GLOBAL)
        else:
            p.set_func_linkage(tid, Linkage.GLOBAL)
        changed = True
    if not changed:
        return spec
    # Same records at the same places, same names (plus dummy_ksym at the end): reuse the index.
    if dummy is None:
        return Spec.parse(bytes(p.raw), file=spec.file, index=spec.index)
    offsets = array("I", spec.index_offsets)
    offsets.append((spec.types_range[1] - spec.types_range[0]) // 4)
    return Spec.parse(_append_type(spec, p.raw, *dummy), file=spec.file, index=TypeIndex(offsets))


def _fix_data(p: _Patcher, ds_id: int, sizes: Mapping[str, int],
              offsets: Mapping[Tuple[str, str], int]) -> bool:
    spec = p.spec
    ds = spec.type(ds_id)
    assert isinstance(ds, Datasec)
    vars_ = []
    for vi in ds.vars:
        vname = spec.type(vi.type).name
        vars_.append((vi.type, offsets.get((ds.name, vname), vi.offset), vi.size))
    vars_.sort(key=lambda v: v[1])
    size = sizes.get(ds.name, ds.size)
    if not size and vars_:
        size = max(o + s for _, o, s in vars_)
    if size == ds.size and vars_ == [(v.type, v.offset, v.size) for v in ds.vars]:
        return False
    p.set_datasec(ds_id, size, vars_)
    return True


def _fix_kconfig(p: _Patcher, ds_id: int) -> bool:
    spec = p.spec
    layout, size = kconfig_layout(spec)
    ds = spec.type(ds_id)
    assert isinstance(ds, Datasec)
    vars_ = []
    for vi in ds.vars:
        kv = layout[spec.type(vi.type).name]
        vars_.append((vi.type, kv.offset, vi.size))
        p.set_var_linkage(vi.type, Linkage.GLOBAL)
    vars_.sort(key=lambda v: v[1])
    p.set_datasec(ds_id, size, vars_)
    return True


def _fix_ksyms(p: _Patcher, ds_id: int, handled: set) -> Optional[Tuple[int, bytes]]:
    """Rewrite .ksyms; returns (int type id, name) of ``dummy_ksym`` to append, if any."""
    spec = p.spec
    ds = spec.type(ds_id)
    assert isinstance(ds, Datasec)
    int_id = _find_int32(spec)
    has_func = any(spec.kind_of(vi.type) == Kind.FUNC for vi in ds.vars)
    dummy_id = len(spec)                         # appended right after the last type
    dummy_name_off = _string_offset(spec, DUMMY_KSYM) if has_func else 0
    vars_ = []
    for i, vi in enumerate(ds.vars):
        handled.add(vi.type)
        if spec.kind_of(vi.type) == Kind.FUNC:
            func = spec.type(vi.type)
            proto = spec.type(func.type)  # type: ignore[union-attr]
            if isinstance(proto, FuncProto):
                for j, prm in enumerate(proto.params):
                    if prm.type and not prm.name:
                        p.set_param_name(func.type, j, dummy_name_off)  # type: ignore[union-attr]
            p.set_func_linkage(vi.type, Linkage.GLOBAL)
            vars_.append((dummy_id, 4 * i, 4))
        else:
            p.set_var_linkage(vi.type, Linkage.GLOBAL)
            p.set_var_type(vi.type, int_id)
            vars_.append((vi.type, 4 * i, 4))
    p.set_datasec(ds_id, 4 * len(vars_), vars_)
    return (int_id, DUMMY_KSYM.encode()) if has_func else None


def _find_int32(spec: Spec) -> int:
    """The first 32-bit INT (libbpf's choice for the fake ksym variables), 0 if none."""
    for tid in spec.ids_of_kind(Kind.INT):
        t = spec.type(tid)
        assert isinstance(t, Int)
        if t.bits == 32:
            return tid
    return 0


def _string_offset(spec: Spec, s: str) -> int:
    """The offset ``s`` has (or will have once appended) in the spec's string section."""
    strings = spec.strings_raw
    pos = strings.find(b"\0" + s.encode() + b"\0")
    return pos + 1 if pos >= 0 else len(strings)


def _append_type(spec: Spec, raw: bytearray, int_id: int, name: bytes) -> bytes:
    """``raw`` with a global VAR ``name`` of type ``int_id`` after the last type."""
    bo = spec.byteorder
    strings = spec.strings_raw
    pos = strings.find(b"\0" + name + b"\0")
    if pos >= 0:
        name_off, new_strings = pos + 1, strings
    else:
        name_off, new_strings = len(strings), strings + name + b"\0"
    record = struct.pack(bo + "IIII", name_off, int(Kind.VAR) << 24, int_id, int(Linkage.GLOBAL))
    types = bytes(raw[spec.types_range[0]:spec.types_range[1]]) + record
    header = struct.pack(bo + "HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(new_strings))
    return header + types + new_strings
