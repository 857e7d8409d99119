"""Attach type probes: does the kernel know an attach type, and attach it through a link?

Nothing is attached to anything: each probe loads a ``r0 = 0; exit``
program with the attach type as its expected attach type, then asks
``BPF_LINK_CREATE`` (and, for the families that have it, ``BPF_PROG_ATTACH``)
to attach it to a target that cannot exist.  A kernel that knows the attach
type gets as far as looking the target up and fails there, with an errno
that differs from the EINVAL of an unknown attach type:

* cgroup, sockmap, netns (flow dissector, sk_lookup) and perf event
  targets: fd -1 -> EBADF;
* tcx and netkit: ifindex 0xffffffff -> ENODEV;
* XDP links: ``lo`` in hardware-offload mode, which ``lo`` lacks -> EOPNOTSUPP;
* netfilter: protocol family 255 -> EAFNOSUPPORT;
* kprobe_multi/kprobe_session: a symbol no kernel has -> ENOENT/ESRCH
  (EOPNOTSUPP: the kernel was built without fprobe);
* uprobe_multi/uprobe_session: path ``/`` (a directory) -> EBADF, as libbpf probes it.

Types attached by other means are probed as the kernel checks them:
tracing/LSM ones by loading against BTF id 1 (see :mod:`.progs`),
sk_reuseport ones at load (the kernel validates the expected attach type),
devmap/cpumap programs by creating a map with program slots, struct_ops
through its map type.
"""

from __future__ import annotations

import errno
from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple

from .. import sys as _sys
from ..consts import AttachType as A, MapType, ProgType as P
from ..errors import SyscallError
from . import insns
from .progs import load_attrs, try_load
from .result import Code, Probe, errname, refused_or_raise

__all__ = ["attach_prog_type", "probe_attach_type", "PROBED_ATTACH_TYPES"]

_BAD_FD = 0xFFFFFFFF      # -1 as the kernel's u32 fd fields read it
_BAD_IFINDEX = 0xFFFFFFFF
_LO_IFINDEX = 1           # loopback is ifindex 1 in every network namespace
_XDP_FLAGS_HW_MODE = 1 << 3

_PROG_TYPES: Dict[A, P] = {}
for _at, _pt in (
    ((A.CGROUP_INET_INGRESS, A.CGROUP_INET_EGRESS), P.CGROUP_SKB),
    ((A.CGROUP_INET_SOCK_CREATE, A.CGROUP_INET4_POST_BIND, A.CGROUP_INET6_POST_BIND,
      A.CGROUP_INET_SOCK_RELEASE), P.CGROUP_SOCK),
    ((A.CGROUP_SOCK_OPS,), P.SOCK_OPS),
    ((A.CGROUP_DEVICE,), P.CGROUP_DEVICE),
    ((A.CGROUP_INET4_BIND, A.CGROUP_INET6_BIND, A.CGROUP_INET4_CONNECT, A.CGROUP_INET6_CONNECT,
      A.CGROUP_UDP4_SENDMSG, A.CGROUP_UDP6_SENDMSG, A.CGROUP_UDP4_RECVMSG,
      A.CGROUP_UDP6_RECVMSG, A.CGROUP_INET4_GETPEERNAME, A.CGROUP_INET6_GETPEERNAME,
      A.CGROUP_INET4_GETSOCKNAME, A.CGROUP_INET6_GETSOCKNAME, A.CGROUP_UNIX_CONNECT,
      A.CGROUP_UNIX_SENDMSG, A.CGROUP_UNIX_RECVMSG, A.CGROUP_UNIX_GETPEERNAME,
      A.CGROUP_UNIX_GETSOCKNAME), P.CGROUP_SOCK_ADDR),
    ((A.CGROUP_SYSCTL,), P.CGROUP_SYSCTL),
    ((A.CGROUP_GETSOCKOPT, A.CGROUP_SETSOCKOPT), P.CGROUP_SOCKOPT),
    ((A.SK_SKB_STREAM_PARSER, A.SK_SKB_STREAM_VERDICT, A.SK_SKB_VERDICT), P.SK_SKB),
    ((A.SK_MSG_VERDICT,), P.SK_MSG),
    ((A.LIRC_MODE2,), P.LIRC_MODE2),
    ((A.FLOW_DISSECTOR,), P.FLOW_DISSECTOR),
    ((A.SK_LOOKUP,), P.SK_LOOKUP),
    ((A.TRACE_RAW_TP, A.TRACE_FENTRY, A.TRACE_FEXIT, A.MODIFY_RETURN, A.TRACE_ITER), P.TRACING),
    ((A.LSM_MAC, A.LSM_CGROUP), P.LSM),
    ((A.XDP, A.XDP_DEVMAP, A.XDP_CPUMAP), P.XDP),
    ((A.SK_REUSEPORT_SELECT, A.SK_REUSEPORT_SELECT_OR_MIGRATE), P.SK_REUSEPORT),
    ((A.PERF_EVENT,), P.TRACEPOINT),
    ((A.TRACE_KPROBE_MULTI, A.TRACE_UPROBE_MULTI, A.TRACE_KPROBE_SESSION,
      A.TRACE_UPROBE_SESSION), P.KPROBE),
    ((A.STRUCT_OPS,), P.STRUCT_OPS),
    ((A.NETFILTER,), P.NETFILTER),
    ((A.TCX_INGRESS, A.TCX_EGRESS, A.NETKIT_PRIMARY, A.NETKIT_PEER), P.SCHED_CLS),
):
    for _a in _at:
        _PROG_TYPES[_a] = _pt

