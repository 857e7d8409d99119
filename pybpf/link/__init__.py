"""Attaching programs: links that detach on close.

This module covers the tracing hooks this kernel offers for auto-attach from
SEC() names (raw_tp, tp_btf, tracepoint); the other attach kinds are
recognised and raise :class:`~pybpf.NotSupportedError` naming what is missing.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from .. import sys as _sys
from ..errors import NotSupportedError, SyscallError
from ..sys.fd import FD
from .tracefs import tracepoint_id

__all__ = ["Link", "attach_program", "attach_raw_tracepoint", "attach_tracepoint"]


class Link:
    """An attachment of a program; closing it detaches the program."""

    def __init__(self, fd: FD, *, program: Any, kind: str, target: str, extra: Optional[FD] = None):
        self._fd = fd
        self._extra = extra          # the perf event of a tracepoint attachment
        self.program = program       # keep the program alive while attached
        self.kind = kind
        self.target = target

    @property
    def fd(self) -> int:
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def close(self) -> None:
        """Detach (closing the link fd; for tracepoints also the perf event)."""
        self._fd.close()
        if self._extra is not None:
            self._extra.close()

    def pin(self, path: str) -> None:
        _sys.obj_pin(self.fd, os.fspath(path), context=f"link {self.kind}:{self.target}")

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pybpf.Link {self.kind}:{self.target} prog={getattr(self.program, 'name', '?')}>"


def attach_raw_tracepoint(prog: Any, name: Optional[str]) -> Link:
    """raw_tp/NAME (name given) and tp_btf (name None: the target is the program's BTF id)."""
    fd = _sys.raw_tracepoint_open(name, prog.fd, context=f"program {prog.name}")
    return Link(fd, program=prog, kind="raw_tp" if name else "tp_btf", target=name or prog.spec.attach_to)


def attach_tracepoint(prog: Any, category: str, name: str) -> Link:
    """tracepoint/CATEGORY/NAME: a perf event on the tracepoint, then a BPF perf link."""
    from ..consts import AttachType
    tp_id = tracepoint_id(category, name)
    from ..consts import PerfType
    pfd = _sys.perf_event_open(PerfType.TRACEPOINT, tp_id, pid=-1, cpu=0, sample_period=1,
                               wakeup_events=1, context=f"tracepoint {category}/{name}")
    try:
        try:
            lfd = _sys.link_create(prog.fd, pfd.fileno(), AttachType.PERF_EVENT,
                                   context=f"program {prog.name}")
            return Link(lfd, program=prog, kind="tracepoint", target=f"{category}/{name}", extra=pfd)
        except SyscallError:
            # Kernels before 5.15 have no perf links: attach through the perf event ioctl.
            _sys.perf_event_set_bpf(pfd.fileno(), prog.fd, context=f"program {prog.name}")
            return Link(pfd, program=prog, kind="tracepoint", target=f"{category}/{name}")
    except BaseException:
        pfd.close()
        raise


def attach_program(prog: Any, *args: Any, **kwargs: Any) -> Link:
    """Attach ``prog`` as its section name says (``SEC("raw_tp/sys_enter")`` ...)."""
    spec = prog.spec
    kind = spec.attach_kind if spec is not None else None
    target = kwargs.pop("target", None) or (args[0] if args else None) or (spec.attach_to if spec else "")
    if kind == "raw_tp":
        if not target:
            raise NotSupportedError(f"attaching {prog.name}", "raw_tp needs a tracepoint name")
        return attach_raw_tracepoint(prog, target)
    if kind == "tp_btf":
        return attach_raw_tracepoint(prog, None)
    if kind == "tracepoint":
        cat, _, name = target.partition("/")
        if not name:
            raise NotSupportedError(f"attaching {prog.name}", "tracepoint target must be CATEGORY/NAME")
        return attach_tracepoint(prog, cat, name)
    if kind in ("kprobe", "kretprobe"):
        raise NotSupportedError(f"{kind} attach of {prog.name}",
                                "kprobe attach lands with the attach issue (and this kernel has CONFIG_KPROBES off)")
    raise NotSupportedError(f"auto-attach of {prog.name} ({spec.section if spec else '?'})",
                            f"attach kind {kind!r} is not implemented yet")
