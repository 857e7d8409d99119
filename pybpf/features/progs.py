"""Probes that load a tiny program: program types, helpers per program type, kfuncs.

Program types are probed as libbpf's ``libbpf_probe_bpf_prog_type`` does:
``r0 = 0; exit`` with the load attributes each type insists on.  Tracing,
LSM and extension programs need an attach target; they are loaded against
BTF id 1 (an INT in every vmlinux), which a kernel that knows the type
refuses with a recognisable verifier message rather than EINVAL "unknown
type".  Struct_ops programs without a struct answer ENOTSUPP once the type
exists.

Helpers are probed as bpftool does: a program of the type calling the
helper with its arguments unset.  The verifier names the outcome:
``invalid func unknown#N`` (no such helper in this kernel),
``unknown func bpf_x#N`` or ``program of this type cannot use helper``
(known, not allowed here), anything else (say, a bad argument) means the
call itself is allowed.
"""

from __future__ import annotations

import errno
from typing import Any, Callable, Dict, Optional, Tuple

from .. import sys as _sys
from ..consts import AttachType, ProgType
from ..errors import BPFError, SyscallError
from . import insns
from .result import ENOTSUPP, Code, HelperStatus, Probe, errname, log_text, refused_or_raise

__all__ = ["probe_prog_type", "probe_helper", "probe_kfunc", "load_attrs", "try_load",
           "helper_probe", "ProbeError"]

_SLEEPABLE = 1 << 4     # BPF_F_SLEEPABLE
_LOG_SIZE = 4096
_BTF_TARGET_TYPES = (ProgType.TRACING, ProgType.LSM, ProgType.EXT)
# Kernel options without which a program type is refused as unknown.
_CONFIG = {ProgType.LIRC_MODE2: "CONFIG_BPF_LIRC_MODE2", ProgType.LSM: "CONFIG_BPF_LSM",
           ProgType.LWT_IN: "CONFIG_LWTUNNEL_BPF", ProgType.LWT_OUT: "CONFIG_LWTUNNEL_BPF",
           ProgType.LWT_XMIT: "CONFIG_LWTUNNEL_BPF", ProgType.LWT_SEG6LOCAL: "CONFIG_IPV6_SEG6_BPF",
           ProgType.NETFILTER: "CONFIG_NETFILTER_BPF_LINK", ProgType.KPROBE: "CONFIG_BPF_EVENTS",
           ProgType.TRACEPOINT: "CONFIG_BPF_EVENTS", ProgType.PERF_EVENT: "CONFIG_BPF_EVENTS",
           ProgType.CGROUP_SKB: "CONFIG_CGROUP_BPF", ProgType.CGROUP_SOCK: "CONFIG_CGROUP_BPF",
           ProgType.SK_SKB: "CONFIG_BPF_STREAM_PARSER", ProgType.SK_MSG: "CONFIG_BPF_STREAM_PARSER"}


class ProbeError(BPFError):
    """A question no tiny program can answer (e.g. helpers of struct_ops programs)."""


def load_attrs(prog_type: ProgType) -> Dict[str, Any]:
    """The ``prog_load`` keyword arguments a minimal program of ``prog_type`` needs."""
    if prog_type == ProgType.CGROUP_SOCK_ADDR:
        return {"expected_attach_type": AttachType.CGROUP_INET4_CONNECT}
    if prog_type == ProgType.CGROUP_SOCKOPT:
        return {"expected_attach_type": AttachType.CGROUP_GETSOCKOPT}
    if prog_type == ProgType.SK_LOOKUP:
        return {"expected_attach_type": AttachType.SK_LOOKUP}
    if prog_type == ProgType.LIRC_MODE2:
        return {"expected_attach_type": AttachType.LIRC_MODE2}
    if prog_type == ProgType.NETFILTER:
        return {"expected_attach_type": AttachType.NETFILTER}
    if prog_type == ProgType.KPROBE:
        return {"kern_version": insns.kernel_version_code()}
    if prog_type == ProgType.SYSCALL:
        return {"prog_flags": _SLEEPABLE}
    if prog_type == ProgType.TRACING:
        return {"expected_attach_type": AttachType.TRACE_FENTRY, "attach_btf_id": 1}
    if prog_type == ProgType.LSM:
        return {"expected_attach_type": AttachType.LSM_MAC, "attach_btf_id": 1}
    if prog_type == ProgType.EXT:
        return {"attach_btf_id": 1}
    return {}


def try_load(prog_type: int, code: bytes, what: str, *, log: bool = False,
             **attrs: Any) -> Tuple[Optional[SyscallError], str]:
    """Load and close a program; returns (the error or None, the verifier log text)."""
    buf = bytearray(_LOG_SIZE) if log else None
    try:
        fd = _sys.prog_load(prog_type, code, "GPL", log_level=1 if log else 0, log_buf=buf,
                            context=f"feature probe {what}", **attrs)
    except SyscallError as e:
        if e.errno == errno.ENOSPC and buf is not None:  # log overflow: answer without it
            return try_load(prog_type, code, what, log=False, **attrs)
        return e, log_text(buf) if buf is not None else ""
    fd.close()
    return None, log_text(buf) if buf is not None else ""


def _last_line(log: str) -> str:
    lines = [l.strip() for l in log.splitlines()
             if l.strip() and not l.startswith(("processed ", "verification time", "stack depth"))]
    return lines[-1] if lines else ""


