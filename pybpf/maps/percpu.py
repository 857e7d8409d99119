"""Per-CPU map values: the possible-CPU count and summing a value across CPUs.

The kernel copies a per-CPU value as one slot per *possible* CPU (not online),
each slot ``round_up(value_size, 8)`` bytes; :class:`~pybpf.maps.Map` decodes it
as a list with one item per CPU, and :func:`sum_values` reduces that list.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence

from ..errors import BPFError

__all__ = ["possible_cpus", "parse_cpu_list", "sum_values"]

_NCPU: Optional[int] = None


def parse_cpu_list(text: str) -> List[int]:
    """CPU numbers of a kernel cpulist (``"0-3,8,10-11"``)."""
    cpus: List[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def possible_cpus() -> int:
    """Number of possible CPUs (per-CPU map values have one slot per possible CPU):
    the highest CPU number in ``/sys/devices/system/cpu/possible`` plus one, as libbpf."""
    global _NCPU
    if _NCPU is None:
        try:
            with open("/sys/devices/system/cpu/possible") as f:
                _NCPU = max(parse_cpu_list(f.read())) + 1
        except (OSError, ValueError):
            _NCPU = os.cpu_count() or 1
    return _NCPU


def sum_values(values: Sequence[Any]) -> Any:
    """The sum of one value per CPU: numbers add up, records field by field (into a record
    of the same type), lists item by item, booleans with ``or``; bytes and strings cannot be
    summed (:class:`~pybpf.BPFError`)."""
    if not values:
        raise BPFError("no per-CPU values to sum")
    first = values[0]
    if isinstance(first, bool):
        return any(values)
    if isinstance(first, (int, float)):
        return sum(values)
    if hasattr(first, "_fields"):
        return type(first)._make(sum_values(col) for col in zip(*values))  # type: ignore[attr-defined]
    if isinstance(first, list):
        return [sum_values(col) for col in zip(*values)]
    raise BPFError(f"cannot sum per-CPU values of type {type(first).__name__}")
