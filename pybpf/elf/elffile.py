"""A plain, validated view of a BPF ELF object.

This is the only module that imports pyelftools.  It reads the section table
and symbols into simple records up front, inside one place that converts every
pyelftools/struct failure into :class:`pybpf.errors.ParseError`; the rest of
the reader works on these records and checks its own bounds.
"""

from __future__ import annotations

import io
import struct
from typing import Dict, List, Optional, Tuple

import attrs
from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_SH_TYPE_BASE

from ..errors import ParseError

__all__ = ["Section", "Symbol", "Reloc", "ElfObject", "read_elf",
           "SHT_PROGBITS", "SHT_NOBITS", "SHF_EXECINSTR", "SHN_UNDEF", "SHN_ABS", "SHN_COMMON",
           "STT_NOTYPE", "STT_OBJECT", "STT_FUNC", "STT_SECTION", "STB_LOCAL", "STB_GLOBAL", "STB_WEAK"]

EM_BPF = 247
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_REL = 9
SHT_NOBITS = 8
SHF_WRITE = 1
SHF_ALLOC = 2
SHF_EXECINSTR = 4
SHN_UNDEF = 0
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
_MAX_SECTIONS = 65535
_MAX_SYMBOLS = 1 << 20


@attrs.frozen
class Section:
    index: int
    name: str
    type: int
    flags: int
    size: int
    data: bytes = attrs.field(repr=False)
    info: int = 0
    link: int = 0

    @property
    def executable(self) -> bool:
        return self.type == SHT_PROGBITS and bool(self.flags & SHF_EXECINSTR)


@attrs.frozen
class Symbol:
    index: int
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int
    visibility: int = 0


@attrs.frozen
class Reloc:
    offset: int
    sym: int
    type: int


@attrs.frozen
class ElfObject:
    file: str
    byteorder: str
    sections: Tuple[Section, ...]
    symbols: Tuple[Symbol, ...]
    relocs: Dict[int, List[Reloc]]       # target section index -> relocations

    def section(self, name: str) -> Optional[Section]:
        for s in self.sections:
            if s.name == name:
                return s
        return None


_ELF_ERRORS = (ELFError, ConstructError, struct.error, ValueError, IndexError, KeyError, TypeError,
               AttributeError, UnicodeDecodeError, OverflowError, AssertionError, RecursionError,
               EOFError)


