"""Where a function lives in a file: ELF symbols to file offsets, for uprobes and USDT.

A uprobe is placed at a *file offset* of an executable or shared library (the
kernel maps it to every process that maps the file), so attaching by function
name means: find the symbol in ``.symtab`` (or ``.dynsym`` for stripped
files), then translate its virtual address through the ``PT_LOAD`` program
header that maps it.  The same arithmetic holds for PIE and non-PIE
executables and for shared libraries, since it only uses link-time addresses.

Binaries are named by path, or -- like libbpf -- by a bare name: a library
(``libc.so.6``) is looked up in the mappings of ``/proc/PID/maps`` when a PID is
given, then in ``/etc/ld.so.cache``, ``LD_LIBRARY_PATH`` and the usual library
directories; a program (``bash``) in ``$PATH``.

This module reads ELF files with :mod:`struct` (only the headers and the few
sections it needs, never the whole file) and never calls the kernel.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple

import attrs

from ..errors import BPFError, ParseError

__all__ = [
    "ElfImage", "Segment", "Section", "Symbol", "Note", "FuncLocation", "Mapping",
    "func_offset", "resolve_binary", "proc_maps", "ld_so_cache",
]

ET_EXEC, ET_DYN = 2, 3
PT_LOAD = 1
PF_X = 1
SHT_SYMTAB, SHT_NOTE, SHT_DYNSYM = 2, 7, 11
SHT_GNU_VERDEF, SHT_GNU_VERSYM = 0x6FFFFFFD, 0x6FFFFFFF
STT_FUNC, STT_GNU_IFUNC = 2, 10
STB_GLOBAL, STB_WEAK = 1, 2
_SHN_XINDEX = 0xFFFF
_VERSYM_HIDDEN = 0x8000
_LIB_DIRS = ("/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib")


@attrs.frozen
class Segment:
    """A program header."""
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


@attrs.frozen
class Section:
    """A section header (``name`` resolved)."""
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@attrs.frozen
class Symbol:
    """A symbol of ``.symtab`` or ``.dynsym``.

    ``version`` is its symbol version (``GLIBC_2.2.5``) and ``default_version``
    whether that version is the one a plain reference binds to (``@@``).
    """
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int
    table: str
    version: str = ""
    default_version: bool = True


@attrs.frozen
class Note:
    """An ELF note (``desc`` is its payload)."""
    name: str
    type: int
    desc: bytes


@attrs.frozen
class FuncLocation:
    """A resolved function: its symbol name, link-time address, size and file offset."""
    name: str
    address: int
    size: int
    offset: int


class ElfImage:
    """The parts of an ELF executable or shared library that uprobes need.

    Opens the file and reads its header, program headers and section headers;
    section contents are read on demand.  Use as a context manager (or call
    :meth:`close`).  Every malformed input raises :class:`~pybpf.errors.ParseError`.
    """

    def __init__(self, path: str):
        self.path = path
        try:
            self._f: BinaryIO = open(path, "rb")
        except OSError as e:
            raise BPFError(f"cannot open {path}: {e.strerror or e}") from None
        try:
            self._size = os.fstat(self._f.fileno()).st_size
            self._read_headers()
        except BaseException:
            self._f.close()
            raise

    # -- structure ------------------------------------------------------------------------
    def _read(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > self._size:
            raise ParseError(f"{what} [{offset:#x}, +{size:#x}) lies outside the file "
                             f"({self._size} bytes)", file=self.path)
        self._f.seek(offset)
        data = self._f.read(size)
        if len(data) != size:
            raise ParseError(f"short read of {what}", file=self.path, offset=offset)
        return data

    def _read_headers(self) -> None:
        ident = self._read(0, 16, "ELF identification") if self._size >= 16 else b""
        if ident[:4] != b"\x7fELF":
            raise ParseError("not an ELF file", file=self.path)
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise ParseError(f"bad ELF class {ident[4]} or data encoding {ident[5]}", file=self.path)
        self.is_64 = ident[4] == 2
        self.byteorder = "<" if ident[5] == 1 else ">"
        bo, w = self.byteorder, ("Q" if self.is_64 else "I")
        hdr = struct.Struct(f"{bo}HHI{w}{w}{w}IHHHHHH")
        (self.type, self.machine, _ver, self.entry, phoff, shoff, _flags, _ehsize,
         phentsize, phnum, shentsize, shnum, shstrndx) = hdr.unpack(self._read(16, hdr.size, "ELF header"))
        if self.is_64:
            ph = struct.Struct(f"{bo}IIQQQQQQ")
            sh = struct.Struct(f"{bo}IIQQQQIIQQ")
        else:
            ph = struct.Struct(f"{bo}IIIIIIII")
            sh = struct.Struct(f"{bo}IIIIIIIIII")
        self.segments: List[Segment] = []
        if phoff and phnum:
            if phentsize < ph.size:
                raise ParseError(f"program header size {phentsize} < {ph.size}", file=self.path)
            raw = self._read(phoff, phentsize * phnum, "program headers")
            for i in range(phnum):
                f = ph.unpack_from(raw, i * phentsize)
                if self.is_64:   # type, flags, offset, vaddr, paddr, filesz, memsz, align
                    self.segments.append(Segment(f[0], f[1], f[2], f[3], f[5], f[6]))
                else:            # type, offset, vaddr, paddr, filesz, memsz, flags, align
                    self.segments.append(Segment(f[0], f[6], f[1], f[2], f[4], f[5]))
        self.sections: List[Section] = []
        if not shoff:
            return
        if shentsize < sh.size:
            raise ParseError(f"section header size {shentsize} < {sh.size}", file=self.path)
        first = sh.unpack(self._read(shoff, sh.size, "section header 0"))
        if shnum == 0:              # extended numbering: the count is in section 0's sh_size
            shnum = first[5]
        if shstrndx == _SHN_XINDEX:
            shstrndx = first[6]
        if shnum > 0x10000 or shnum * shentsize > self._size:
            raise ParseError(f"{shnum} section headers do not fit in the file", file=self.path)
        raw = self._read(shoff, shentsize * shnum, "section headers")
        heads = [sh.unpack_from(raw, i * shentsize) for i in range(shnum)]
        names = b""
        if 0 < shstrndx < shnum:
            s = heads[shstrndx]
            names = self._read(s[4], s[5], "section name table") if s[1] != 8 else b""
        for h in heads:    # name, type, flags, addr, offset, size, link, info, addralign, entsize
            self.sections.append(Section(_cstr(names, h[0]), h[1], h[2], h[3], h[4], h[5], h[6], h[9]))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "ElfImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_pie_or_lib(self) -> bool:
        """True for ``ET_DYN`` files (PIE executables, shared libraries): their addresses move."""
        return self.type == ET_DYN

    def section(self, name: str) -> Optional[Section]:
        """The first section called ``name``, or None."""
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def section_data(self, sec: Section) -> bytes:
        if sec.type == 8:  # SHT_NOBITS
            return b""
        return self._read(sec.offset, sec.size, f"section {sec.name}")

    # -- addresses ------------------------------------------------------------------------
    def segment_of(self, vaddr: int, executable: Optional[bool] = None) -> Optional[Segment]:
        """The ``PT_LOAD`` segment whose file image holds link-time address ``vaddr``."""
        for seg in self.segments:
            if seg.type != PT_LOAD or not seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                continue
            if executable is not None and bool(seg.flags & PF_X) != executable:
                continue
            return seg
        return None

    def addr_to_offset(self, vaddr: int) -> int:
        """The file offset of link-time address ``vaddr`` (what uprobes and ref_ctr_offset take)."""
        seg = self.segment_of(vaddr)
        if seg is None:
            raise BPFError(f"{self.path}: address {vaddr:#x} is not in any loadable segment")
        return vaddr - seg.vaddr + seg.offset

    # -- symbols --------------------------------------------------------------------------
    def symbols(self, table: str = ".symtab", name: Optional[str] = None) -> Iterator[Symbol]:
        """Symbols of ``table`` (``.symtab`` or ``.dynsym``), only those called ``name``
        (or ``name@VERSION``) if given.  Filtering by name scans the string table first,
        so looking one symbol up in a large table stays fast."""
        sec = self.section(table)
        if sec is None or sec.type not in (SHT_SYMTAB, SHT_DYNSYM):
            return
        if not 0 <= sec.link < len(self.sections):
            raise ParseError(f"symbol table {table} links to section {sec.link}", file=self.path)
        strtab = self.section_data(self.sections[sec.link])
        data = self.section_data(sec)
        ent = struct.Struct(f"{self.byteorder}IBBHQQ" if self.is_64 else f"{self.byteorder}IIIBBH")
        if data and len(data) % ent.size:
            raise ParseError(f"size {len(data)} is not a multiple of {ent.size}", file=self.path,
                             section=table)
        wanted = _name_offsets(strtab, name) if name is not None else None
        if wanted is not None and not wanted:
            return
        versions = self._versions(sec) if sec.type == SHT_DYNSYM else None
        for idx, f in enumerate(ent.iter_unpack(data)):
            if self.is_64:
                st_name, info, _other, shndx, value, size = f
            else:
                st_name, value, size, info, _other, shndx = f
            if wanted is not None and st_name not in wanted:
                continue
            sym_name = _cstr(strtab, st_name)
            version, default = "", True
            if "@" in sym_name:      # .symtab spelling: name@VER (hidden) or name@@VER
                sym_name, _, version = sym_name.partition("@")
                default = version.startswith("@")
                version = version.lstrip("@")
            elif versions is not None and idx < len(versions[0]):
                vs = versions[0][idx]
                version = versions[1].get(vs & 0x7FFF, "")
                default = not vs & _VERSYM_HIDDEN
            yield Symbol(sym_name, value, size, info & 0xF, info >> 4, shndx, table, version, default)

    def _versions(self, dynsym: Section) -> Optional[Tuple[Tuple[int, ...], Dict[int, str]]]:
        """(versym index per .dynsym entry, version index -> name) from .gnu.version(_d)."""
        versym = next((s for s in self.sections if s.type == SHT_GNU_VERSYM), None)
        if versym is None:
            return None
        raw = self.section_data(versym)
        idx = struct.unpack(f"{self.byteorder}{len(raw) // 2}H", raw[:len(raw) // 2 * 2])
        names: Dict[int, str] = {}
        verdef = next((s for s in self.sections if s.type == SHT_GNU_VERDEF), None)
        if verdef is not None and 0 <= verdef.link < len(self.sections):
            strtab = self.section_data(self.sections[verdef.link])
            data = self.section_data(verdef)
            vd = struct.Struct(f"{self.byteorder}HHHHIII")
            off = 0
            for _ in range(0x10000):
                if off + vd.size > len(data):
                    break
                _v, _flags, ndx, cnt, _hash, aux, nxt = vd.unpack_from(data, off)
                if cnt and off + aux + 8 <= len(data):
                    (vda_name,) = struct.unpack_from(f"{self.byteorder}I", data, off + aux)
                    names[ndx] = _cstr(strtab, vda_name)
                if not nxt:
                    break
                off += nxt
        return idx, names

    def find_function(self, name: str) -> FuncLocation:
        """Resolve function ``name`` (optionally ``name@VERSION``/``name@@VERSION``).

        ``.symtab`` and ``.dynsym`` are both searched; only defined ``FUNC`` and
        ``GNU_IFUNC`` symbols count.  Aliases at one address are one answer.  When
        a name has several addresses (symbol versions), the default version wins,
        then a global over a weak binding; anything still ambiguous is an error.
        """
        base, _, version = name.partition("@")
        want_default = version.startswith("@")
        version = version.lstrip("@")
        cands = [s for table in (".symtab", ".dynsym") for s in self.symbols(table, base)
                 if s.type in (STT_FUNC, STT_GNU_IFUNC) and s.shndx != 0 and s.name == base
                 and (not version or (s.version == version and (s.default_version or not want_default)))]
        if not cands:
            have = ".symtab and .dynsym" if self.section(".symtab") else ".dynsym (the file is stripped)"
            raise BPFError(f"{self.path}: no function {name!r} in {have}")
        by_addr: Dict[int, Symbol] = {}
        for s in cands:
            by_addr.setdefault(s.value, s)
        if len(by_addr) > 1:
            for narrow in (lambda s: s.default_version, lambda s: s.bind == STB_GLOBAL):
                kept = {a: s for a, s in by_addr.items() if narrow(s)}
                if kept:
                    by_addr = kept
                if len(by_addr) == 1:
                    break
        if len(by_addr) > 1:
            where = ", ".join(f"{s.name}@{s.version or '?'} at {a:#x}" for a, s in sorted(by_addr.items()))
            raise BPFError(f"{self.path}: function {name!r} is ambiguous ({where}); "
                           "name a version (func@VERSION) or give an offset")
        addr, sym = next(iter(by_addr.items()))
        seg = self.segment_of(addr, executable=True) or self.segment_of(addr)
        if seg is None:
            raise BPFError(f"{self.path}: function {name!r} at {addr:#x} is not in any loadable segment")
        return FuncLocation(name=base, address=addr, size=sym.size, offset=addr - seg.vaddr + seg.offset)

    # -- notes ----------------------------------------------------------------------------
    def notes(self, section: str) -> Iterator[Note]:
        """The notes of a ``SHT_NOTE`` section (e.g. ``.note.stapsdt``)."""
        sec = self.section(section)
        if sec is None:
            return
        if sec.type != SHT_NOTE:
            raise ParseError(f"section {section} is not a note section", file=self.path)
        data = self.section_data(sec)
        hdr = struct.Struct(f"{self.byteorder}III")
        off = 0
        while off + hdr.size <= len(data):
            namesz, descsz, ntype = hdr.unpack_from(data, off)
            off += hdr.size
            name_end = off + namesz
            desc_off = off + _align4(namesz)
            desc_end = desc_off + descsz
            if desc_end > len(data):
                raise ParseError(f"note at {off - hdr.size:#x} runs past the section end",
                                 file=self.path, section=section)
            yield Note(data[off:name_end].rstrip(b"\0").decode("utf-8", "replace"), ntype,
                       bytes(data[desc_off:desc_end]))
            off = desc_off + _align4(descsz)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _cstr(table: bytes, off: int) -> str:
    if not 0 <= off < len(table):
        return ""
    end = table.find(b"\0", off)
    return table[off:end if end >= 0 else len(table)].decode("utf-8", "replace")


def _name_offsets(strtab: bytes, name: str) -> set:
    """Every string-table offset at which ``name`` (or ``name@...``) starts.  String tables
    share suffixes, so a name may also start in the middle of a longer string."""
    offs = set()
    for needle in (name.encode() + b"\0", name.encode() + b"@"):
        i = strtab.find(needle)
        while i >= 0:
            offs.add(i)
            i = strtab.find(needle, i + 1)
    return offs


def func_offset(path: str, func: str) -> int:
    """The file offset of function ``func`` in the ELF file at ``path``."""
    with ElfImage(path) as elf:
        return elf.find_function(func).offset


# -- finding binaries ---------------------------------------------------------------------

@attrs.frozen
class Mapping:
    """One line of ``/proc/PID/maps``."""
    start: int
    end: int
    perms: str
    offset: int
    path: str


def proc_maps(pid: int) -> List[Mapping]:
    """The file mappings of process ``pid``."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise BPFError(f"cannot read /proc/{pid}/maps: {e.strerror or e}") from None
    out = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        lo, _, hi = parts[0].partition("-")
        out.append(Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), parts[5]))
    return out


