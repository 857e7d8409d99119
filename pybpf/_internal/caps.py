"""Process capabilities, read from /proc/self/status (no syscalls needed)."""

from __future__ import annotations

from typing import FrozenSet

__all__ = ["effective_caps", "has_caps", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_BPF"]

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


def effective_caps() -> FrozenSet[int]:
    """The set of effective capability numbers of this process."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    bits = int(line.split()[1], 16)
                    return frozenset(i for i in range(64) if bits >> i & 1)
    except (OSError, ValueError):
        pass
    return frozenset()


def has_caps(*caps: int) -> bool:
    eff = effective_caps()
    return all(c in eff for c in caps)
