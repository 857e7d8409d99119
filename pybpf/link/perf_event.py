"""Perf events: attaching a program to any perf event, dynamic probe PMUs, and sampling.

Three things every perf-event-based attachment shares live here:

* :func:`attach_perf_fd` hooks a program to an open perf event: a BPF perf
  link (``BPF_LINK_CREATE`` with ``BPF_PERF_EVENT``, 5.15+, which can carry a BPF
  cookie), falling back to ``PERF_EVENT_IOC_SET_BPF`` + ``PERF_EVENT_IOC_ENABLE``
  on older kernels.
* :func:`open_probe` opens a kprobe or uprobe through its perf PMU
  (``/sys/bus/event_source/devices/{kprobe,uprobe}``, 4.17+), and
  :class:`TracefsProbe` is the legacy route: a probe event written to tracefs
  ``kprobe_events``/``uprobe_events`` and opened as a tracepoint, removed again
  when the link closes (or at interpreter exit).
* :func:`attach_perf_event` runs a ``SEC("perf_event")`` program on a sampling
  event (software ``cpu-clock`` by default) at a frequency or period, one perf
  event per CPU, returned as one :class:`LinkGroup`.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import threading
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from .. import sys as _sys
from ..consts import PERF_ATTR_FLAG_FREQ, AttachType, PerfSwId, PerfType
from ..errors import BPFError, NotSupportedError, SyscallError
from ..sys.fd import FD
from .base import Link, register
from .tracefs import tracefs_root, tracepoint_id

__all__ = [
    "LinkGroup", "TracefsProbe", "attach_perf_fd", "attach_perf_event", "kernel_older_than",
    "online_cpus",
    "open_probe", "pmu_type", "pmu_format",
]

_PMU_DIR = "/sys/bus/event_source/devices"
_NO_PERF_LINK = (errno.EINVAL, errno.EOPNOTSUPP, 524)  # 524: ENOTSUPP (kernel-internal)


def kernel_older_than(major: int, minor: int) -> bool:
    """Whether the running kernel's release is below ``major.minor``: used only to word
    an error precisely once the kernel has refused something (EINVAL for a new attach type)."""
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return m is not None and (int(m.group(1)), int(m.group(2))) < (major, minor)


# -- attaching to a perf event --------------------------------------------------------------

def attach_perf_fd(prog: Any, pfd: FD, *, kind: str, target: str, cookie: int = 0,
                   cookie_required: bool = True, resources: Sequence[Any] = ()) -> Link:
    """Attach ``prog`` to the open perf event ``pfd``; the returned link owns ``pfd``.

    ``resources`` are further closables the link owns, closed after the perf
    event (a :class:`TracefsProbe`).  On kernels without BPF perf links the
    program is attached with the ioctl; the cookie is then lost, which is an
    error unless ``cookie_required`` is False (the link's ``is_bpf_link`` tells
    the caller which way it went).  On failure ``pfd`` and ``resources`` are closed.
    """
    ctx = f"program {prog.name}"
    try:
        try:
            lfd = _sys.link_create(prog.fd, pfd.fileno(), AttachType.PERF_EVENT,
                                   perf_event_bpf_cookie=cookie, context=ctx)
            return Link(lfd, program=prog, kind=kind, target=target, extra=(pfd, *resources))
        except SyscallError as e:
            if e.errno not in _NO_PERF_LINK:
                raise
            if cookie and cookie_required:
                raise NotSupportedError(f"BPF cookie for {kind} {target}",
                                        "this kernel has no BPF perf links to carry it",
                                        min_kernel="5.15") from e
        _sys.perf_event_set_bpf(pfd.fileno(), prog.fd, context=ctx)
        _sys.perf_event_enable(pfd.fileno(), context=ctx)
        return Link(pfd, program=prog, kind=kind, target=target, extra=tuple(resources),
                    is_bpf_link=False)
    except BaseException:
        pfd.close()
        for r in resources:
            r.close()
        raise


class LinkGroup(Link):
    """One attachment made of several links: a perf event per CPU, a uprobe per USDT site.

    ``links`` are the parts; closing the group closes them all (then runs
    ``on_close``, if given).  A group has no single fd: pin or inspect the
    parts (``group.links[i].pin(...)``).
    """

    def __init__(self, links: Iterable[Link], *, program: Any, kind: str, target: str,
                 on_close: Optional[Callable[[], None]] = None):
        self.links: List[Link] = list(links)
        self._on_close = on_close
        super().__init__(None, program=program, kind=kind, target=target,
                         detach=self._close_parts, is_bpf_link=False)

    def _close_parts(self) -> None:
        first: Optional[BaseException] = None
        for link in reversed(self.links):     # every part, even if one fails
            try:
                link.close()
            except BaseException as e:
                first = first or e
        if self._on_close is not None:
            self._on_close()
        if first is not None:
            raise first

    def info(self) -> Dict[str, Any]:
        """``{"links": [bpf_link_info of each part that is a bpf_link]}``."""
        return {"links": [l.info() for l in self.links if l.is_bpf_link]}


# -- dynamic PMUs (kprobe, uprobe) ----------------------------------------------------------

def pmu_type(pmu: str) -> Optional[int]:
    """The perf ``type`` of dynamic PMU ``pmu`` ("kprobe", "uprobe"), None if absent."""
    try:
        with open(os.path.join(_PMU_DIR, pmu, "type")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def pmu_format(pmu: str, field: str) -> Optional[Tuple[str, int, int]]:
    """Where ``field`` lives in the attr: ``("config", lo_bit, hi_bit)`` from
    ``.../<pmu>/format/<field>`` (``config:0``, ``config:32-63``), None if absent."""
    try:
        with open(os.path.join(_PMU_DIR, pmu, "format", field)) as f:
            text = f.read().strip()
    except OSError:
        return None
    m = re.fullmatch(r"(config\d?):(\d+)(?:-(\d+))?", text)
    if m is None:
        return None
    lo = int(m.group(2))
    return m.group(1), lo, int(m.group(3) or lo)


def open_probe(pmu: str, target: str, offset: int = 0, *, retprobe: bool = False,
               pid: int = -1, ref_ctr_offset: int = 0, context: str = "") -> Optional[FD]:
    """Open a kprobe (``target`` = function) or uprobe (``target`` = file path, ``offset``
    = file offset) through its PMU.  Returns None when the kernel has no such PMU.

    ``pid`` filters the probe to one process (-1: every process).  ``ref_ctr_offset``
    (uprobes, 4.20+) is the file offset of a USDT semaphore the kernel increments
    while the probe exists.
    """
    ptype = pmu_type(pmu)
    if ptype is None:
        return None
    config = 0
    if retprobe:
        fmt = pmu_format(pmu, "retprobe")
        if fmt is None:
            raise NotSupportedError(f"{pmu} return probes", f"{_PMU_DIR}/{pmu}/format/retprobe is missing")
        config |= 1 << fmt[1]
    if ref_ctr_offset:
        fmt = pmu_format(pmu, "ref_ctr_offset")
        if fmt is None or fmt[0] != "config":
            raise NotSupportedError("uprobe reference counters (USDT semaphores)",
                                    f"{_PMU_DIR}/{pmu}/format/ref_ctr_offset is missing",
                                    min_kernel="4.20")
        width = fmt[2] - fmt[1] + 1
        if ref_ctr_offset >> width:
            raise BPFError(f"{context}: semaphore offset {ref_ctr_offset:#x} does not fit in {width} bits")
        config |= ref_ctr_offset << fmt[1]
    return _sys.perf_event_open(ptype, config, config1=target, config2=offset,
                                pid=pid if pid >= 0 else -1, cpu=0 if pid < 0 else -1,
                                context=context)


class TracefsProbe:
    """A kprobe/uprobe event created in tracefs (``kprobe_events``/``uprobe_events``).

    The legacy way to make a probe (before the perf PMUs of 4.17): the event is
    written as ``p:pybpf/NAME TARGET`` and opened as a tracepoint.  ``close()``
    removes it; it must run after the perf event on it is closed, so links list
    it after their perf fd.  A finalizer removes it at interpreter exit too (closing the
    perf fds opened with :meth:`open` first).
    """

    GROUP = "pybpf"
    _counter = itertools.count()
    _lock = threading.Lock()
    _reaped: Set[str] = set()

    def __init__(self, events_file: str, definition: str, label: str):
        """``events_file`` is "kprobe_events" or "uprobe_events"; ``definition`` the
        probe after the event name (``"do_nanosleep+0"``, ``"/bin/x:0x1234(0x5678)"``),
        prefixed with ``r`` for a return probe; ``label`` seeds the event name."""
        root = tracefs_root()
        self.path = os.path.join(root, events_file)
        if not os.path.exists(self.path):
            raise NotSupportedError(f"tracefs {events_file}", f"{self.path} does not exist")
        with self._lock:
            n = next(self._counter)
            if self.path not in self._reaped:
                self._reaped.add(self.path)
                _reap_stale_events(self.path, self.GROUP)
        safe = re.sub(r"[^A-Za-z0-9_]", "_", label)[:32]
        self.name = f"pybpf_{os.getpid()}_{n}_{safe}"
        kind, _, rest = definition.partition(" ")
        self.definition = f"{kind}:{self.GROUP}/{self.name} {rest}"
        _write_events(self.path, self.definition)
        self._fds: List[FD] = []
        self._finalizer = weakref.finalize(self, _remove_event, self.path,
                                           f"{self.GROUP}/{self.name}", self._fds)

    @property
    def event(self) -> str:
        return f"{self.GROUP}/{self.name}"

    def tracepoint_id(self) -> int:
        return tracepoint_id(self.GROUP, self.name)

    def open(self, *, pid: int = -1, context: str = "") -> FD:
        """A perf event on this probe (all CPUs for a process filter, else CPU 0 as libbpf)."""
        fd = _sys.perf_event_open(PerfType.TRACEPOINT, self.tracepoint_id(),
                                  pid=pid if pid >= 0 else -1, cpu=0 if pid < 0 else -1,
                                  context=context)
        self._fds.append(fd)
        return fd

    def close(self) -> None:
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive


def _write_events(path: str, line: str) -> None:
    # One write(2) on an O_APPEND fd: Python's append mode seeks, which tracefs refuses.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            os.write(fd, line.encode() + b"\n")
        finally:
            os.close(fd)
    except OSError as e:
        raise SyscallError(f"write({path})", e.errno or errno.EIO, line) from None


def _reap_stale_events(path: str, group: str) -> None:
    """Remove the probe events of pybpf processes that died without cleaning up (SIGKILL):
    ``GROUP/pybpf_<pid>_...`` whose pid no longer exists.  An event still in use cannot be
    removed (EBUSY), so a live process of another pid namespace loses nothing."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        m = re.match(rf"[pr]\d*:{group}/(pybpf_(\d+)_\S+)", line)
        if m and int(m.group(2)) != os.getpid() and not os.path.exists(f"/proc/{m.group(2)}"):
            _remove_event(path, f"{group}/{m.group(1)}", [])


