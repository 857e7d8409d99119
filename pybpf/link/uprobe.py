"""uprobes and uretprobes: run a program when a user-space function is entered or returns.

``attach_uprobe(prog, "/usr/bin/x", "main")`` resolves ``main`` to a file offset
(:mod:`pybpf.link.elfsym`) and opens a probe on it through the ``uprobe`` perf
PMU, or through tracefs ``uprobe_events`` on kernels without it, then links the
program to that perf event (:func:`pybpf.link.perf_event.attach_perf_fd`).

Section names follow libbpf: ``SEC("uprobe/PATH:FUNC[+OFFSET]")`` (an absolute
path gives ``uprobe//usr/lib/...``), ``SEC("uretprobe/libc.so.6:malloc")``, or a
bare ``SEC("uprobe")`` attached with explicit arguments.  ``SEC("uprobe.multi/PATH:GLOB")``
probes every matching function with one ``BPF_TRACE_UPROBE_MULTI`` link (6.6+).
"""

from __future__ import annotations

import fnmatch
import os
import re
from typing import Any, Optional, Sequence, Tuple, Union

from .. import sys as _sys
from ..consts import AttachType
from ..errors import BPFError, NotSupportedError, SyscallError
from .base import Link, register
from .elfsym import STT_FUNC, STT_GNU_IFUNC, ElfImage, resolve_binary
from ..sys.fd import FD
from .perf_event import TracefsProbe, attach_perf_fd, kernel_older_than, open_probe

__all__ = ["attach_uprobe", "attach_uprobe_multi", "open_uprobe", "parse_uprobe_target"]

_UPROBE_MULTI_RETURN = 1    # BPF_F_UPROBE_MULTI_RETURN


def open_uprobe(path: str, offset: int, *, retprobe: bool = False, pid: int = -1,
                ref_ctr_offset: int = 0, legacy: Optional[bool] = None,
                context: str = "") -> Tuple[FD, Tuple[TracefsProbe, ...]]:
    """Open a perf event for a uprobe at file ``offset`` of ``path``.

    Returns ``(perf_fd, resources)``: ``resources`` holds the tracefs probe to
    remove after the perf fd is closed (empty on the PMU path).  ``legacy``
    forces the tracefs route (True) or the PMU (False); by default the PMU is
    used when the kernel has it.
    """
    if legacy is not True:
        pfd = open_probe("uprobe", path, offset, retprobe=retprobe, pid=pid,
                         ref_ctr_offset=ref_ctr_offset, context=context)
        if pfd is not None:
            return pfd, ()
        if legacy is False:
            raise NotSupportedError("the uprobe perf PMU",
                                    "/sys/bus/event_source/devices/uprobe does not exist",
                                    min_kernel="4.17")
    target = f"{path}:{offset:#x}" + (f"({ref_ctr_offset:#x})" if ref_ctr_offset else "")
    if " " in path:
        raise NotSupportedError(f"uprobe on {path!r}", "tracefs probe definitions cannot hold spaces")
    probe = TracefsProbe("uprobe_events", f"{'r' if retprobe else 'p'} {target}",
                         f"{os.path.basename(path)}_{offset:x}")
    try:
        return probe.open(pid=pid, context=context), (probe,)
    except BaseException:
        probe.close()
        raise


def attach_uprobe(prog: Any, path: str, func: Optional[str] = None, offset: int = 0,
                  pid: int = -1, retprobe: bool = False, *, cookie: int = 0,
                  ref_ctr_offset: int = 0, legacy: Optional[bool] = None) -> Link:
    """Attach ``prog`` (a kprobe-type program) to a user-space function.

    ``path`` is an executable or shared library (a bare ``libc.so.6`` or program
    name is resolved as libbpf does, preferring what process ``pid`` maps).
    With ``func`` the probe goes at that function plus ``offset`` bytes; without
    it ``offset`` is the file offset itself.  ``pid`` restricts the probe to one
    process (-1: all).  ``retprobe`` fires on return instead.  ``cookie`` is
    returned by ``bpf_get_attach_cookie()`` (5.15+).  ``ref_ctr_offset`` is the
    file offset of a USDT-style semaphore to increment while attached.
    """
    binary = resolve_binary(path, pid)
    where = f"{binary}:" + (f"{func}+{offset:#x}" if func and offset else func or f"{offset:#x}")
    if func:
        with ElfImage(binary) as elf:
            offset += elf.find_function(func).offset
    if pid >= 0:
        where += f" pid {pid}"
    kind = "uretprobe" if retprobe else "uprobe"
    pfd, resources = open_uprobe(binary, offset, retprobe=retprobe, pid=pid,
                                 ref_ctr_offset=ref_ctr_offset, legacy=legacy,
                                 context=f"{kind} {where}")
    return attach_perf_fd(prog, pfd, kind=kind, target=where, cookie=cookie, resources=resources)