PROBED_ATTACH_TYPES = tuple(a for a in A if a in _PROG_TYPES)
"""Every attach type pybpf knows how to probe, in kernel order."""

_CGROUP = frozenset(a for a in _PROG_TYPES if a.name.startswith("CGROUP_"))
_SOCKMAP = frozenset({A.SK_SKB_STREAM_PARSER, A.SK_SKB_STREAM_VERDICT, A.SK_SKB_VERDICT,
                      A.SK_MSG_VERDICT})
_BAD_FD_LINKS = _CGROUP | _SOCKMAP | {A.FLOW_DISSECTOR, A.SK_LOOKUP, A.PERF_EVENT}
_BTF_TARGET = frozenset({A.TRACE_RAW_TP, A.TRACE_FENTRY, A.TRACE_FEXIT, A.MODIFY_RETURN,
                         A.TRACE_ITER, A.LSM_MAC, A.LSM_CGROUP})
_NO_SUCH_SYMBOL = "pybpf_feature_probe_no_such_symbol"


def attach_prog_type(attach_type: A) -> Optional[P]:
    """The program type that attaches with ``attach_type`` (None if pybpf does not know)."""
    return _PROG_TYPES.get(attach_type)


def _link_probe(at: A) -> Tuple[int, Dict[str, Any], FrozenSet[int]]:
    """(target, extra link_create arguments, errnos meaning "known") for ``at``'s link."""
    if at in _BAD_FD_LINKS:
        return _BAD_FD, {}, frozenset({errno.EBADF})
    if at in (A.TCX_INGRESS, A.TCX_EGRESS, A.NETKIT_PRIMARY, A.NETKIT_PEER):
        return _BAD_IFINDEX, {}, frozenset({errno.ENODEV})
    if at == A.XDP:
        return _LO_IFINDEX, {"flags": _XDP_FLAGS_HW_MODE}, frozenset({errno.EOPNOTSUPP})
    if at == A.NETFILTER:
        return 0, {"netfilter_pf": 255, "netfilter_hooknum": 1}, frozenset({errno.EAFNOSUPPORT})
    if at in (A.TRACE_KPROBE_MULTI, A.TRACE_KPROBE_SESSION):
        return 0, {"kprobe_multi_syms": [_NO_SUCH_SYMBOL]}, frozenset({errno.ENOENT, errno.ESRCH})
    if at in (A.TRACE_UPROBE_MULTI, A.TRACE_UPROBE_SESSION):
        return 0, {"uprobe_multi_path": "/", "uprobe_multi_offsets": [0]}, \
            frozenset({errno.EBADF})
    raise KeyError(at)


def _try(call: Callable[[], Any]) -> Optional[SyscallError]:
    """Run a link/attach call, closing whatever it created; return its error, if any."""
    try:
        created = call()
    except SyscallError as e:
        return e
    if created is not None:
        created.close()  # the target unexpectedly existed: detach at once
    return None


def _known(err: Optional[SyscallError], ok: FrozenSet[int]) -> bool:
    return err is None or err.errno in ok


# Kernel options without which the kernel answers as if it did not know the attach type.
_CONFIG = {A.NETKIT_PRIMARY: "CONFIG_NETKIT", A.NETKIT_PEER: "CONFIG_NETKIT",
           A.TRACE_KPROBE_MULTI: "CONFIG_FPROBE", A.TRACE_KPROBE_SESSION: "CONFIG_FPROBE",
           A.TRACE_UPROBE_MULTI: "CONFIG_UPROBES", A.TRACE_UPROBE_SESSION: "CONFIG_UPROBES",
           A.NETFILTER: "CONFIG_NETFILTER_BPF_LINK", A.LIRC_MODE2: "CONFIG_BPF_LIRC_MODE2",
           A.SK_SKB_STREAM_PARSER: "CONFIG_BPF_STREAM_PARSER"}


