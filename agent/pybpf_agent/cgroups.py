"""cgroup v2 paths and ids.

A cgroup v2 id (what ``bpf_get_current_cgroup_id()`` returns) is the inode
number of the cgroup's directory on the cgroup2 mount.  On hybrid hosts the
cgroup2 hierarchy is mounted at ``/sys/fs/cgroup/unified``; on unified ones at
``/sys/fs/cgroup``.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

from .schema import ConfigError

__all__ = ["cgroup2_mount", "cgroup_id", "resolve_cgroup", "CgroupNames"]


def cgroup2_mount() -> Optional[str]:
    """Where the cgroup v2 hierarchy is mounted (first cgroup2 entry of /proc/mounts)."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return parts[1]
    except OSError:
        pass
    return None


def resolve_cgroup(path: str) -> str:
    """Absolute directory of a cgroup given absolute or relative to the cgroup2 mount."""
    if os.path.isabs(path) and os.path.isdir(path):
        return path
    mount = cgroup2_mount()
    if mount is None:
        raise ConfigError("scope.cgroup", f"{path!r} is not allowed (no cgroup2 hierarchy is mounted)")
    full = os.path.join(mount, path.lstrip("/"))
    if not os.path.isdir(full):
        raise ConfigError("scope.cgroup", f"{path!r} is not allowed (no such cgroup directory "
                          f"under {mount})")
    return full


def cgroup_id(path: str) -> int:
    """The cgroup v2 id of ``path`` (absolute or relative to the cgroup2 mount)."""
    full = resolve_cgroup(path)
    mount = cgroup2_mount()
    if mount is not None and not os.path.realpath(full).startswith(os.path.realpath(mount)):
        raise ConfigError("scope.cgroup", f"{path!r} is not allowed (not in the cgroup2 "
                          f"hierarchy at {mount}; v1 controller directories have no v2 id)")
    return os.stat(full).st_ino


class CgroupNames:
    """id -> path (relative to the cgroup2 mount), by walking the hierarchy on a miss."""

    def __init__(self) -> None:
        self._names: Dict[int, str] = {}

    def _walk(self) -> None:
        mount = cgroup2_mount()
        if mount is None:
            return
        for root, dirs, _ in os.walk(mount):
            try:
                ino = os.stat(root).st_ino
            except OSError:
                continue
            rel = os.path.relpath(root, mount)
            self._names[ino] = "/" if rel == "." else "/" + rel

    def name(self, cg_id: int) -> str:
        if cg_id not in self._names:
            self._walk()
        return self._names.get(cg_id, f"unknown_cgroup_id:{cg_id}")
