"""Kernel symbols from ``/proc/kallsyms``: address -> function name (and module).

Only text symbols (types ``t``/``T``/``w``/``W``) are kept, sorted by address;
a lookup answers the closest symbol at or below the address, as the kernel's
own ``%pS`` does.  Addresses read as zero when ``kptr_restrict`` hides them
from this process: :class:`KernelSymbols` then refuses to load, saying why.
"""

from __future__ import annotations

import bisect
from typing import List, Optional, Tuple

from ..errors import BPFError, NotSupportedError

__all__ = ["KernelSymbols"]

_TEXT = frozenset("tTwW")


class KernelSymbols:
    """Sorted kernel text symbols; :meth:`lookup` maps an address to ``(name, offset, module)``."""

    def __init__(self, entries: List[Tuple[int, str, str]]):
        entries.sort()
        self._addrs = [a for a, _, _ in entries]
        self._names = [n for _, n, _ in entries]
        self._mods = [m for _, _, m in entries]
        self._by_name: Optional[dict] = None

    @classmethod
    def load(cls, path: str = "/proc/kallsyms") -> "KernelSymbols":
        """Parse ``path`` (``/proc/kallsyms`` format: ``address type name [module]``)."""
        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError as e:
            raise BPFError(f"{path}: cannot read kernel symbols: {e.strerror}") from None
        entries: List[Tuple[int, str, str]] = []
        zero = True
        for line in text.split(b"\n"):
            parts = line.split()
            if len(parts) < 3 or parts[1].decode() not in _TEXT:
                continue
            addr = int(parts[0], 16)
            if addr:
                zero = False
            mod = parts[3].strip(b"[]").decode() if len(parts) > 3 else ""
            entries.append((addr, parts[2].decode("utf-8", "replace"), mod))
        if entries and zero:
            raise NotSupportedError("kernel symbolisation", f"{path} shows every address as 0 "
                                    "(kernel.kptr_restrict hides them: run as root or set it to 0)")
        return cls(entries)

    def __len__(self) -> int:
        return len(self._addrs)

    def lookup(self, addr: int) -> Optional[Tuple[str, int, str]]:
        """``(name, offset, module)`` of the text symbol at or below ``addr`` (module ``""``
        for vmlinux), or ``None`` below the first symbol."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return None
        return self._names[i], addr - self._addrs[i], self._mods[i]

    def address(self, name: str) -> Optional[int]:
        """The address of text symbol ``name`` (the first one of that name), or ``None``."""
        if self._by_name is None:
            self._by_name = {}
            for a, n in zip(self._addrs, self._names):
                self._by_name.setdefault(n, a)
        return self._by_name.get(name)

    def __repr__(self) -> str:
        return f"<pybpf.symbols.KernelSymbols {len(self)} text symbols>"
