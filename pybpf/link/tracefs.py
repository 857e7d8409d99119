"""tracefs: finding (and mounting) it, tracepoint ids."""

from __future__ import annotations

import os
import subprocess

from ..errors import NotSupportedError

__all__ = ["tracefs_root", "tracepoint_id"]

_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def tracefs_root(mount: bool = True) -> str:
    """The tracefs mount point; mounts it at /sys/kernel/tracing when absent and permitted."""
    for c in _CANDIDATES:
        if os.path.exists(os.path.join(c, "events")):
            return c
    if mount and os.geteuid() == 0:
        try:
            os.makedirs(_CANDIDATES[0], exist_ok=True)
            subprocess.run(["mount", "-t", "tracefs", "tracefs", _CANDIDATES[0]], check=True,
                           capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            pass
        if os.path.exists(os.path.join(_CANDIDATES[0], "events")):
            return _CANDIDATES[0]
    raise NotSupportedError("tracefs", "tracefs is not mounted; mount it with "
                            "`mount -t tracefs tracefs /sys/kernel/tracing` (needs CAP_SYS_ADMIN)")


def tracepoint_id(category: str, name: str) -> int:
    """The perf event id of tracepoint CATEGORY:NAME."""
    path = os.path.join(tracefs_root(), "events", category, name, "id")
    try:
        with open(path) as f:
            return int(f.read().strip())
    except FileNotFoundError:
        raise NotSupportedError(f"tracepoint {category}/{name}", f"{path} does not exist") from None
    except (OSError, ValueError) as e:
        raise NotSupportedError(f"tracepoint {category}/{name}", f"cannot read {path}: {e}") from None
