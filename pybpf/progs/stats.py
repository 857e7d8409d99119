"""BPF run statistics (run count and run time per program) without touching the sysctl."""

from __future__ import annotations

from .. import sys as _sys
from ..consts import StatsType

__all__ = ["RunStats", "enable_run_stats"]


class RunStats:
    """While open, the kernel counts ``run_cnt`` and ``run_time_ns`` of every program
    (``Program.info()``).  It costs tens of nanoseconds per program run, so keep it
    open only while needed.  Needs CAP_SYS_ADMIN.  Closing it stops the counting
    (unless another holder, or ``kernel.bpf_stats_enabled=1``, keeps it on)."""

    def __init__(self) -> None:
        self._fd = _sys.enable_stats(StatsType.RUN_TIME, context="BPF run statistics")

    def close(self) -> None:
        self._fd.close()

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def __enter__(self) -> "RunStats":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def enable_run_stats() -> RunStats:
    """Turn on BPF run statistics (BPF_ENABLE_STATS) for as long as the result is open."""
    return RunStats()