def _unknown(err: SyscallError, what: str, at: A, how: str = "") -> Probe:
    """A failure that is not the "known" errno: a conclusive no, or raise."""
    if err.errno == errno.EPERM:
        return refused_or_raise(err, what, at)
    option = _CONFIG.get(at)
    if err.errno == errno.EOPNOTSUPP:
        return Probe.no(f"{err.call}: EOPNOTSUPP: the kernel was built without "
                        f"{option or 'support for it'}")
    if err.errno in (errno.EINVAL, errno.E2BIG):
        hint = f" or was built without {option}" if option else ""
        return Probe.no(f"{how or err.call + ' refused it'} ({errname(err)}): the kernel does "
                        f"not know this attach type{hint}")
    raise err


def probe_attach_type(at: A, prog_type_probe: Callable[[P], Probe],
                      map_type_probe: Callable[[MapType], Probe]) -> Tuple[Probe, Probe]:
    """(can programs attach with ``at`` at all, can they through ``BPF_LINK_CREATE``)."""
    what = f"attach type {at.name.lower()}"
    pt = _PROG_TYPES[at]
    ptp = prog_type_probe(pt)
    if not ptp.supported:
        no = Probe.no(f"program type {pt.name.lower()} is not supported: {ptp.reason}",
                      Code.PROG_TYPE if ptp.code != Code.REFUSED else Code.REFUSED)
        return no, no
    no_link = Probe.no("attached by other means than BPF_LINK_CREATE")
    if at == A.STRUCT_OPS:
        mp = map_type_probe(MapType.STRUCT_OPS)
        return mp, no_link  # struct_ops links need a registered struct: not probed
    if at in (A.XDP_DEVMAP, A.XDP_CPUMAP):
        return _probe_prog_map(at, what), no_link
    attrs = dict(load_attrs(pt))
    if pt != P.TRACEPOINT:
        attrs["expected_attach_type"] = at
    if at in _BTF_TARGET:
        err, log = try_load(pt, insns.RETURN_1, what, log=True, **attrs)
        if err is None or (err.errno == errno.EINVAL and "attach_btf_id 1 is not a" in log):
            return Probe.yes(), Probe.yes()   # links are the only way to attach these
        p = _unknown(err, what, at)
        return p, p
    try:
        prog = _sys.prog_load(pt, insns.RETURN_1, "GPL", context=f"feature probe {what}",
                              **attrs)
    except SyscallError as e:
        p = _unknown(e, what, at, "BPF_PROG_LOAD refused it as expected attach type")
        return p, p
    try:
        return _probe_with_program(at, prog.fileno(), what)
    finally:
        prog.close()


def _probe_with_program(at: A, prog_fd: int, what: str) -> Tuple[Probe, Probe]:
    if at in (A.SK_REUSEPORT_SELECT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, A.LIRC_MODE2):
        # Attached through setsockopt(SO_ATTACH_REUSEPORT_EBPF) / a lirc device fd; the
        # kernel validated the expected attach type at load.
        return Probe.yes(), Probe.no("attached by other means than BPF_LINK_CREATE")
    target, extra, ok = _link_probe(at)
    ctx = f"feature probe {what}"
    lerr = _try(lambda: _sys.link_create(prog_fd, target, at, context=ctx, **extra))
    link = Probe.yes() if _known(lerr, ok) else _unknown(lerr, what, at)  # type: ignore[arg-type]
    if link.supported or not (at in _CGROUP or at in _SOCKMAP):
        return link, link
    # Older kernels attach these with BPF_PROG_ATTACH only (sockmap links came in 6.10).
    aerr = _try(lambda: _sys.prog_attach(prog_fd, _BAD_FD, at, context=ctx))
    if _known(aerr, frozenset({errno.EBADF})):
        return Probe.yes("BPF_PROG_ATTACH only"), link
    return _unknown(aerr, what, at), link  # type: ignore[arg-type]


def _probe_prog_map(at: A, what: str) -> Probe:
    """Devmap/cpumap programs exist when those maps take program slots (8-byte values)."""
    mt = MapType.DEVMAP if at == A.XDP_DEVMAP else MapType.CPUMAP
    try:
        _sys.map_create(mt, 4, 8, 1, context=f"feature probe {what}").close()
    except SyscallError as e:
        if e.errno == errno.EPERM:
            return refused_or_raise(e, what, mt)
        if e.errno == errno.EINVAL:
            return Probe.no(f"{mt.name.lower()} maps take no program (8-byte values refused)")
        raise
    return Probe.yes()
