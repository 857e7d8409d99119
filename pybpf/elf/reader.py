"""ELF -> CollectionSpec: programs (linked with their subprograms), maps, global data.

:func:`load_collection_spec` is pure: the same bytes give the same spec on
any machine; nothing here touches the kernel.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Dict, List, Optional, Set, Tuple, Union

from ..btf import Kind, Spec
from ..btf.ext import ExtInfo, parse_ext
from ..btf.fixup import KCONFIG_SEC, KSYMS_SEC, fixup_object_btf, kconfig_layout
from ..btf.types import Datasec, Var
from ..errors import NotSupportedError, ParseError
from ..spec import (CollectionSpec, CORERef, ExternRef, FuncInfoRec, LineInfoRec, MapKind, MapRef,
                    MapSpec, ProgramSpec, VariableSpec)
from .elffile import (SHN_ABS, SHN_COMMON, SHN_UNDEF, SHT_NOBITS, SHT_PROGBITS, STB_GLOBAL,
                      STB_LOCAL, STB_WEAK, STT_FUNC, STT_NOTYPE, STT_SECTION, ElfObject, Section,
                      read_elf)
from .maps import parse_btf_maps, parse_legacy_maps
from .sections import parse_section

__all__ = ["load_collection_spec"]

_R_BPF_64_64 = 1
_R_BPF_64_32 = 10
_LD_IMM64 = 0x18
_CALL = 0x85
_PSEUDO_CALL = 1
_PSEUDO_FUNC = 4
_PSEUDO_MAP_FD = 1
_MAP_TYPE_ARRAY = 2
_F_RDONLY_PROG = 1 << 7
_F_SLEEPABLE = 1 << 4
_F_XDP_HAS_FRAGS = 1 << 5
_DATA_RE = re.compile(r"^\.(data|rodata|bss)(\..+)?$")


def load_collection_spec(source: Union[str, os.PathLike, bytes, bytearray, memoryview], *,
                         name: Optional[str] = None) -> CollectionSpec:
    """Parse a clang-built BPF ELF object into a :class:`CollectionSpec`.

    ``source`` is a path or the object's bytes.  Pure: no kernel access.
    Raises :class:`pybpf.ParseError` (naming the file and the problem) on
    malformed input and :class:`pybpf.LinkError` on unresolvable references.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        file = name or "<bytes>"
    else:
        file = os.fspath(source)
        try:
            with open(file, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ParseError(f"cannot read: {e.strerror}", file=file) from None
    return _Reader(read_elf(data, file), file, name).read()


class _Func:
    __slots__ = ("name", "sec", "start", "end", "is_prog", "global_")

    def __init__(self, name: str, sec: Section, start: int, end: int, is_prog: bool, global_: bool):
        self.name, self.sec, self.start, self.end = name, sec, start, end
        self.is_prog, self.global_ = is_prog, global_


class _Extern:
    """What the reader knows of one extern symbol (libbpf's extern_desc, minus resolution)."""
    __slots__ = ("section", "type_id", "weak", "offset")

    def __init__(self, section: str, type_id: int, weak: bool, offset: int = 0):
        self.section, self.type_id, self.weak, self.offset = section, type_id, weak, offset


class _Reader:
    def __init__(self, elf: ElfObject, file: str, name: Optional[str]):
        self.elf = elf
        self.file = file
        self.bo = elf.byteorder
        base = os.path.basename(file) if name is None else name
        self.obj_name = _sanitize(base.split(".", 1)[0] if base else "obj") or "obj"
        self.btf: Optional[Spec] = None
        self.ext: Optional[ExtInfo] = None
        self.maps: Dict[str, MapSpec] = {}
        self.map_by_shndx: Dict[int, str] = {}      # data section index -> map name
        self.map_sections: Set[int] = set()         # .maps / maps section indices
        self.funcs: Dict[int, List[_Func]] = {}     # section index -> functions sorted by start
        self.externs: Dict[str, _Extern] = {}       # extern symbol name -> what it is
        self._imm = struct.Struct(self.bo + "i")
        self._off = struct.Struct(self.bo + "h")

    def fail(self, msg: str, section: Optional[str] = None, offset: Optional[int] = None) -> ParseError:
        return ParseError(msg, file=self.file, section=section, offset=offset)

    # -- top level --------------------------------------------------------------------------
    def read(self) -> CollectionSpec:
        elf = self.elf
        if not any(s.name == ".symtab" or s.type == 2 for s in elf.sections):
            raise self.fail("object has no symbol table")
        btf_sec = elf.section(".BTF")
        if btf_sec is not None:
            clang_btf = Spec.parse(btf_sec.data, file=self.file)
            self._collect_externs(clang_btf)
            self.btf = self._fixed_btf(clang_btf)
            ext_sec = elf.section(".BTF.ext")
            if ext_sec is not None:
                self.ext = parse_ext(ext_sec.data, self.btf, file=self.file)
        else:
            self._collect_externs(None)
        license = self._license()
        kver = self._version()
        self._read_maps()
        self._read_data_sections()
        self._kconfig_map()
        self._index_functions()
        programs: Dict[str, ProgramSpec] = {}
        for funcs in self.funcs.values():
            for fn in funcs:
                if fn.is_prog:
                    if fn.name in programs:
                        raise self.fail(f"program {fn.name!r} is defined twice", fn.sec.name)
                    programs[fn.name] = self._link(fn, license, kver)
        variables = self._variables()
        kernel_names = {n: m.name if m.kind not in (MapKind.DATA, MapKind.KCONFIG)
                        else self._internal_map_name(n) for n, m in self.maps.items()}
        return CollectionSpec(self.maps, programs, variables, self.btf, self.bo, license, kver,
                              self.file, self.obj_name, kernel_names)

    def _fixed_btf(self, btf: Spec) -> Spec:
        sizes = {s.name: s.size for s in self.elf.sections if s.name}
        offsets = {}
        for sym in self.elf.symbols:
            if sym.name and 0 < sym.shndx < len(self.elf.sections) and sym.type in (0, 1):
                offsets[(self.elf.sections[sym.shndx].name, sym.name)] = sym.value
        hidden = [sym.name for sym in self.elf.symbols
                  if sym.type == STT_FUNC and sym.bind != STB_LOCAL and sym.visibility in (1, 2)]
        return fixup_object_btf(btf, sizes, offsets, hidden)

    # -- externs ----------------------------------------------------------------------------
    def _collect_externs(self, btf: Optional[Spec]) -> None:
        """Extern symbols (undefined, global or weak, no type) and their BTF, as clang wrote it.

        This runs before the BTF fix-ups, which replace the types of ``.ksyms``
        variables: the declared type is what a typed ``__ksym`` is checked
        against.  An extern without BTF or outside ``.kconfig``/``.ksyms`` is
        recorded with no section; loading refuses it, naming it.
        """
        sections: Dict[str, str] = {}
        kconfig: Dict[str, int] = {}
        if btf is not None:
            for secname in (KCONFIG_SEC, KSYMS_SEC):
                for dsid in btf.find(secname, Kind.DATASEC):
                    for vi in btf.type(dsid).vars:  # type: ignore[union-attr]
                        sections[btf.type(vi.type).name] = secname
            if KCONFIG_SEC in sections.values():
                kconfig = {n: kv.offset for n, kv in kconfig_layout(btf)[0].items()}
        for sym in self.elf.symbols:
            if sym.shndx != SHN_UNDEF or sym.bind not in (STB_GLOBAL, STB_WEAK) or \
                    sym.type != STT_NOTYPE or not sym.name:
                continue
            section = sections.get(sym.name, "")
            type_id = 0
            if btf is not None and section:
                type_id = self._extern_type(btf, sym.name, section)
            self.externs[sym.name] = _Extern(section, type_id, sym.bind == STB_WEAK,
                                             kconfig.get(sym.name, 0))

    def _extern_type(self, btf: Spec, name: str, section: str) -> int:
        """libbpf's ``ksym.type_id``: a variable's declared type (modifiers and typedefs
        skipped; 0 for ``void``: a typeless ksym) or a function's FUNC_PROTO."""
        for tid in btf.find(name):
            t = btf.type(tid)
            if isinstance(t, Var):
                return btf.skip_modifiers(t.type) if t.type else 0
            if t.kind == Kind.FUNC:
                return t.type  # type: ignore[union-attr]
        raise self.fail(f"extern {name!r} is listed in {section} but has no VAR or FUNC in BTF", ".BTF")

    def _kconfig_map(self) -> None:
        """The internal ``.kconfig`` map (libbpf's): filled from the running kernel at load."""
        if self.btf is None or not any(e.section == KCONFIG_SEC for e in self.externs.values()):
            return
        ids = self.btf.find(KCONFIG_SEC, Kind.DATASEC)
        _layout, size = kconfig_layout(self.btf)
        if not ids or not size:
            return
        if KCONFIG_SEC in self.maps:
            raise self.fail(f"a map is named {KCONFIG_SEC!r}, the name of the Kconfig extern map")
        self.maps[KCONFIG_SEC] = MapSpec(
            name=KCONFIG_SEC, type=_MAP_TYPE_ARRAY, key_size=4, value_size=size, max_entries=1,
            flags=_F_RDONLY_PROG, value_type_id=ids[0], kind=MapKind.KCONFIG, section=KCONFIG_SEC,
            data=bytes(size), freeze=True, btf=self.btf)

    def _extern_ref(self, insn: int, name: str) -> ExternRef:
        ext = self.externs.get(name)
        if ext is None:     # undefined, but not an extern libbpf would accept (e.g. typed symbol)
            return ExternRef(insn, name, "")
        return ExternRef(insn, name, ext.section, ext.offset, type_id=ext.type_id, weak=ext.weak)

    def _license(self) -> str:
        sec = self.elf.section("license")
        if sec is None:
            return ""
        return sec.data.split(b"\0", 1)[0].decode("ascii", "replace")

    def _version(self) -> int:
        sec = self.elf.section("version")
        if sec is None:
            return 0
        if len(sec.data) != 4:
            raise self.fail(f"version section is {len(sec.data)} bytes, not 4", "version")
        return struct.unpack(self.bo + "I", sec.data)[0]

    # -- maps and data ----------------------------------------------------------------------
    def _read_maps(self) -> None:
        for sec in self.elf.sections:
            if sec.name == ".maps":
                if self.btf is None:
                    raise self.fail("BTF-defined maps need .BTF (compile with -g)", ".maps")
                self.maps.update(parse_btf_maps(self.elf, self.btf, sec))
                self.map_sections.add(sec.index)
            elif sec.name == "maps":
                for n, m in parse_legacy_maps(self.elf, sec).items():
                    if n in self.maps:
                        raise self.fail(f"map {n!r} is defined twice", "maps")
                    self.maps[n] = m
                self.map_sections.add(sec.index)

    def _read_data_sections(self) -> None:
        for sec in self.elf.sections:
            if not _DATA_RE.match(sec.name) or sec.type not in (SHT_PROGBITS, SHT_NOBITS):
                continue
            if sec.size == 0:
                continue
            if sec.size > 1 << 30:
                raise self.fail(f"data section of {sec.size} bytes is too large", sec.name)
            rodata = sec.name.startswith(".rodata")
            datasec_id = 0
            if self.btf is not None:
                ids = self.btf.find(sec.name, Kind.DATASEC)
                datasec_id = ids[0] if ids else 0
            ms = MapSpec(name=sec.name, type=_MAP_TYPE_ARRAY, key_size=4, value_size=sec.size,
                         max_entries=1, flags=_F_RDONLY_PROG if rodata else 0,
                         value_type_id=datasec_id, kind=MapKind.DATA, section=sec.name,
                         data=None if sec.type == SHT_NOBITS else sec.data, freeze=rodata, btf=self.btf)
            if ms.data is None:
                ms.data = bytes(sec.size)
            self.maps[sec.name] = ms
            self.map_by_shndx[sec.index] = sec.name

    def _internal_map_name(self, sec_name: str) -> str:
        # libbpf's rule: custom sections (.data.foo) keep their name; the standard ones get
        # the object name as a prefix so maps of different objects are told apart.
        if "." in sec_name[1:]:
            return _sanitize(sec_name)[:15]
        sfx = max(7, len(sec_name))
        pfx = min(15 - sfx, len(self.obj_name))
        return _sanitize(self.obj_name[:pfx] + sec_name)[:15]

    def _variables(self) -> Dict[str, VariableSpec]:
        out: Dict[str, VariableSpec] = {}
        btf = self.btf
        for shndx, mname in self.map_by_shndx.items():
            ms = self.maps[mname]
            found = False
            if btf is not None and ms.value_type_id:
                ds = btf.type(ms.value_type_id)
                assert isinstance(ds, Datasec)
                symoff = {s.name: s.value for s in self.elf.symbols if s.shndx == shndx}
                for vi in ds.vars:
                    var = btf.type(vi.type)
                    if var.kind != Kind.VAR:
                        continue
                    off = symoff.get(var.name, vi.offset)
                    size = btf.sizeof(var.type) if var.type else vi.size  # type: ignore[union-attr]
                    if off + size > ms.value_size:
                        raise self.fail(f"variable {var.name!r} lies outside its section", mname)
                    out[var.name] = VariableSpec(var.name, ms, off, size, var.type, btf)  # type: ignore[union-attr]
                    found = True
            if not found:
                for s in self.elf.symbols:
                    if s.shndx == shndx and s.type == 1 and s.name:
                        if s.value + s.size > ms.value_size:
                            raise self.fail(f"variable {s.name!r} lies outside its section", mname)
                        out[s.name] = VariableSpec(s.name, ms, s.value, s.size, 0, None)
        return out

    # -- programs ---------------------------------------------------------------------------
    def _index_functions(self) -> None:
        for sec in self.elf.sections:
            if not sec.executable or sec.size == 0:
                continue
            if sec.size % 8:
                raise self.fail(f"executable section size {sec.size} is not a multiple of 8", sec.name)
            is_text = sec.name == ".text"
            funcs: List[_Func] = []
            for s in self.elf.symbols:
                if s.shndx != sec.index or s.type != STT_FUNC:
                    continue
                if s.value % 8 or s.size % 8 or s.value + s.size > sec.size:
                    raise self.fail(f"function {s.name!r} [{s.value:#x}, +{s.size:#x}) is misaligned "
                                    f"or outside its section", sec.name)
                global_ = s.bind != STB_LOCAL
                funcs.append(_Func(s.name, sec, s.value // 8, (s.value + s.size) // 8,
                                   not is_text and global_, global_))
            if not funcs and not is_text:
                # Hand-written assembly without symbols: the whole section is one program.
                funcs.append(_Func(_sanitize(sec.name.replace("/", "_")), sec, 0, sec.size // 8, True, True))
            funcs.sort(key=lambda f: f.start)
            if any(funcs[i].end > funcs[i + 1].start for i in range(len(funcs) - 1)):
                raise self.fail("functions overlap", sec.name)
            if not is_text:
                try:
                    parse_section(sec.name)
                except ParseError as e:  # it names the section; add the file
                    raise self.fail(e.reason, sec.name) from None
            self.funcs[sec.index] = funcs

    def _func_at(self, shndx: int, idx: int, where: str) -> _Func:
        for fn in self.funcs.get(shndx, ()):
            if fn.start <= idx < fn.end:
                return fn
        raise self.fail(f"{where}: call target instruction {idx} is not inside a function",
                        self.elf.sections[shndx].name if shndx < len(self.elf.sections) else None)

    def _link(self, main: _Func, license: str, kver: int) -> ProgramSpec:
        info = parse_section(main.sec.name)
        supported, reason = info.supported, info.unsupported_reason
        try:
            prog_type = int(info.prog_type_enum())
            eat = info.attach_type_enum()
            eat = int(eat) if eat is not None else 0
        except NotSupportedError as e:
            # Newer than the kernel ABI pybpf knows: parse it, refuse it at load.
            prog_type, eat, supported, reason = 0, 0, False, str(e)
        flags = (_F_SLEEPABLE if info.sleepable else 0) | (_F_XDP_HAS_FRAGS if info.xdp_frags else 0)
        out = bytearray()
        placed: Dict[Tuple[int, int], int] = {}
        spec = ProgramSpec(name=main.name, section=main.sec.name, insns=out, prog_type=prog_type,
                           expected_attach_type=eat, attach_to=info.target,
                           attach_kind=info.attach_kind, sleepable=info.sleepable,
                           autoload=info.autoload, license=license, kern_version=kver,
                           flags=flags, byteorder=self.bo, supported=supported,
                           unsupported_reason=reason, btf=self.btf)
        if self.ext is not None:
            spec.func_info_rec_size = self.ext.func_info_rec_size
            spec.line_info_rec_size = self.ext.line_info_rec_size
        self._append(spec, main, placed, 0)
        spec.line_info.sort(key=lambda l: l.insn)
        return spec

    def _append(self, spec: ProgramSpec, fn: _Func, placed: Dict[Tuple[int, int], int], depth: int) -> None:
        if depth > 256:
            raise self.fail(f"program {spec.name!r}: subprogram calls nest too deeply", fn.sec.name)
        out = spec.insns
        base = len(out) // 8
        placed[(fn.sec.index, fn.start)] = base
        sec = fn.sec
        out += sec.data[fn.start * 8:fn.end * 8]
        self._ext_records(spec, fn, base)
        relocs = {}
        for rel in self.elf.relocs.get(sec.index, ()):
            if rel.offset % 8:
                raise self.fail(f"relocation at {rel.offset:#x} is not instruction aligned", sec.name)
            relocs[rel.offset // 8] = rel
        # Only ld_imm64 and call instructions need work: find them by their opcode byte
        # (C-speed searches over the opcodes) instead of visiting every instruction.
        ops = bytes(out[base * 8::8])
        n = fn.end - fn.start
        skip = -1                                      # the second slot of the last ld_imm64
        for j in sorted(_positions(ops, _LD_IMM64) + _positions(ops, _CALL)):
            if j == skip:
                continue
            i = fn.start + j
            new_idx = base + j
            p = new_idx * 8
            r = relocs.get(i)
            imm = self._imm.unpack_from(out, p + 4)[0]
            if ops[j] == _LD_IMM64:
                if j + 1 >= n:
                    raise self.fail(f"ld_imm64 at instruction {i} is truncated", sec.name)
                skip = j + 1
                if r is not None:
                    self._ldimm64_reloc(spec, fn, i, new_idx, imm, r, placed, depth)
                continue
            regs = out[p + 1]
            src = regs >> 4 if self.bo == "<" else regs & 0xF
            if src != _PSEUDO_CALL and (r is None or r.type != _R_BPF_64_32):
                continue                               # a helper call
            if r is not None:
                sym = self.elf.symbols[r.sym]
                if sym.shndx == SHN_UNDEF:
                    spec.extern_refs.append(self._extern_ref(new_idx, sym.name))
                    continue
                if sym.shndx not in self.funcs:
                    raise self.fail(f"program {spec.name!r}: call to {sym.name!r}, which is not code",
                                    sec.name)
                # clang: imm is relative to the symbol (-1 for a call to a function symbol).
                tshndx, tidx = sym.shndx, sym.value // 8 + imm + 1
            else:
                tshndx, tidx = sec.index, i + imm + 1
            self._patch_target(spec, fn, new_idx, tshndx, tidx, placed, depth)

    def _patch_target(self, spec: ProgramSpec, fn: _Func, new_idx: int, tshndx: int, tidx: int,
                      placed: Dict[Tuple[int, int], int], depth: int) -> None:
        target = self._func_at(tshndx, tidx, f"program {spec.name!r}")
        key = (target.sec.index, target.start)
        if key not in placed:
            self._append(spec, target, placed, depth + 1)
        dest = placed[key] + (tidx - target.start)
        self._imm.pack_into(spec.insns, new_idx * 8 + 4, dest - new_idx - 1)

    def _ldimm64_reloc(self, spec: ProgramSpec, fn: _Func, i: int, new_idx: int, imm: int, r, placed, depth: int) -> None:
        sec = fn.sec
        if r.type != _R_BPF_64_64:
            raise self.fail(f"unexpected relocation type {r.type} on ld_imm64 at instruction {i}", sec.name)
        sym = self.elf.symbols[r.sym]
        out = spec.insns
        p = new_idx * 8
        if sym.shndx == SHN_UNDEF:
            spec.extern_refs.append(self._extern_ref(new_idx, sym.name))
            return
        if sym.shndx in self.map_sections:
            mname = self._map_name_at(sym)
            spec.map_refs.append(MapRef(new_idx, mname, None))
            return
        if sym.shndx in self.map_by_shndx:
            mname = self.map_by_shndx[sym.shndx]
            off = imm + (sym.value if sym.type != STT_SECTION else 0)
            if not 0 <= off <= self.maps[mname].value_size:
                raise self.fail(f"program {spec.name!r}: reference to {sym.name or mname}+{imm} lies "
                                f"outside {mname}", sec.name)
            spec.map_refs.append(MapRef(new_idx, mname, off))
            return
        if sym.shndx in self.funcs:
            # Address of a function (callback for bpf_loop, bpf_for_each_map_elem, timers ...).
            tidx = (sym.value + imm) // 8 if sym.type == STT_SECTION else sym.value // 8 + imm // 8
            regs = out[p + 1]
            out[p + 1] = (regs & 0x0F) | (_PSEUDO_FUNC << 4) if self.bo == "<" else (regs & 0xF0) | _PSEUDO_FUNC
            self._patch_target(spec, fn, new_idx, sym.shndx, tidx, placed, depth)
            return
        if sym.shndx in (SHN_ABS, SHN_COMMON) or sym.shndx >= len(self.elf.sections):
            raise self.fail(f"program {spec.name!r}: unsupported reference to symbol {sym.name!r}", sec.name)
        target = self.elf.sections[sym.shndx].name
        raise self.fail(f"program {spec.name!r}: reference to {sym.name or target!r} in section "
                        f"{target!r}, which is neither a map nor global data", sec.name)

    def _map_name_at(self, sym) -> str:
        if sym.type != STT_SECTION and sym.name in self.maps:
            return sym.name
        for s in self.elf.symbols:
            if s.shndx == sym.shndx and s.value == sym.value and s.name in self.maps:
                return s.name
        raise self.fail(f"reference to symbol {sym.name!r} in a maps section that defines no map there")

    def _ext_records(self, spec: ProgramSpec, fn: _Func, base: int) -> None:
        if self.ext is None:
            return
        lo, hi = fn.start * 8, fn.end * 8
        name = fn.sec.name
        for fi in self.ext.func_info.get(name, ()):
            if lo <= fi.insn_off < hi:
                spec.func_info.append(FuncInfoRec(base + (fi.insn_off - lo) // 8, fi.type_id))
        for li in self.ext.line_info.get(name, ()):
            if lo <= li.insn_off < hi:
                spec.line_info.append(LineInfoRec(base + (li.insn_off - lo) // 8, li.file_name_off,
                                                  li.line_off, li.line, li.col, li.file_name, li.line_text))
        for cr in self.ext.core_relos.get(name, ()):
            if lo <= cr.insn_off < hi:
                spec.core_relos.append(CORERef(base + (cr.insn_off - lo) // 8, cr.type_id,
                                               cr.access_str, int(cr.kind)))


def _positions(data: bytes, byte: int) -> List[int]:
    """Indices of ``byte`` in ``data``."""
    out: List[int] = []
    needle = bytes([byte])
    pos = data.find(needle)
    while pos >= 0:
        out.append(pos)
        pos = data.find(needle, pos + 1)
    return out


def _sanitize(name: str) -> str:
    """Keep the characters the kernel accepts in object names."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)
