"""Turn stack addresses into function names: kernel, user (per process) and build-id frames.

* kernel addresses: ``/proc/kallsyms`` (:class:`~pybpf.symbols.KernelSymbols`)
* user addresses of process PID: its mapping (``/proc/PID/maps``), the mapped ELF file
  read through ``/proc/PID/map_files`` (so deleted files and other mount namespaces
  work), file offset -> ELF virtual address through the ``PT_LOAD`` segments (any PIE
  load bias), then ``.symtab`` / ``.dynsym`` -- or, when the file is stripped, the
  symbols of ``/usr/lib/debug/.build-id/xx/yyyy.debug``
* build-id frames (``BPF_F_STACK_BUILD_ID`` stack maps): the ELF object with that build id
  (among the given process's mappings, files seen before, or the debug directory) and the
  file offset the kernel recorded

Every frame after the first of a stack is a return address, which may point just past
the end of its caller (a call to a ``noreturn`` function): those are looked up at
``address - 1``, as perf and gdb do; frames keep the address they were given.

ELF files are cached by device, inode and modification time, process mappings per
pid (re-read once when an address falls outside every known mapping).
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import attrs

from ..errors import BPFError
from .elf import ElfSymbols
from .kallsyms import KernelSymbols
from .procmaps import Mapping, ProcessMaps

__all__ = ["Frame", "Symbolizer"]


@attrs.frozen
class Frame:
    """One symbolised stack frame.

    ``symbol`` is ``None`` when no symbol covers the address; ``module`` is the ELF path
    for user frames, ``"[kernel]"`` or ``"[<module>]"`` for kernel frames.
    """
    address: int
    symbol: Optional[str]
    offset: int = 0
    module: str = ""
    build_id: Optional[bytes] = None

    @property
    def label(self) -> str:
        """The name shown in folded stacks: the symbol, else ``[module+0xoffset]``."""
        if self.symbol:
            return self.symbol
        if self.module:
            return f"[{os.path.basename(self.module)}+{self.offset:#x}]"
        return f"[unknown {self.address:#x}]"

    def __str__(self) -> str:
        where = f" ({self.module})" if self.module else ""
        if self.symbol:
            return f"{self.symbol}+{self.offset:#x}{where}"
        return f"{self.address:#x}{where}"


class Symbolizer:
    """Symbolises kernel and user addresses, caching what it reads (see module doc)."""

    def __init__(self, *, kallsyms: str = "/proc/kallsyms", debug_dir: str = "/usr/lib/debug"):
        self._kallsyms_path = kallsyms
        self._kernel: Optional[KernelSymbols] = None
        self.debug_dir = debug_dir
        self._elfs: Dict[Tuple[int, int, int], Optional[ElfSymbols]] = {}
        self._maps: Dict[int, ProcessMaps] = {}
        self._by_build_id: Dict[bytes, ElfSymbols] = {}

    # -- kernel -------------------------------------------------------------------------------
    @property
    def kernel_symbols(self) -> KernelSymbols:
        if self._kernel is None:
            self._kernel = KernelSymbols.load(self._kallsyms_path)
        return self._kernel

    def kernel(self, addrs: Sequence[int]) -> List[Frame]:
        """Kernel stack addresses (innermost first) as frames."""
        ks = self.kernel_symbols
        out = []
        for i, a in enumerate(addrs):
            hit = ks.lookup(a - 1 if i else a)
            if hit is None:
                out.append(Frame(a, None, 0, "[kernel]"))
            else:
                name, off, mod = hit
                out.append(Frame(a, name, off + (1 if i else 0), f"[{mod}]" if mod else "[kernel]"))
        return out

    # -- user ---------------------------------------------------------------------------------
    def user(self, pid: int, addrs: Sequence[int]) -> List[Frame]:
        """User stack addresses (innermost first) of process ``pid`` as frames."""
        out = []
        for i, a in enumerate(addrs):
            look = a - 1 if i else a
            m = self._mapping(pid, look)
            if m is None:
                out.append(Frame(a, None, 0, ""))
                continue
            if not m.is_file:
                out.append(Frame(a, None, a - m.start, m.path))
                continue
            elf = self._elf_of_mapping(pid, m)
            if elf is None:
                out.append(Frame(a, None, m.file_offset(a), m.path))
                continue
            out.append(self._frame(elf, a, m.file_offset(look), m.path, a - look))
        return out

    def forget(self, pid: int) -> None:
        """Drop the cached mappings of ``pid`` (after it exec'd or exited)."""
        self._maps.pop(pid, None)

    def _mapping(self, pid: int, addr: int) -> Optional[Mapping]:
        pm = self._maps.get(pid)
        if pm is not None:
            m = pm.find(addr)
            if m is not None:
                return m
        try:
            pm = self._maps[pid] = ProcessMaps(pid)
        except BPFError:
            return None      # the process is gone
        return pm.find(addr)

    def _elf_of_mapping(self, pid: int, m: Mapping) -> Optional[ElfSymbols]:
        for path in (f"/proc/{pid}/map_files/{m.start:x}-{m.end:x}",
                     f"/proc/{pid}/root{m.path}", m.path):
            try:
                st = os.stat(path)
            except OSError:
                continue
            return self.elf(path, (st.st_dev, st.st_ino, st.st_mtime_ns))
        return None

    def elf(self, path: str, key: Optional[Tuple[int, int, int]] = None) -> Optional[ElfSymbols]:
        """The (cached) symbols of the ELF file at ``path``; ``None`` if it is not ELF.
        Stripped files get the symbols of their debug file, when installed."""
        if key is None:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino, st.st_mtime_ns)
        if key in self._elfs:
            return self._elfs[key]
        try:
            elf: Optional[ElfSymbols] = ElfSymbols.from_path(path)
        except BPFError:
            elf = None
        if elf is not None and not len(elf) and elf.build_id:
            debug = self._debug_file(elf.build_id)
            if debug is not None:
                debug.segments = elf.segments or debug.segments
                elf = debug
        self._elfs[key] = elf
        if elf is not None and elf.build_id:
            self._by_build_id.setdefault(elf.build_id, elf)
        return elf

    def _debug_file(self, build_id: bytes) -> Optional[ElfSymbols]:
        h = build_id.hex()
        path = os.path.join(self.debug_dir, ".build-id", h[:2], h[2:] + ".debug")
        try:
            return ElfSymbols.from_path(path)
        except BPFError:
            return None

    @staticmethod
    def _frame(elf: ElfSymbols, addr: int, file_offset: int, module: str, adjust: int) -> Frame:
        vaddr = elf.vaddr_of_offset(file_offset)
        hit = elf.lookup(vaddr) if vaddr is not None else None
        if hit is None:
            return Frame(addr, None, file_offset + adjust, module, elf.build_id)
        name, off = hit
        return Frame(addr, name, off + adjust, module, elf.build_id)

    # -- build ids ----------------------------------------------------------------------------
    def build_id(self, frames: Iterable[Tuple[int, bytes, int]], pid: Optional[int] = None) -> List[Frame]:
        """Build-id stack entries ``(status, build_id, offset_or_ip)`` (innermost first) as
        frames: status 1 (valid) is resolved by build id and file offset, status 2 (the
        kernel could only record the address) through ``pid``'s mappings when given."""
        out = []
        for i, (status, bid, off) in enumerate(frames):
            adjust = 1 if i else 0
            if status == 1:
                elf = self.find_build_id(bid, pid)
                if elf is None:
                    out.append(Frame(off, None, off, f"[build id {bid.hex()}]", bid))
                else:
                    out.append(self._frame(elf, off, off - adjust, elf.path, adjust))
            elif status == 2 and pid is not None:
                out.extend(self.user(pid, [off]))
            else:
                out.append(Frame(off, None, 0, ""))
        return out

    def find_build_id(self, build_id: bytes, pid: Optional[int] = None) -> Optional[ElfSymbols]:
        """The ELF file with ``build_id``: one seen before, one mapped by ``pid``, or the
        debug directory's."""
        elf = self._by_build_id.get(build_id)
        if elf is not None:
            return elf
        if pid is not None:
            pm = self._maps.get(pid)
            try:
                mappings = pm.mappings if pm is not None else ProcessMaps(pid).mappings
            except BPFError:
                mappings = []
            for m in mappings:
                if m.is_file:
                    self._elf_of_mapping(pid, m)
                    if build_id in self._by_build_id:
                        return self._by_build_id[build_id]
        debug = self._debug_file(build_id)
        if debug is not None:
            self._by_build_id[build_id] = debug
        return debug