def probe_prog_type(prog_type: ProgType) -> Probe:
    """Whether programs of ``prog_type`` can be loaded here."""
    what = f"program type {prog_type.name.lower()}"
    needs_log = prog_type in _BTF_TARGET_TYPES
    err, log = try_load(prog_type, insns.RETURN_0, what, log=needs_log, **load_attrs(prog_type))
    if err is None:
        return Probe.yes()
    if err.errno == errno.EPERM:
        return refused_or_raise(err, what, prog_type)
    if needs_log:
        expected = "Cannot replace kernel functions" if prog_type == ProgType.EXT \
            else "attach_btf_id 1 is not a"
        if err.errno == errno.EINVAL and expected in log:
            return Probe.yes()
    if prog_type == ProgType.STRUCT_OPS and err.errno == ENOTSUPP:
        return Probe.yes()
    if err.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.E2BIG, ENOTSUPP):
        detail = _last_line(log)
        option = _CONFIG.get(prog_type)
        return Probe.no(f"BPF_PROG_LOAD refused the type with {errname(err)}"
                        + (f" ({detail})" if detail else "")
                        + (f": too old a kernel, or built without {option}" if option else ""))
    raise err


# -- helpers --------------------------------------------------------------------------------

def _helper_attrs(prog_type: ProgType, kernel_btf: Callable[[], Any]) -> Dict[str, Any]:
    """Load attributes for a helper-calling program of ``prog_type``.

    Tracing and LSM programs need a real target: fentry on ``bpf_fentry_test1``
    (built into every kernel with BPF test runs) and the ``file_mprotect`` hook.
    """
    if prog_type == ProgType.TRACING:
        target, attach = "bpf_fentry_test1", AttachType.TRACE_FENTRY
    elif prog_type == ProgType.LSM:
        target, attach = "bpf_lsm_file_mprotect", AttachType.LSM_MAC
    elif prog_type in (ProgType.EXT, ProgType.STRUCT_OPS):
        raise ProbeError(f"helpers of {prog_type.name.lower()} programs cannot be probed with "
                         "a tiny program: they need a target program or kernel struct")
    else:
        return load_attrs(prog_type)
    from ..btf import Kind
    ids = kernel_btf().find(target, Kind.FUNC)
    if not ids:
        raise ProbeError(f"helpers of {prog_type.name.lower()} programs: kernel BTF has no "
                         f"{target} to attach the probe to")
    return {"expected_attach_type": attach, "attach_btf_id": ids[0]}


def probe_helper(prog_type: ProgType, helper_id: int,
                 kernel_btf: Callable[[], Any]) -> Tuple[HelperStatus, str]:
    """How ``prog_type`` programs stand with helper ``helper_id``, and the verifier's line.

    The caller checks first that the program type loads at all.
    """
    what = f"helper #{helper_id} in {prog_type.name.lower()} programs"
    code = insns.call_and_return(helper_id)
    err, log = try_load(prog_type, code, what, log=True, **_helper_attrs(prog_type, kernel_btf))
    if err is None:
        return HelperStatus.AVAILABLE, ""
    if err.errno == errno.EPERM:
        refused_or_raise(err, what, prog_type)  # raises without capabilities
        return HelperStatus.PROG_TYPE, "refused by this kernel (EPERM)"
    for line in log.splitlines():
        if "invalid func unknown#" in line:
            return HelperStatus.UNKNOWN, line.strip()
        if "unknown func " in line or "program of this type cannot use helper " in line:
            return HelperStatus.NOT_ALLOWED, line.strip()
    if err.errno in (errno.EINVAL, errno.EACCES, errno.EFAULT, errno.EOPNOTSUPP, ENOTSUPP):
        return HelperStatus.AVAILABLE, ""  # rejected for its (unset) arguments: the call is fine
    raise err


def probe_kfunc(prog_type: ProgType, name: str,
                kernel_btf: Callable[[], Any]) -> Tuple[HelperStatus, str]:
    """How ``prog_type`` programs stand with kernel function ``name`` (a vmlinux kfunc)."""
    from ..btf import Kind
    ids = kernel_btf().find(name, Kind.FUNC)
    if not ids:
        return HelperStatus.UNKNOWN, f"kernel BTF has no function {name}"
    what = f"kfunc {name} in {prog_type.name.lower()} programs"
    code = insns.program([insns.call_kfunc(ids[0]), insns.mov_imm(0, 0), insns.exit_()])
    err, log = try_load(prog_type, code, what, log=True, **_helper_attrs(prog_type, kernel_btf))
    if err is None:
        return HelperStatus.AVAILABLE, ""
    if err.errno == errno.EPERM:
        refused_or_raise(err, what, prog_type)
        return HelperStatus.PROG_TYPE, "refused by this kernel (EPERM)"
    if f"calling kernel function {name} is not allowed" in log:
        return HelperStatus.NOT_ALLOWED, _last_line(log)
    if f"call {name}#" in log:
        return HelperStatus.AVAILABLE, ""  # recognised; refused for its arguments only
    if err.errno in (errno.EINVAL, errno.EACCES, errno.EOPNOTSUPP, ENOTSUPP):
        return HelperStatus.UNKNOWN, _last_line(log) or f"BPF_PROG_LOAD: {errname(err)}"
    raise err


def helper_probe(status: HelperStatus, reason: str) -> Probe:
    """A helper/kfunc status as a yes/no :class:`Probe` (for caching and require_*)."""
    if status == HelperStatus.AVAILABLE:
        return Probe.yes()
    code = {HelperStatus.NOT_ALLOWED: Code.NOT_ALLOWED, HelperStatus.UNKNOWN: Code.MISSING,
            HelperStatus.PROG_TYPE: Code.PROG_TYPE}[status]
    return Probe.no(reason, code)
