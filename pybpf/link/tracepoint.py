"""Tracepoints (perf event + BPF perf link), raw tracepoints and tp_btf."""

from __future__ import annotations

from typing import Any, Optional

from .. import sys as _sys
from ..errors import NotSupportedError, SyscallError
from .base import Link, register
from .tracefs import tracepoint_id

__all__ = ["attach_raw_tracepoint", "attach_tracepoint"]


def attach_raw_tracepoint(prog: Any, name: Optional[str] = None) -> Link:
    """raw_tp/NAME (``name`` given) or tp_btf (``name`` None: the target is the program's BTF id).

    Raw tracepoint links are cheap to close (no perf event), which matters for
    fast shutdown: a classic tracepoint link costs ~75 ms in the kernel to destroy.
    """
    fd = _sys.raw_tracepoint_open(name, prog.fd, context=f"program {prog.name}")
    target = name or (prog.spec.attach_to if prog.spec is not None else "")
    return Link(fd, program=prog, kind="raw_tp" if name else "tp_btf", target=target)


def attach_tracepoint(prog: Any, category: str, name: str, *, cookie: int = 0) -> Link:
    """tracepoint/CATEGORY/NAME: a perf event on the tracepoint, then a BPF perf link
    (falling back to PERF_EVENT_IOC_SET_BPF on kernels without perf links, < 5.15)."""
    from ..consts import AttachType, PerfType
    tp_id = tracepoint_id(category, name)
    # One event (CPU 0, every task) is enough: the program joins the tracepoint's own
    # program array, which runs on every CPU.  No sampling (period 0), as libbpf: a program
    # returning non-zero then costs a count, not a perf sample nobody reads.
    pfd = _sys.perf_event_open(PerfType.TRACEPOINT, tp_id, pid=-1, cpu=0, sample_period=0,
                               wakeup_events=0, context=f"tracepoint {category}/{name}")
    target = f"{category}/{name}"
    try:
        try:
            lfd = _sys.link_create(prog.fd, pfd.fileno(), AttachType.PERF_EVENT,
                                   perf_event_bpf_cookie=cookie, context=f"program {prog.name}")
            return Link(lfd, program=prog, kind="tracepoint", target=target, extra=(pfd,))
        except SyscallError as e:
            if e.errno not in (22, 95, 524):  # EINVAL/EOPNOTSUPP/ENOTSUPP: no perf links
                raise
            _sys.perf_event_set_bpf(pfd.fileno(), prog.fd, context=f"program {prog.name}")
            _sys.perf_event_enable(pfd.fileno(), context=f"program {prog.name}")
            return Link(pfd, program=prog, kind="tracepoint", target=target, is_bpf_link=False)
    except BaseException:
        pfd.close()
        raise


@register("raw_tp")
def _auto_raw_tp(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    target = target or prog.spec.attach_to
    if not target:
        raise NotSupportedError(f"attaching {prog.name}", "raw_tp needs a tracepoint name: "
                                "SEC(\"raw_tp/NAME\") or attach(target=NAME)")
    return attach_raw_tracepoint(prog, target)


@register("tp_btf")
def _auto_tp_btf(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    return attach_raw_tracepoint(prog, None)


@register("tracepoint")
def _auto_tracepoint(prog: Any, target: Optional[str] = None, **kw: Any) -> Link:
    target = target or prog.spec.attach_to
    cat, _, name = (target or "").partition("/")
    if not name:
        raise NotSupportedError(f"attaching {prog.name}", "tracepoint target must be CATEGORY/NAME")
    return attach_tracepoint(prog, cat, name, **kw)
