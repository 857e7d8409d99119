"""kprobes and kretprobes: run a program when a kernel function is entered or returns.

``attach_kprobe(prog, "do_nanosleep")`` opens a probe through the ``kprobe``
perf PMU (``/sys/bus/event_source/devices/kprobe``, 4.17+), or through tracefs
``kprobe_events`` on older kernels, then links the program to it.  Also here:
``ksyscall``/``kretsyscall`` (a kprobe on the architecture's syscall entry
function, ``__x64_sys_NAME``) and multi-function kprobes (``kprobe.multi``, one
``BPF_TRACE_KPROBE_MULTI`` link over many functions, 5.18+ with CONFIG_FPROBE).

Kernels built without ``CONFIG_KPROBES`` have neither the PMU nor
``kprobe_events``; attaching there raises :class:`~pybpf.errors.NotSupportedError`
that says so, naming the option.
"""

from __future__ import annotations

import fnmatch
import functools
import gzip
import os
from typing import Any, List, Optional, Sequence, Tuple

from .. import sys as _sys
from ..consts import AttachType
from ..errors import BPFError, NotSupportedError, SyscallError
from .base import Link, register
from .perf_event import TracefsProbe, attach_perf_fd, kernel_older_than, open_probe, pmu_type
from .tracefs import tracefs_root

__all__ = ["attach_kprobe", "attach_ksyscall", "attach_kprobe_multi", "kprobes_available",
           "syscall_function"]

_KPROBE_MULTI_RETURN = 1    # BPF_F_KPROBE_MULTI_RETURN
_SYSCALL_PREFIX = {"x86_64": "__x64_", "aarch64": "__arm64_", "s390x": "__s390x_",
                   "riscv64": "__riscv_", "ppc64le": "", "ppc64": ""}


def _kprobe_events() -> Optional[str]:
    """tracefs ``kprobe_events``, if this kernel has it."""
    try:
        path = os.path.join(tracefs_root(), "kprobe_events")
    except NotSupportedError:
        return None
    return path if os.path.exists(path) else None


def _kernel_config_says(option: str) -> Optional[bool]:
    """Whether the running kernel's config sets ``option`` (None if the config is unreadable)."""
    for path, opener in (("/proc/config.gz", gzip.open), (f"/boot/config-{os.uname().release}", open)):
        try:
            with opener(path, "rt") as f:   # type: ignore[operator]
                for line in f:
                    if line.startswith(f"{option}="):
                        return line.strip().split("=", 1)[1] in ("y", "m")
                    if line.startswith(f"# {option} is not set"):
                        return False
            return False
        except OSError:
            continue
    return None


def kprobes_available() -> bool:
    """True if kprobes can be created (a kprobe PMU or tracefs ``kprobe_events``)."""
    return pmu_type("kprobe") is not None or _kprobe_events() is not None


def _no_kprobes(what: str) -> NotSupportedError:
    config = _kernel_config_says("CONFIG_KPROBES")
    told = ("this kernel was built without kprobes (CONFIG_KPROBES is not set)" if config is False
            else "this kernel offers no kprobes (is CONFIG_KPROBES set?)")
    return NotSupportedError(
        what, f"{told}: there is no kprobe PMU in /sys/bus/event_source/devices and no "
              "kprobe_events in tracefs; use a tracepoint, raw_tp or fentry hook, or run on a "
              "kernel with CONFIG_KPROBES=y (tools/vmtest runs the kprobe tests in guest kernels)")


def attach_kprobe(prog: Any, func: str, offset: int = 0, retprobe: bool = False, *,
                  cookie: int = 0, maxactive: int = 0, legacy: Optional[bool] = None) -> Link:
    """Attach ``prog`` (a kprobe program) to kernel function ``func`` (+ ``offset`` bytes).

    ``retprobe`` fires on return.  ``cookie`` is what ``bpf_get_attach_cookie()``
    returns (5.15+).  ``maxactive`` (kretprobes) bounds concurrent instances and
    needs the tracefs route, which ``legacy=True`` also forces.
    """
    kind = "kretprobe" if retprobe else "kprobe"
    where = f"{func}+{offset:#x}" if offset else func
    what = f"{kind} {where}"
    if retprobe and offset:
        raise BPFError(f"{what}: a kretprobe goes on a function entry, not at an offset")
    if maxactive and not retprobe:
        raise BPFError(f"{what}: maxactive applies to kretprobes only")
    if not kprobes_available():
        raise _no_kprobes(what)
    pfd = None
    if legacy is not True and not maxactive:
        pfd = open_probe("kprobe", func, offset, retprobe=retprobe, context=what)
        if pfd is None and legacy is False:
            raise NotSupportedError("the kprobe perf PMU", "/sys/bus/event_source/devices/kprobe "
                                    "does not exist", min_kernel="4.17")
    resources: Tuple[Any, ...] = ()
    if pfd is None:
        if _kprobe_events() is None:
            raise NotSupportedError(f"{what} through tracefs", "tracefs has no kprobe_events")
        letter = f"r{maxactive}" if retprobe and maxactive else ("r" if retprobe else "p")
        probe = TracefsProbe("kprobe_events", f"{letter} {func}+{offset}", func)
        try:
            pfd = probe.open(context=what)
        except BaseException:
            probe.close()
            raise
        resources = (probe,)
    return attach_perf_fd(prog, pfd, kind=kind, target=where, cookie=cookie, resources=resources)


@functools.lru_cache(maxsize=None)
def _kallsyms_has(name: str) -> bool:
    try:
        with open("/proc/kallsyms") as f:     # "ADDRESS TYPE NAME [MODULE]" per line
            return any(line.split()[2:3] == [name] for line in f)
    except OSError:
        return False