def read_elf(data: bytes, file: str) -> ElfObject:
    """Read a 64-bit BPF ELF object from ``data`` into plain records."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise ParseError("not an ELF file", file=file)
    if data[4] != 2:
        raise ParseError("not a 64-bit ELF file (BPF objects are ELF64)", file=file)
    if data[5] not in (1, 2):
        raise ParseError(f"bad ELF data encoding {data[5]}", file=file)
    bo = "<" if data[5] == 1 else ">"
    (machine,) = struct.unpack_from(bo + "H", data, 18)
    if machine != EM_BPF:
        raise ParseError(f"ELF machine is {machine}, not BPF ({EM_BPF}); was it built with -target bpf?",
                         file=file)
    try:
        elf = ELFFile(io.BytesIO(data))
        nsec = elf.num_sections()
        if nsec > _MAX_SECTIONS:
            raise ParseError(f"{nsec} sections is more than an ELF can hold", file=file)
        sections: List[Section] = []
        symtab = None
        for i in range(nsec):
            s = elf.get_section(i)
            h = s.header
            stype = _sh_type(h.sh_type)
            if stype == SHT_NOBITS:
                body = b""
            else:
                if h.sh_offset + h.sh_size > len(data):
                    raise ParseError(f"section {s.name!r} [{h.sh_offset:#x}, +{h.sh_size:#x}) lies "
                                     f"outside the file ({len(data)} bytes)", file=file)
                body = data[h.sh_offset:h.sh_offset + h.sh_size]
            sections.append(Section(i, s.name, stype, h.sh_flags, h.sh_size, body,
                                    h.sh_info, h.sh_link))
            if stype == SHT_SYMTAB:
                symtab = s
        symbols: List[Symbol] = []
        if symtab is not None:
            n = symtab.num_symbols()
            if n > _MAX_SYMBOLS:
                raise ParseError(f"{n} symbols is implausibly many", file=file, section=".symtab")
            for idx in range(n):
                sym = symtab.get_symbol(idx)
                e = sym.entry
                info = e.st_info
                symbols.append(Symbol(idx, sym.name, e.st_value, e.st_size,
                                      _ENUM_TYPE.get(info.type, info.type if isinstance(info.type, int) else -1),
                                      _ENUM_BIND.get(info.bind, info.bind if isinstance(info.bind, int) else -1),
                                      _shndx(e.st_shndx), _visibility(e.st_other)))
    except ParseError:
        raise
    except _ELF_ERRORS as e:
        raise ParseError(f"malformed ELF: {type(e).__name__}: {e}", file=file) from None

    relocs: Dict[int, List[Reloc]] = {}
    rel = struct.Struct(bo + "QQ")
    for s in sections:
        if s.type != SHT_REL:
            continue
        if s.size % 16:
            raise ParseError(f"relocation section size {s.size} is not a multiple of 16", file=file,
                             section=s.name)
        if s.info >= len(sections):
            raise ParseError(f"relocation section targets section {s.info}, which does not exist",
                             file=file, section=s.name)
        target = sections[s.info]
        if not target.executable and target.name not in _RELOCATED_DATA:
            continue  # DWARF/.BTF/.BTF.ext relocations: nothing the loader applies
        lst = relocs.setdefault(s.info, [])
        for off, info in rel.iter_unpack(s.data):
            sym = info >> 32
            if sym >= len(symbols):
                raise ParseError(f"relocation at {off:#x} refers to symbol {sym}, past the symbol table",
                                 file=file, section=s.name)
            lst.append(Reloc(off, sym, info & 0xFFFFFFFF))
    return ElfObject(file, bo, tuple(sections), tuple(symbols), relocs)


# Non-code sections whose relocations the loader reads (prog array / map-in-map values).
_RELOCATED_DATA = frozenset({".maps", ".struct_ops", ".struct_ops.link"})

_ENUM_TYPE = {"STT_NOTYPE": 0, "STT_OBJECT": 1, "STT_FUNC": 2, "STT_SECTION": 3, "STT_FILE": 4,
              "STT_COMMON": 5, "STT_TLS": 6}
_ENUM_BIND = {"STB_LOCAL": 0, "STB_GLOBAL": 1, "STB_WEAK": 2}
_ENUM_SHN = {"SHN_UNDEF": SHN_UNDEF, "SHN_ABS": SHN_ABS, "SHN_COMMON": SHN_COMMON}


_STV = {"STV_DEFAULT": 0, "STV_INTERNAL": 1, "STV_HIDDEN": 2, "STV_PROTECTED": 3}


def _visibility(other: object) -> int:
    v = getattr(other, "visibility", 0)
    return v & 3 if isinstance(v, int) else _STV.get(str(v), 0)


def _shndx(v: object) -> int:
    if isinstance(v, int):
        return v
    return _ENUM_SHN.get(str(v), 0xFFFF)


def _sh_type(v: object) -> int:
    if isinstance(v, int):
        return v
    r = ENUM_SH_TYPE_BASE.get(str(v))
    return r if isinstance(r, int) else -1


def read_btf_section(data: bytes, file: str) -> bytes:
    """The ``.BTF`` section of any ELF file (a vmlinux, or a BPF object used as target BTF)."""
    try:
        elf = ELFFile(io.BytesIO(data))
        sec = elf.get_section_by_name(".BTF")
        if sec is None:
            raise ParseError("ELF file has no .BTF section", file=file)
        return sec.data()
    except ParseError:
        raise
    except _ELF_ERRORS as e:
        raise ParseError(f"malformed ELF: {type(e).__name__}: {e}", file=file) from None
