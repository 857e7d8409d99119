"""PerfReader: a perf buffer -- one BPF output event and ring per CPU -- on one epoll.

The counterpart of libbpf's ``perf_buffer`` (``perf_buffer__new/poll/consume``)::

    with PerfReader(coll.maps["events"], on_event, on_lost=on_lost) as reader:
        while running:
            reader.poll(0.1)

For every online CPU (below the map's ``max_entries``) it opens a
``PERF_COUNT_SW_BPF_OUTPUT`` event, maps its ring, enables it and stores its fd
at ``map[cpu]``, which is where ``bpf_perf_event_output(..., BPF_F_CURRENT_CPU,
...)`` writes.  Callbacks have the ring buffer's signature, ``callback(buf, offset,
size)``, so one callback serves both transports (see
:func:`pybpf.ringbuf.open_events`).
"""

from __future__ import annotations

import struct
from typing import Any, Dict, Iterable, List, Optional

import attrs

from ..consts import MapType
from ..errors import BPFError, SyscallError
from ..ringbuf.base import Callback, DropCounter, EventReader, read_counter
from .ring import LostCallback, PerfRing

__all__ = ["PerfReader", "PerfStats", "online_cpus"]

_U32 = struct.Struct("=I")


def online_cpus() -> List[int]:
    """The CPUs listed in /sys/devices/system/cpu/online."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            text = f.read().strip()
    except OSError as e:
        raise BPFError(f"cannot read the online CPU list: {e}") from None
    cpus: List[int] = []
    for part in text.split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


@attrs.frozen
class PerfStats:
    """Counters of a perf buffer (see :meth:`PerfReader.statistics`).

    ``records``/``bytes``: samples (and their raw bytes, padding included) handed
    out.  ``lost``: samples the kernel could not write because a CPU's ring was
    full, from its ``PERF_RECORD_LOST`` records (``lost_by_cpu`` per CPU); a loss
    is reported once the ring has room again.  ``dropped``: the BPF program's own
    counter of failed ``bpf_perf_event_output`` calls, if one was given.
    """
    records: int
    bytes: int
    lost: int
    lost_by_cpu: Dict[int, int]
    dropped: Optional[int] = None


class PerfReader(EventReader):
    """Consumer of a BPF_MAP_TYPE_PERF_EVENT_ARRAY map (see :class:`EventReader` for
    ``poll``/``consume``/``records``/asyncio).

    ``pages``: data pages per CPU (a power of two, default 64 = 256 KiB with 4 KiB
    pages).  Wake-ups: after every ``wakeup_events`` samples (default 1, as libbpf),
    or with ``watermark`` once that many bytes wait in a CPU's ring.  ``on_lost(cpu,
    count)`` is told about lost samples.  ``cpus`` defaults to the online CPUs.
    """

    def __init__(self, map: Any, callback: Optional[Callback] = None, *,
                 on_lost: Optional[LostCallback] = None, pages: int = 64,
                 wakeup_events: int = 1, watermark: Optional[int] = None,
                 cpus: Optional[Iterable[int]] = None, drops: Optional[DropCounter] = None,
                 name: Optional[str] = None):
        if getattr(map, "type", None) != MapType.PERF_EVENT_ARRAY:
            raise BPFError(f"map {getattr(map, 'name', map)!r} is not a "
                           f"BPF_MAP_TYPE_PERF_EVENT_ARRAY (type {getattr(map, 'type', '?')!s})")
        super().__init__()
        self.map = map
        self.name: str = name or map.name
        self.callback = callback
        self.drops = drops
        self.rings: Dict[int, PerfRing] = {}
        wanted = sorted(set(online_cpus() if cpus is None else cpus))
        try:
            for cpu in wanted:
                if cpu >= map.max_entries:
                    if cpus is None:
                        continue            # as libbpf: CPUs beyond the map are not served
                    raise BPFError(f"perf buffer {self.name}: cpu {cpu} is beyond the map's "
                                   f"max_entries ({map.max_entries})")
                ring = PerfRing(cpu, name=self.name, pages=pages, wakeup_events=wakeup_events,
                                watermark=watermark, on_lost=on_lost)
                self.rings[cpu] = ring
                ring.enable()
                map.update_raw(_U32.pack(cpu), _U32.pack(ring.fileno()))
                self._register(ring, callback)
            if not self.rings:
                raise BPFError(f"perf buffer {self.name}: no CPU to serve (map max_entries "
                               f"{map.max_entries}, cpus {wanted})")
        except BaseException:
            self.close()
            raise

    def statistics(self) -> PerfStats:
        """Counters so far, summed over CPUs (``dropped`` reads the BPF counter, if given)."""
        records = nbytes = lost = 0
        by_cpu: Dict[int, int] = {}
        for cpu, ring in self.rings.items():
            r, b, l = ring.counters
            records += r
            nbytes += b
            lost += l
            by_cpu[cpu] = l
        dropped = read_counter(self.drops) if self.drops is not None else None
        return PerfStats(records=records, bytes=nbytes, lost=lost, lost_by_cpu=by_cpu,
                         dropped=dropped)

    def close(self) -> None:
        """Remove the events from the map, then unmap and close them.  Idempotent."""
        if self.closed:
            return
        try:
            for cpu in self.rings:
                try:
                    self.map.delete_raw(_U32.pack(cpu))
                except SyscallError:
                    pass        # never stored, or the map is gone
        finally:
            for ring in self.rings.values():
                ring.close()
            super().close()
            self.rings.clear()

    def __enter__(self) -> "PerfReader":
        return self

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"epoll fd={self.epoll_fd}"
        return f"<pybpf.perf.PerfReader {self.name} cpus={list(self.rings)} {state}>"