def syscall_function(syscall: str) -> str:
    """The kernel function behind ``syscall`` ("getppid" -> "__x64_sys_getppid" on x86-64),
    as libbpf picks it for ``ksyscall``: the architecture's syscall wrapper when the
    kernel has one, else ``sys_NAME``."""
    prefix = _SYSCALL_PREFIX.get(os.uname().machine, "")
    wrapped = f"{prefix}sys_{syscall}"
    return wrapped if prefix and _kallsyms_has(wrapped) else f"sys_{syscall}"


def attach_ksyscall(prog: Any, syscall: str, retprobe: bool = False, *, cookie: int = 0) -> Link:
    """A kprobe (or kretprobe) on the entry function of ``syscall`` ("getppid")."""
    if not kprobes_available():
        raise _no_kprobes(f"{'kretsyscall' if retprobe else 'ksyscall'} {syscall}")
    link = attach_kprobe(prog, syscall_function(syscall), retprobe=retprobe, cookie=cookie)
    link.kind = "kretsyscall" if retprobe else "ksyscall"
    return link


def _traceable_functions() -> List[str]:
    """Kernel functions that can be probed: tracefs ``available_filter_functions``, or the
    text symbols of ``/proc/kallsyms`` where that file is not readable."""
    path = os.path.join(tracefs_root(), "available_filter_functions")
    try:
        with open(path) as f:
            return [line.split()[0] for line in f if line.strip()]
    except OSError:
        pass
    try:
        with open("/proc/kallsyms") as f:
            return [p[2] for p in (line.split() for line in f) if len(p) >= 3 and p[1] in "tT"]
    except OSError as e:
        raise NotSupportedError("kprobe.multi patterns", f"cannot read {path} or /proc/kallsyms: "
                                f"{e.strerror or e}") from None


def attach_kprobe_multi(prog: Any, pattern: Optional[str] = None, *,
                        syms: Optional[Sequence[str]] = None, retprobe: bool = False,
                        cookies: Optional[Sequence[int]] = None) -> Link:
    """One ``kprobe.multi`` link on every function matching glob ``pattern`` (from tracefs
    ``available_filter_functions``; a pattern without wildcards is one function) or named
    in ``syms``.  ``cookies`` pairs one cookie with each function.  Needs 5.18+ with
    CONFIG_FPROBE."""
    kind = "kretprobe.multi" if retprobe else "kprobe.multi"
    if (pattern is None) == (syms is None):
        raise BPFError(f"{kind} for program {prog.name}: give a pattern or syms, not both")
    if pattern is not None and not any(c in pattern for c in "*?["):
        names = [pattern]
    elif pattern is not None:
        names = sorted({n for n in _traceable_functions() if fnmatch.fnmatchcase(n, pattern)})
        if not names:
            raise BPFError(f"{kind} {pattern}: no kernel function matches")
    else:
        names = list(syms or ())
    target = pattern or f"{len(names)} functions"
    try:
        fd = _sys.link_create(prog.fd, 0, AttachType.TRACE_KPROBE_MULTI,
                              kprobe_multi_syms=names, kprobe_multi_cookies=cookies,
                              kprobe_multi_flags=_KPROBE_MULTI_RETURN if retprobe else 0,
                              context=f"program {prog.name} {kind} {target}")
    except SyscallError as e:
        if e.errno in (95, 524):     # EOPNOTSUPP/ENOTSUPP: no fprobe
            raise NotSupportedError(f"{kind} links", "this kernel has no fprobe "
                                    "(CONFIG_FPROBE is not set)", min_kernel="5.18") from e
        if e.errno == 22 and kernel_older_than(5, 18):   # EINVAL: unknown attach type
            raise NotSupportedError(f"{kind} links", f"Linux {os.uname().release} predates them",
                                    min_kernel="5.18") from e
        raise
    return Link(fd, program=prog, kind=kind, target=target)


def _target(prog: Any, target: Optional[str], kind: str) -> str:
    target = target or (prog.spec.attach_to if prog.spec is not None else "")
    if not target:
        raise BPFError(f"{kind} program {prog.name} has no target in its section name: "
                       f"call attach(target=...)")
    return target


def _split_offset(target: str) -> Tuple[str, int]:
    func, _, off = target.partition("+")
    try:
        return func, int(off, 0) if off else 0
    except ValueError:
        raise BPFError(f"kprobe target {target!r} is not FUNC[+OFFSET]") from None


@register("kprobe")
def _auto_kprobe(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    func, off = _split_offset(_target(prog, target, "kprobe"))
    return attach_kprobe(prog, func, kw.pop("offset", off), **kw)


@register("kretprobe")
def _auto_kretprobe(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    return attach_kprobe(prog, _target(prog, target, "kretprobe"), retprobe=True, **kw)


@register("ksyscall")
def _auto_ksyscall(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    return attach_ksyscall(prog, _target(prog, target, "ksyscall"), **kw)


@register("kretsyscall")
def _auto_kretsyscall(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    return attach_ksyscall(prog, _target(prog, target, "kretsyscall"), retprobe=True, **kw)


@register("kprobe_multi")
def _auto_kprobe_multi(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    return attach_kprobe_multi(prog, _target(prog, target, "kprobe.multi"), **kw)


@register("kretprobe_multi")
def _auto_kretprobe_multi(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    return attach_kprobe_multi(prog, _target(prog, target, "kretprobe.multi"), retprobe=True, **kw)