def ld_so_cache(path: str = "/etc/ld.so.cache") -> Dict[str, List[str]]:
    """Library name -> paths, from glibc's ``ld.so.cache`` (the ``glibc-ld.so.cache1.1``
    format; empty if the file is absent or in the pre-2.32-only old format)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    magic = b"glibc-ld.so.cache1.1"
    base = data.find(magic)
    if base < 0 or base + 48 > len(data):
        return {}
    bo = "<" if sys.byteorder == "little" else ">"
    (nlibs,) = struct.unpack_from(f"{bo}I", data, base + len(magic))
    out: Dict[str, List[str]] = {}
    entry = struct.Struct(f"{bo}iIIIQ")
    first = base + 48
    for i in range(min(nlibs, (len(data) - first) // entry.size)):
        _flags, key, value, _osv, _hwcap = entry.unpack_from(data, first + i * entry.size)
        name, lib = _cstr(data, base + key), _cstr(data, base + value)
        if name and lib:
            out.setdefault(name, []).append(lib)
    return out


def _elf_kind(path: str) -> Optional[Tuple[int, int, int]]:
    """(class, data encoding, machine) of an ELF file, None if it is not one."""
    try:
        with open(path, "rb") as f:
            h = f.read(20)
    except OSError:
        return None
    if len(h) < 20 or h[:4] != b"\x7fELF":
        return None
    return h[4], h[5], struct.unpack_from("<H" if h[5] == 1 else ">H", h, 18)[0]


def _same_process_mnt_ns(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    except OSError:
        return True


def resolve_binary(name: str, pid: int = -1) -> str:
    """The path of the executable or library ``name`` as libbpf resolves uprobe targets.

    A name with a ``/`` is a path.  With ``pid >= 0``, a library mapped by that
    process wins (seen through ``/proc/PID/root`` if it lives in another mount
    namespace); otherwise libraries (``.so`` in the name) come from
    ``ld.so.cache``, ``LD_LIBRARY_PATH`` and the standard directories, and
    programs from ``$PATH``.  Only files of this machine's ELF class and
    architecture are accepted.
    """
    if "/" in name:
        if not os.path.exists(name):
            raise BPFError(f"uprobe target {name} does not exist")
        return name
    if pid >= 0:
        for m in proc_maps(pid):
            base = os.path.basename(m.path)
            if base == name or base.startswith(name + ".") or base.startswith(name + "-"):
                if _same_process_mnt_ns(pid):
                    return m.path
                return f"/proc/{pid}/root{m.path}"
    me = _elf_kind(sys.executable) or _elf_kind("/proc/self/exe")
    cands: List[str] = []
    if ".so" in name:
        cands += ld_so_cache().get(name, [])
        dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
        multiarch = f"{os.uname().machine}-linux-gnu"
        dirs += [f"/lib/{multiarch}", f"/usr/lib/{multiarch}", *_LIB_DIRS]
        cands += [os.path.join(d, name) for d in dirs]
    else:
        cands += [os.path.join(d, name) for d in os.environ.get("PATH", "").split(":") if d]
    for c in cands:
        if os.path.isfile(c) and (me is None or _elf_kind(c) == me):
            return c
    where = "in ld.so.cache or the library path" if ".so" in name else "in $PATH"
    raise BPFError(f"uprobe target {name!r} not found {where}; give its path")
