"""Perf buffer reader: BPF output events per CPU, for kernels without ring buffers.

* :class:`PerfReader` -- one ``PERF_COUNT_SW_BPF_OUTPUT`` event and ring per CPU,
  stored in a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY``, all on one epoll; samples and
  lost-sample records parsed; ``poll``/``consume``/``records``/asyncio as for
  :class:`pybpf.ringbuf.RingBufReader`.
* :class:`PerfRing` -- one CPU's event and ring.

Prefer BPF ring buffers (:mod:`pybpf.ringbuf`) where the kernel has them (5.8+);
:func:`pybpf.ringbuf.open_events` picks for you.
"""

from .reader import PerfReader, PerfStats, online_cpus
from .ring import LostCallback, PerfRing

__all__ = ["PerfReader", "PerfStats", "PerfRing", "LostCallback", "online_cpus"]
