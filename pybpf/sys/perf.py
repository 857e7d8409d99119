"""perf_event_open(2), ioctls on perf and BPF fds, and mmap of rings and mmapable maps."""

from __future__ import annotations

import errno
import fcntl
import mmap as _mmap
import sys
from typing import Union

from ..consts import (
    PERF_EVENT_IOC_DISABLE, PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_ID, PERF_EVENT_IOC_PAUSE_OUTPUT,
    PERF_EVENT_IOC_SET_BPF, PerfFlag,
)
from ._core import Pins, new, sizeof
from ._errors import os_error
from .backend import active
from .fd import FD

__all__ = ["perf_event_open", "ioctl", "perf_event_enable", "perf_event_disable",
           "perf_event_set_bpf", "perf_event_id", "perf_event_pause_output", "mmap",
           "PAGE_SIZE"]

PAGE_SIZE = _mmap.PAGESIZE


def perf_event_open(type: int, config: int = 0, *, pid: int = -1, cpu: int = 0,
                    group_fd: int = -1, flags: int = 0, sample_period: int = 0,
                    sample_type: int = 0, read_format: int = 0, attr_flags: int = 0,
                    wakeup_events: int = 0, bp_type: int = 0,
                    config1: Union[int, str, bytes] = 0, config2: int = 0, config3: int = 0,
                    sample_max_stack: int = 0, context: str = "") -> FD:
    """perf_event_open(2) with a ``struct perf_event_attr`` built from the arguments.

    ``type``/``config`` select the event (:class:`~pybpf.consts.PerfType`, or a dynamic
    PMU type such as kprobe's from ``/sys/bus/event_source/devices/*/type``).
    ``attr_flags`` is the bitfield word (``PERF_ATTR_FLAG_*``, e.g. ``DISABLED``,
    ``FREQ``, ``WATERMARK``); ``sample_period`` is a frequency with ``FREQ`` and
    ``wakeup_events`` a byte watermark with ``WATERMARK``.  ``config1`` may be a string
    (kprobe function or uprobe path for the kprobe/uprobe PMUs).  The fd is always
    close-on-exec (``PERF_FLAG_FD_CLOEXEC`` is added to ``flags``).
    """
    pins = Pins()
    a = new("perf_event_attr")
    a.type = type
    a.size = sizeof("perf_event_attr")
    a.config = config
    a.sample_period = sample_period
    a.sample_type = sample_type
    a.read_format = read_format
    a.flags = attr_flags
    a.wakeup_events = wakeup_events
    a.bp_type = bp_type
    a.config1 = pins.cstr(config1) if isinstance(config1, (str, bytes)) else config1
    a.config2 = config2
    a.config3 = config3
    a.sample_max_stack = sample_max_stack
    flags |= PerfFlag.FD_CLOEXEC
    b = active
    while True:
        r = b.perf_event_open(a, pid, cpu, group_fd, flags)
        if r >= 0:
            return FD(r)
        err = b.errno(r)
        if err != errno.EINTR:
            raise os_error("perf_event_open", err, context)


def ioctl(fd: int, request: int, arg: Union[int, bytearray] = 0, *, name: str = "",
          context: str = "") -> int:
    """ioctl(2) with an int argument or a mutable buffer (filled in place).

    ``name`` (``"PERF_EVENT_IOC_SET_BPF"``) makes errors readable.
    """
    call = f"ioctl({name or hex(request)})"
    while True:
        try:
            if isinstance(arg, int):
                return fcntl.ioctl(fd, request, arg)
            return fcntl.ioctl(fd, request, arg, True)
        except InterruptedError:
            continue
        except OSError as e:
            raise os_error(call, e.errno or errno.EIO, context) from None


def perf_event_enable(fd: int, *, context: str = "") -> None:
    """PERF_EVENT_IOC_ENABLE."""
    ioctl(fd, PERF_EVENT_IOC_ENABLE, 0, name="PERF_EVENT_IOC_ENABLE", context=context)


def perf_event_disable(fd: int, *, context: str = "") -> None:
    """PERF_EVENT_IOC_DISABLE."""
    ioctl(fd, PERF_EVENT_IOC_DISABLE, 0, name="PERF_EVENT_IOC_DISABLE", context=context)


def perf_event_set_bpf(fd: int, prog_fd: int, *, context: str = "") -> None:
    """PERF_EVENT_IOC_SET_BPF: run ``prog_fd`` on the event (the pre-bpf_link way to attach)."""
    ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd, name="PERF_EVENT_IOC_SET_BPF", context=context)


def perf_event_pause_output(fd: int, pause: bool, *, context: str = "") -> None:
    """PERF_EVENT_IOC_PAUSE_OUTPUT: stop (or resume) writing to the event's ring."""
    ioctl(fd, PERF_EVENT_IOC_PAUSE_OUTPUT, int(pause), name="PERF_EVENT_IOC_PAUSE_OUTPUT",
          context=context)


def perf_event_id(fd: int, *, context: str = "") -> int:
    """PERF_EVENT_IOC_ID: the event's id (as in ``PERF_SAMPLE_ID``/``PERF_FORMAT_ID``)."""
    buf = bytearray(8)
    ioctl(fd, PERF_EVENT_IOC_ID, buf, name="PERF_EVENT_IOC_ID", context=context)
    return int.from_bytes(buf, sys.byteorder)


def mmap(fd: int, length: int, prot: int = _mmap.PROT_READ, flags: int = _mmap.MAP_SHARED,
         offset: int = 0, *, context: str = "") -> _mmap.mmap:
    """mmap(2) of a perf ring, BPF ring buffer or ``BPF_F_MMAPABLE`` map.

    Returns a :class:`mmap.mmap`: a buffer (``memoryview(m)``; ``.cast("Q")`` for
    aligned 64-bit loads) and its own unmap handle (``m.close()``, which refuses while
    views of it are alive, so the memory cannot be unmapped under a reader).
    ``offset`` must be a multiple of :data:`PAGE_SIZE`.
    """
    try:
        return _mmap.mmap(fd, length, flags=flags, prot=prot, offset=offset)
    except OSError as e:
        raise os_error("mmap", e.errno or errno.EINVAL, context) from None
