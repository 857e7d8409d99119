"""Mounting bpffs (where BPF objects are pinned)."""

from __future__ import annotations

import errno
import os
from typing import List, Optional, Union

from ._errors import os_error
from ._libc import ffi, lib

__all__ = ["mount", "umount", "bpffs_mounts", "is_bpffs", "mount_bpffs", "DEFAULT_BPFFS"]

DEFAULT_BPFFS = "/sys/fs/bpf"


def mount(source: str, target: Union[str, "os.PathLike[str]"], fstype: str, flags: int = 0,
          data: Optional[str] = None) -> None:
    """mount(2).  Raises :class:`~pybpf.errors.PermissionDeniedError` without CAP_SYS_ADMIN."""
    src = ffi.new("char[]", os.fsencode(source))
    tgt = ffi.new("char[]", os.fsencode(target))
    typ = ffi.new("char[]", os.fsencode(fstype))
    dat = ffi.new("char[]", data.encode()) if data is not None else ffi.NULL
    while lib.mount(src, tgt, typ, flags, dat) != 0:
        err = ffi.errno
        if err != errno.EINTR:
            raise os_error("mount", err, f"{fstype} on {os.fsdecode(target)}")


def umount(target: Union[str, "os.PathLike[str]"], flags: int = 0) -> None:
    """umount2(2)."""
    tgt = ffi.new("char[]", os.fsencode(target))
    while lib.umount2(tgt, flags) != 0:
        err = ffi.errno
        if err != errno.EINTR:
            raise os_error("umount", err, os.fsdecode(target))


def _unescape(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def _mounts() -> List[tuple]:
    """(mount point, fs type) of every mount visible to this process, in mount order."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [(_unescape(p[1]), p[2]) for p in (line.split() for line in lines) if len(p) >= 3]


def bpffs_mounts() -> List[str]:
    """Mount points of every bpffs visible to this process."""
    return [m for m, fstype in _mounts() if fstype == "bpf"]


def is_bpffs(path: Union[str, "os.PathLike[str]"]) -> bool:
    """Whether ``path`` (which need not exist yet) lies on a bpffs mount."""
    p = os.path.realpath(os.fspath(path))
    best, best_type = "", ""
    for m, fstype in _mounts():  # the last, longest mount point containing p wins
        if (p == m or p.startswith(m.rstrip("/") + "/")) and len(m) >= len(best):
            best, best_type = m, fstype
    return best_type == "bpf"


def mount_bpffs(path: str = DEFAULT_BPFFS) -> bool:
    """Mount bpffs at ``path`` unless one is there already; True if this call mounted it."""
    real = os.path.realpath(path)
    if real in bpffs_mounts():
        return False
    os.makedirs(real, exist_ok=True)
    mount("bpf", real, "bpf")
    return True