def attach_uprobe_multi(prog: Any, path: str, pattern: Optional[str] = None, *,
                        funcs: Optional[Sequence[str]] = None,
                        offsets: Optional[Sequence[int]] = None, pid: int = -1,
                        retprobe: bool = False, cookies: Optional[Sequence[int]] = None) -> Link:
    """One ``uprobe.multi`` link (``BPF_TRACE_UPROBE_MULTI``, 6.6+) on many functions of one file.

    Give one of: ``pattern``, a glob over the file's function symbols
    (``"pybpf_*"``); ``funcs``, names; or ``offsets``, file offsets.  ``cookies``
    pairs a cookie with each probe, in the order the functions or offsets were
    given (for a pattern, sorted by name).  ``pid`` and ``retprobe`` are as for
    :func:`attach_uprobe`.
    """
    kind = "uretprobe.multi" if retprobe else "uprobe.multi"
    if sum(x is not None for x in (pattern, funcs, offsets)) != 1:
        raise BPFError(f"{kind} for program {prog.name}: give one of pattern, funcs or offsets")
    binary = resolve_binary(path, pid)
    if offsets is None:
        with ElfImage(binary) as elf:
            if pattern is not None:
                names = sorted({s.name for t in (".symtab", ".dynsym") for s in elf.symbols(t)
                                if s.type in (STT_FUNC, STT_GNU_IFUNC) and s.shndx
                                and fnmatch.fnmatchcase(s.name, pattern)})
                if not names:
                    raise BPFError(f"{kind}: no function of {binary} matches {pattern!r}")
            else:
                names = list(funcs or ())
            offsets = [elf.find_function(n).offset for n in names]
    target = f"{binary}:{pattern or (','.join(funcs) if funcs else f'{len(offsets)} offsets')}"
    ctx = f"program {prog.name} {kind} {target}"
    try:
        fd = _sys.link_create(prog.fd, 0, AttachType.TRACE_UPROBE_MULTI,
                              uprobe_multi_path=binary, uprobe_multi_offsets=list(offsets),
                              uprobe_multi_cookies=cookies,
                              uprobe_multi_flags=_UPROBE_MULTI_RETURN if retprobe else 0,
                              uprobe_multi_pid=max(pid, 0), context=ctx)
    except SyscallError as e:
        if e.errno in (22, 95, 524) and kernel_older_than(6, 6):
            raise NotSupportedError(f"{kind} links", "this kernel has no uprobe_multi links",
                                    min_kernel="6.6") from e
        raise
    return Link(fd, program=prog, kind=kind, target=target)


_TARGET = re.compile(r"(?P<path>.+):(?P<func>[A-Za-z_.@$][\w.@$]*)?(?:\+?(?P<off>(?:0x)?[0-9a-fA-F]+))?")


def parse_uprobe_target(target: str) -> Tuple[str, Optional[str], int]:
    """Split a libbpf-style uprobe target ``PATH:FUNC[+OFFSET]`` (or ``PATH:OFFSET``)
    into ``(path, func, offset)``."""
    m = _TARGET.fullmatch(target)
    if m is None or (m.group("func") is None and m.group("off") is None):
        raise BPFError(f"uprobe target {target!r} is not PATH:FUNC[+OFFSET] or PATH:OFFSET")
    off = m.group("off")
    return m.group("path"), m.group("func"), int(off, 0) if off else 0


def _auto(prog: Any, retprobe: bool, path: Optional[str], func: Optional[str],
          offset: Union[int, None], kw: Any) -> Link:
    spec_target = prog.spec.attach_to if prog.spec is not None else ""
    if path is None:
        if not spec_target:
            raise BPFError(f"{'uretprobe' if retprobe else 'uprobe'} program {prog.name} has no "
                           "target in its section name: call attach(path=..., func=...)")
        path, sec_func, sec_off = parse_uprobe_target(spec_target)
        func = func if func is not None else sec_func
        offset = offset if offset is not None else sec_off
    return attach_uprobe(prog, path, func, offset or 0, retprobe=retprobe, **kw)


def _auto_multi(prog: Any, retprobe: bool, target: Optional[str], kw: Any) -> Link:
    target = target or (prog.spec.attach_to if prog.spec is not None else "")
    path, sep, pattern = (target or "").rpartition(":")
    if not sep or not path or not pattern:
        if "path" in kw:
            return attach_uprobe_multi(prog, retprobe=retprobe, **kw)
        raise BPFError(f"uprobe.multi program {prog.name}: section target {target!r} is not "
                       "PATH:PATTERN; call attach(path=..., pattern=...)")
    return attach_uprobe_multi(prog, path, pattern, retprobe=retprobe, **kw)


@register("uprobe_multi")
def _auto_uprobe_multi(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    return _auto_multi(prog, False, target, kw)


@register("uretprobe_multi")
def _auto_uretprobe_multi(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    return _auto_multi(prog, True, target, kw)


@register("uprobe")
def _auto_uprobe(prog: Any, path: Optional[str] = None, func: Optional[str] = None,
                 offset: Optional[int] = None, **kw: Any) -> Link:
    return _auto(prog, False, path, func, offset, kw)


@register("uretprobe")
def _auto_uretprobe(prog: Any, path: Optional[str] = None, func: Optional[str] = None,
                    offset: Optional[int] = None, **kw: Any) -> Link:
    return _auto(prog, True, path, func, offset, kw)
