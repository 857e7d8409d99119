"""A process's memory mappings from ``/proc/PID/maps``."""

from __future__ import annotations

import bisect
from typing import List, Optional

import attrs

from ..errors import BPFError

__all__ = ["Mapping", "ProcessMaps", "read_maps"]


@attrs.frozen
class Mapping:
    """One line of ``/proc/PID/maps``: ``start``-``end`` maps ``path`` from file ``offset``."""
    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def executable(self) -> bool:
        return "x" in self.perms

    @property
    def is_file(self) -> bool:
        """Backed by a file (not anonymous memory, the stack, the vdso ...)."""
        return bool(self.inode) and self.path.startswith("/")

    def file_offset(self, addr: int) -> int:
        """The file offset that process address ``addr`` maps."""
        return addr - self.start + self.offset


def read_maps(pid: int) -> List[Mapping]:
    """Every mapping of process ``pid``, in address order."""
    path = f"/proc/{pid}/maps"
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise BPFError(f"{path}: cannot read process mappings: {e.strerror}") from None
    out = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, _, hi = parts[0].partition("-")
        out.append(Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), parts[3],
                           int(parts[4]), parts[5] if len(parts) > 5 else ""))
    return out


class ProcessMaps:
    """The mappings of one process, searchable by address."""

    def __init__(self, pid: int, mappings: Optional[List[Mapping]] = None):
        self.pid = pid
        self.mappings = mappings if mappings is not None else read_maps(pid)
        self._starts = [m.start for m in self.mappings]

    def find(self, addr: int) -> Optional[Mapping]:
        """The mapping holding ``addr``, or ``None``."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.mappings[i].end:
            return self.mappings[i]
        return None