def _remove_event(path: str, event: str, fds: List[FD]) -> None:
    # The kernel refuses (EBUSY) to remove an event a perf fd is open on; at interpreter
    # exit this may run before the link's own finalizers, so close those fds first.
    for fd in fds:
        try:
            fd.close()
        except BPFError:
            pass      # already closed by its own finalizer
    try:
        _write_events(path, f"-:{event}")
    except SyscallError:
        pass   # already gone (or tracefs unmounted): nothing left to undo


# -- sampling -------------------------------------------------------------------------------

def online_cpus() -> List[int]:
    """The online CPU numbers, from ``/sys/devices/system/cpu/online``."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            text = f.read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: List[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def attach_perf_event(prog: Any, *, freq: Optional[int] = None, period: Optional[int] = None,
                      cpus: Optional[Iterable[int]] = None, type: int = PerfType.SOFTWARE,
                      config: int = PerfSwId.CPU_CLOCK, pid: int = -1, cookie: int = 0) -> LinkGroup:
    """Run ``prog`` (``SEC("perf_event")``) on every sample of a perf event.

    Give exactly one of ``freq`` (samples per second) or ``period`` (events per
    sample; nanoseconds for ``cpu-clock``).  The event defaults to the software
    ``cpu-clock``; ``type``/``config`` choose another (e.g. ``PerfType.HARDWARE``,
    ``PerfHwId.CPU_CYCLES``).  One perf event is opened per CPU in ``cpus``
    (default: every online CPU), counting every process; with ``pid >= 0`` and no
    ``cpus``, a single event follows that process on any CPU.
    """
    if (freq is None) == (period is None):
        raise BPFError(f"attaching perf_event program {prog.name}: give exactly one of freq= or period=")
    rate = freq if freq is not None else period
    if not rate or rate <= 0:
        raise BPFError(f"attaching perf_event program {prog.name}: sample rate must be positive")
    flags = PERF_ATTR_FLAG_FREQ if freq is not None else 0
    targets = list(cpus) if cpus is not None else ([-1] if pid >= 0 else online_cpus())
    what = f"{'freq' if freq else 'period'}={rate}"
    links: List[Link] = []
    try:
        for cpu in targets:
            pfd = _sys.perf_event_open(type, config, pid=pid, cpu=cpu, sample_period=rate,
                                       attr_flags=flags, context=f"perf event {what} cpu {cpu}")
            links.append(attach_perf_fd(prog, pfd, kind="perf_event", target=f"cpu{cpu} {what}",
                                        cookie=cookie))
    except BaseException:
        for l in links:
            l.close()
        raise
    return LinkGroup(links, program=prog, kind="perf_event",
                     target=f"{what} on {'all CPUs' if cpus is None and pid < 0 else targets}")


@register("perf_event")
def _auto_perf_event(prog: Any, **kw: Any) -> Link:
    if not ("freq" in kw or "period" in kw):
        raise BPFError(f"perf_event program {prog.name} cannot be attached from its section name "
                       "alone: call attach(freq=HZ) or attach(period=N)")
    return attach_perf_event(prog, **kw)
