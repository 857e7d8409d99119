"""BPF trampoline programs: fentry, fexit, fmod_ret, lsm (and lsm.s), and freplace.

A tracing or LSM program names its target at *load* time (``attach_btf_id``,
resolved from the section name by the loader), so attaching only creates the
link: ``BPF_RAW_TRACEPOINT_OPEN`` with no name (5.5+), or ``BPF_LINK_CREATE``
with the program's attach type when a BPF cookie is wanted (5.19+ for
``tracing.cookie``).

freplace (``SEC("freplace/FUNC")``, program type EXT) replaces global function
FUNC of another, already loaded BPF program.  The target is also fixed at load
time, and the loader must pass, in ``BPF_PROG_LOAD``:

* ``attach_prog_fd``: the target program's fd;
* ``attach_btf_id``: the id of ``FUNC`` (kind FUNC) in the *target program's*
  BTF -- :func:`target_func_btf_id` computes it (``prog_info.btf_id`` ->
  ``BTF_GET_FD_BY_ID`` -> the raw BTF -> the FUNC by name);
* ``prog_btf_fd`` with ``func_info`` (the kernel refuses an extension without
  BTF: it checks that both functions have the same prototype);
* no ``expected_attach_type`` (0).

Attaching such a program to its load-time target needs no arguments
(:func:`attach_freplace` with ``target=None``); giving ``target``/``func``
attaches the same extension to another program with a compatible function
(``BPF_LINK_CREATE`` with ``target_fd`` and ``target_btf_id``, 5.10+).
"""

from __future__ import annotations

from typing import Any, Optional

from .. import sys as _sys
from ..consts import ProgType
from ..errors import BPFError, NotSupportedError, SyscallError
from ..progs.targets import target_func_btf_id
from .base import Link, register

__all__ = ["attach_tracing", "attach_lsm", "attach_freplace", "target_func_btf_id"]

_TRACING_KINDS = ("fentry", "fexit", "fmod_ret", "lsm")


def _kind(prog: Any) -> str:
    spec = prog.spec
    if spec is not None and spec.attach_kind:
        return spec.attach_kind
    return "lsm" if prog.type == ProgType.LSM else "tracing"


def attach_tracing(prog: Any, *, cookie: int = 0) -> Link:
    """Attach a loaded fentry/fexit/fmod_ret/lsm/lsm.s program to the function it was
    loaded for.  ``cookie`` (``bpf_get_attach_cookie()``) needs Linux 5.19+."""
    kind = _kind(prog)
    target = prog.spec.attach_to if prog.spec is not None else ""
    ctx = f"program {prog.name}"
    if cookie:
        if prog.spec is None:
            raise BPFError(f"{ctx}: a tracing cookie needs the program's spec (its attach type)")
        try:
            fd = _sys.link_create(prog.fd, 0, prog.spec.expected_attach_type,
                                  tracing_cookie=cookie, context=ctx)
        except SyscallError as e:
            if e.errno in (22, 95, 524):
                raise NotSupportedError(f"BPF cookie for {kind} {target}",
                                        "this kernel cannot create tracing links with a cookie",
                                        min_kernel="5.19") from e
            raise
    else:
        fd = _sys.raw_tracepoint_open(None, prog.fd, context=ctx)
    return Link(fd, program=prog, kind=kind, target=target)


def attach_lsm(prog: Any, *, cookie: int = 0) -> Link:
    """Attach an ``SEC("lsm/HOOK")`` or ``SEC("lsm.s/HOOK")`` program (same as
    :func:`attach_tracing`; the program then runs for every process)."""
    return attach_tracing(prog, cookie=cookie)


def attach_freplace(prog: Any, target: Optional[Any] = None, func: Optional[str] = None) -> Link:
    """Attach extension ``prog`` (``SEC("freplace/FUNC")``).

    Without ``target`` it replaces the function it was loaded against.  With
    ``target`` (a loaded Program or a program fd) it replaces ``func`` (default:
    the section's FUNC) in that program instead.  Closing the link restores the
    original function.
    """
    ctx = f"program {prog.name}"
    spec_func = prog.spec.attach_to if prog.spec is not None else ""
    if target is None:
        fd = _sys.raw_tracepoint_open(None, prog.fd, context=ctx)
        return Link(fd, program=prog, kind="freplace", target=spec_func)
    func = func or spec_func
    if not func:
        raise BPFError(f"{ctx}: name the function to replace (func=...)")
    target_fd = target if isinstance(target, int) else target.fd
    btf_id = target_func_btf_id(target, func)
    fd = _sys.link_create(prog.fd, target_fd, 0, target_btf_id=btf_id, context=ctx)
    tname = getattr(target, "name", f"fd {target_fd}")
    return Link(fd, program=prog, kind="freplace", target=f"{tname}:{func}")


@register(*_TRACING_KINDS)
def _auto_tracing(prog: Any, cookie: int = 0, **kw: Any) -> Link:
    if kw:
        raise BPFError(f"{_kind(prog)} program {prog.name}: unexpected attach arguments "
                       f"{', '.join(sorted(kw))} (the target is fixed at load time)")
    return attach_tracing(prog, cookie=cookie)


@register("freplace")
def _auto_freplace(prog: Any, target: Optional[Any] = None, func: Optional[str] = None) -> Link:
    return attach_freplace(prog, target, func)
