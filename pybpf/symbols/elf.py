"""Function symbols, loadable segments and the build id of an ELF file.

A deliberately small reader (``struct`` over an ``mmap`` of the file, both byte
orders, ELF32 and ELF64) for symbolising addresses: it reads the section and
program headers, the ``.symtab`` and ``.dynsym`` function symbols and the GNU
build-id note, and nothing else -- fast enough to open libc on the hot path of
a profiler.  Malformed files raise :class:`~pybpf.ParseError`.

Addresses inside a running process become ELF virtual addresses in two steps
(:meth:`ElfSymbols.vaddr_of_offset`): the process address minus the start of
its mapping plus the mapping's file offset gives a file offset; the ``PT_LOAD``
segment holding that offset turns it into a virtual address.  This is right for
PIE executables and shared libraries (any load bias) and for fixed-address
executables alike.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from typing import Dict, List, Optional, Tuple, Union

import attrs

from ..errors import ParseError

__all__ = ["ElfSymbols", "Segment", "read_build_id"]

_SHT_SYMTAB, _SHT_NOTE, _SHT_DYNSYM = 2, 7, 11
_PT_LOAD, _PT_NOTE = 1, 4
_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_NT_GNU_BUILD_ID = 3
ET_EXEC, ET_DYN = 2, 3


@attrs.frozen
class Segment:
    """A ``PT_LOAD`` program header: file bytes ``offset .. offset+filesz`` load at ``vaddr``."""
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int


class _Layout:
    def __init__(self, cls: int, bo: str):
        b64 = cls == 2
        self.ehdr = struct.Struct(bo + ("16sHHIQQQIHHHHHH" if b64 else "16sHHIIIIIHHHHHH"))
        self.phdr = struct.Struct(bo + ("IIQQQQQQ" if b64 else "IIIIIIII"))
        self.shdr = struct.Struct(bo + ("IIQQQQIIQQ" if b64 else "IIIIIIIIII"))
        self.sym = struct.Struct(bo + ("IBBHQQ" if b64 else "IIIBBH"))
        self.note = struct.Struct(bo + "III")
        self.b64 = b64


class ElfSymbols:
    """The function symbols of one ELF file, sorted for address lookups.

    ``lookup(vaddr)`` answers ``(name, offset)``; ``build_id`` is the GNU build id (bytes)
    or ``None``; ``segments`` the ``PT_LOAD`` headers; ``pie`` is true for ``ET_DYN``.
    """

    def __init__(self, path: str, data: Union[bytes, mmap.mmap, memoryview], *,
                 symbols: bool = True):
        self.path = path
        self._want_symbols = symbols
        self._data = memoryview(data)
        self.build_id: Optional[bytes] = None
        self.segments: List[Segment] = []
        self.type = 0
        self._addrs: List[int] = []
        self._sizes: List[int] = []
        self._names: List[str] = []
        try:
            self._parse()
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as e:
            raise ParseError(f"malformed ELF: {e}", file=path) from None
        finally:
            self._data.release()

    @classmethod
    def from_path(cls, path: Union[str, os.PathLike], *, symbols: bool = True) -> "ElfSymbols":
        """Read ``path`` (mapped, not copied); ``symbols=False`` reads only the headers and
        the build id."""
        p = os.fspath(path)
        try:
            with open(p, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    raise ParseError("empty file", file=p)
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise ParseError(f"cannot read: {e.strerror}", file=p) from None
        try:
            return cls(p, mm, symbols=symbols)
        finally:
            mm.close()

    @property
    def pie(self) -> bool:
        return self.type == ET_DYN

    def __len__(self) -> int:
        return len(self._addrs)

    # -- parsing ----------------------------------------------------------------------------
    def _parse(self) -> None:
        d = self._data
        if bytes(d[:4]) != b"\x7fELF":
            raise ParseError("not an ELF file", file=self.path)
        cls, data = d[4], d[5]
        if cls not in (1, 2) or data not in (1, 2):
            raise ParseError(f"unknown ELF class {cls} / data encoding {data}", file=self.path)
        L = _Layout(cls, "<" if data == 1 else ">")
        (_, self.type, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum,
         shstrndx) = L.ehdr.unpack_from(d, 0)
        for i in range(phnum):
            f = L.phdr.unpack_from(d, phoff + i * phentsize)
            if L.b64:
                ptype, pflags, off, vaddr, _, filesz, memsz, _ = f
            else:
                ptype, off, vaddr, _, filesz, memsz, pflags, _ = f
            if ptype == _PT_LOAD:
                self.segments.append(Segment(off, vaddr, filesz, memsz, pflags))
            elif ptype == _PT_NOTE and self.build_id is None:
                self.build_id = self._build_id(L, off, filesz)
        sections = []
        for i in range(shnum if shoff else 0):
            f = L.shdr.unpack_from(d, shoff + i * shentsize)
            # (type, offset, size, link, entsize)
            sections.append((f[1], f[4], f[5], f[6], f[9]))
        if self.build_id is None:
            for stype, off, size, _, _ in sections:
                if stype == _SHT_NOTE:
                    self.build_id = self._build_id(L, off, size)
                    if self.build_id is not None:
                        break
        syms: Dict[int, Tuple[int, str]] = {}
        for want in (_SHT_SYMTAB, _SHT_DYNSYM) if self._want_symbols else ():     # .symtab names win over .dynsym's
            for stype, off, size, link, entsize in sections:
                if stype == want and entsize and link < len(sections):
                    self._symbols(L, off, size, entsize, sections[link][1:3], syms)
        for addr in sorted(syms):
            size, name = syms[addr]
            self._addrs.append(addr)
            self._sizes.append(size)
            self._names.append(name)

    def _build_id(self, L: _Layout, off: int, size: int) -> Optional[bytes]:
        d = self._data
        pos, end = off, off + size
        while pos + 12 <= end:
            namesz, descsz, ntype = L.note.unpack_from(d, pos)
            name_at = pos + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            if ntype == _NT_GNU_BUILD_ID and bytes(d[name_at:name_at + namesz]) == b"GNU\0":
                return bytes(d[desc_at:desc_at + descsz])
            pos = desc_at + ((descsz + 3) & ~3)
        return None

    def _symbols(self, L: _Layout, off: int, size: int, entsize: int, strtab: Tuple[int, int],
                 out: Dict[int, Tuple[int, str]]) -> None:
        d = self._data
        str_off, str_size = strtab
        strings = bytes(d[str_off:str_off + str_size])
        n = size // entsize
        sym = L.sym
        rows = sym.iter_unpack(d[off:off + n * entsize]) if entsize == sym.size else \
            (sym.unpack_from(d, off + i * entsize) for i in range(n))
        for f in rows:
            if L.b64:
                name_off, info, _, shndx, value, sz = f
            else:
                name_off, value, sz, info, _, shndx = f
            if info & 0xF not in (_STT_FUNC, _STT_GNU_IFUNC) or not value or not shndx:
                continue
            if value in out:
                continue
            end = strings.find(b"\0", name_off)
            name = strings[name_off:end if end >= 0 else None].decode("utf-8", "replace")
            if name:
                out[value] = (sz, name)

    # -- lookups ----------------------------------------------------------------------------
    def lookup(self, vaddr: int) -> Optional[Tuple[str, int]]:
        """``(symbol, offset)`` of the function holding ``vaddr``, or ``None``."""
        i = bisect.bisect_right(self._addrs, vaddr) - 1
        if i < 0:
            return None
        start, size = self._addrs[i], self._sizes[i]
        if size and vaddr >= start + size:
            return None
        if not size and i + 1 < len(self._addrs) and vaddr >= self._addrs[i + 1]:
            return None
        return self._names[i], vaddr - start

    def address(self, name: str) -> Optional[int]:
        """The virtual address of function ``name`` (first match), or ``None``."""
        try:
            return self._addrs[self._names.index(name)]
        except ValueError:
            return None

    def vaddr_of_offset(self, file_offset: int) -> Optional[int]:
        """The virtual address that file offset ``file_offset`` loads at, or ``None``."""
        for s in self.segments:
            if s.offset <= file_offset < s.offset + s.filesz:
                return file_offset - s.offset + s.vaddr
        return None

    def __repr__(self) -> str:
        bid = self.build_id.hex() if self.build_id else "none"
        return f"<pybpf.symbols.ElfSymbols {self.path}: {len(self)} functions, build id {bid}>"


def read_build_id(path: Union[str, os.PathLike]) -> Optional[bytes]:
    """The GNU build id of the ELF file at ``path`` (``None`` when it has none)."""
    return ElfSymbols.from_path(path, symbols=False).build_id
