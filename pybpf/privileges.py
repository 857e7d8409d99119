"""Privileges BPF needs: capabilities, RLIMIT_MEMLOCK, and the bpffs/tracefs mounts.

* Which capability an operation needs, which ones this process lacks, and a
  sentence saying so (:func:`required_capabilities`, :func:`missing_capabilities`,
  :func:`explain_eperm`), for error messages: EPERM from bpf(2) alone says nothing.
* RLIMIT_MEMLOCK: kernels before 5.11 charge BPF maps and programs to it
  (:func:`memlock_charged`), and the default 64 KiB-8 MiB is soon exhausted;
  :func:`raise_memlock_limit` lifts it there and leaves newer kernels alone.
* :func:`ensure_bpffs` / :func:`ensure_tracefs`: mount them when absent and
  permitted, or say how.

The kernel's rules (``kernel/bpf/syscall.c``, 5.8+): every program and map
needs CAP_BPF; tracing program types (kprobe, tracepoint, perf_event, raw_tp,
tracing, lsm, struct_ops, ext) also CAP_PERFMON; networking program types and
socket-redirect/device map types also CAP_NET_ADMIN; CAP_SYS_ADMIN stands in
for CAP_BPF and CAP_PERFMON.  Before 5.8 (no CAP_BPF) CAP_SYS_ADMIN was needed
for everything but socket filters and cgroup skb programs.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import threading
from typing import Dict, FrozenSet, Optional, Sequence, Tuple, Union

import attrs

from .consts import AttachType, MapType, ProgType
from .errors import NotSupportedError, PermissionDeniedError, SyscallError

__all__ = [
    "CAPABILITIES", "capabilities", "has_capability", "required_capabilities",
    "missing_capabilities", "explain_eperm", "kernel_version", "memlock_charged",
    "MemlockStatus", "raise_memlock_limit", "ensure_bpffs", "ensure_tracefs",
]

log = logging.getLogger("pybpf")

CAPABILITIES: Dict[str, int] = {
    "CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24, "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}
"""The capabilities pybpf reasons about, by name -> number."""

# A need is met by any one of its alternatives (CAP_SYS_ADMIN stands in for the newer caps).
_BPF = ("CAP_BPF", "CAP_SYS_ADMIN")
_PERFMON = ("CAP_PERFMON", "CAP_SYS_ADMIN")
_NET_ADMIN = ("CAP_NET_ADMIN",)
_SYS_ADMIN = ("CAP_SYS_ADMIN",)
_SYS_RESOURCE = ("CAP_SYS_RESOURCE",)
Need = Tuple[str, ...]

_PERFMON_PROGS = frozenset({
    ProgType.KPROBE, ProgType.TRACEPOINT, ProgType.PERF_EVENT, ProgType.RAW_TRACEPOINT,
    ProgType.RAW_TRACEPOINT_WRITABLE, ProgType.TRACING, ProgType.LSM, ProgType.STRUCT_OPS,
    ProgType.EXT,
})
_NET_ADMIN_PROGS = frozenset({
    ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.XDP, ProgType.LWT_IN, ProgType.LWT_OUT,
    ProgType.LWT_XMIT, ProgType.LWT_SEG6LOCAL, ProgType.SK_SKB, ProgType.SK_MSG,
    ProgType.FLOW_DISSECTOR, ProgType.CGROUP_DEVICE, ProgType.CGROUP_SOCK,
    ProgType.CGROUP_SOCK_ADDR, ProgType.CGROUP_SOCKOPT, ProgType.CGROUP_SYSCTL,
    ProgType.SOCK_OPS, ProgType.EXT, ProgType.NETFILTER, ProgType.SK_LOOKUP,
})
_NET_ADMIN_MAPS = frozenset({
    MapType.SOCKMAP, MapType.SOCKHASH, MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP,
    MapType.XSKMAP,
})
# Named operations -> (needs, what to call it in a sentence).
_NAMED: Dict[str, Tuple[Tuple[Need, ...], str]] = {
    "bpf": ((_BPF,), "using bpf(2)"),
    "map": ((_BPF,), "creating maps"),
    "prog": ((_BPF,), "loading programs"),
    "btf": ((_BPF,), "loading BTF"),
    "tracing": ((_BPF, _PERFMON), "loading tracing programs"),
    "perf_event": ((_PERFMON,), "opening perf events for BPF"),
    "kprobe": ((_BPF, _PERFMON), "attaching kprobes"),
    "uprobe": ((_BPF, _PERFMON), "attaching uprobes"),
    "networking": ((_BPF, _NET_ADMIN), "loading and attaching networking programs"),
    "cgroup": ((_BPF, _NET_ADMIN), "attaching programs to cgroups"),
    "mount": ((_SYS_ADMIN,), "mounting bpffs/tracefs"),
    "memlock": ((_SYS_RESOURCE,), "raising the RLIMIT_MEMLOCK hard limit"),
}

Kind = Union[ProgType, MapType, AttachType, str]


# -- capabilities ---------------------------------------------------------------------------

def _effective_mask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def capabilities() -> FrozenSet[str]:
    """Names (from :data:`CAPABILITIES`) of this process's effective capabilities."""
    mask = _effective_mask()
    return frozenset(n for n, bit in CAPABILITIES.items() if mask >> bit & 1)


def has_capability(name: str) -> bool:
    """Whether this process has capability ``name`` (``"CAP_BPF"``) in its effective set."""
    return bool(_effective_mask() >> CAPABILITIES[name] & 1)


def _kernel_knows_cap_bpf() -> bool:
    """CAP_BPF and CAP_PERFMON exist (5.8+): cap_last_cap reaches CAP_BPF."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read()) >= CAPABILITIES["CAP_BPF"]
    except (OSError, ValueError):
        return kernel_version() >= (5, 8)


def kernel_version() -> Tuple[int, int, int]:
    """The running kernel's (major, minor, patch) from uname (0s where unparsable)."""
    parts = []
    for piece in os.uname().release.split("-", 1)[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit()) if piece else ""
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def _needs(kind: Kind) -> Tuple[Tuple[Need, ...], str]:
    """The needs of ``kind`` and a phrase naming the operation."""
    if isinstance(kind, ProgType):
        needs: Tuple[Need, ...] = (_BPF,)
        if kind in _PERFMON_PROGS:
            needs += (_PERFMON,)
        if kind in _NET_ADMIN_PROGS:
            needs += (_NET_ADMIN,)
        return needs, f"loading {kind.name.lower()} programs"
    if isinstance(kind, MapType):
        needs = (_BPF, _NET_ADMIN) if kind in _NET_ADMIN_MAPS else (_BPF,)
        return needs, f"creating {kind.name.lower()} maps"
    if isinstance(kind, AttachType):
        from .features.attach import attach_prog_type
        pt = attach_prog_type(kind)
        needs = _needs(pt)[0] if pt is not None else (_BPF,)
        if kind.name.startswith("CGROUP_") and _NET_ADMIN not in needs:
            needs += (_NET_ADMIN,)
        return needs, f"attaching with attach type {kind.name.lower()}"
    if kind in _NAMED:
        return _NAMED[kind]
    raise ValueError(f"unknown privilege kind {kind!r} (a ProgType, MapType, AttachType or "
                     f"one of {', '.join(sorted(_NAMED))})")


def required_capabilities(kind: Kind) -> Tuple[str, ...]:
    """The capabilities ``kind`` needs on this kernel (first choice of each need).

    ``kind`` is a :class:`~pybpf.consts.ProgType` (loading it), a
    :class:`~pybpf.consts.MapType` (creating it), an
    :class:`~pybpf.consts.AttachType` (attaching with it) or one of ``"bpf"``,
    ``"map"``, ``"prog"``, ``"btf"``, ``"tracing"``, ``"perf_event"``,
    ``"kprobe"``, ``"uprobe"``, ``"networking"``, ``"cgroup"``, ``"mount"``,
    ``"memlock"``.  Kernels before 5.8 have no CAP_BPF/CAP_PERFMON: there
    CAP_SYS_ADMIN is named instead.
    """
    needs, _ = _needs(kind)
    modern = _kernel_knows_cap_bpf()
    out = []
    for need in needs:
        name = need[0] if modern or need[0] not in ("CAP_BPF", "CAP_PERFMON") else "CAP_SYS_ADMIN"
        if name not in out:
            out.append(name)
    return tuple(out)


def missing_capabilities(kind: Kind) -> Tuple[str, ...]:
    """The capabilities :func:`required_capabilities` names that this process lacks
    (a need met through CAP_SYS_ADMIN is not missing)."""
    have = capabilities()
    needs, _ = _needs(kind)
    modern = _kernel_knows_cap_bpf()
    out = []
    for need in needs:
        alternatives = need if modern else tuple(
            "CAP_SYS_ADMIN" if c in ("CAP_BPF", "CAP_PERFMON") else c for c in need)
        if not any(c in have for c in alternatives):
            if alternatives[0] not in out:
                out.append(alternatives[0])
    return tuple(out)


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _lockdown() -> Optional[str]:
    try:
        with open("/sys/kernel/security/lockdown") as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    mode = text[start + 1:end] if 0 <= start < end else ""
    return mode if mode and mode != "none" else None


def explain_eperm(kind: Kind) -> str:
    """Why an operation of ``kind`` may have failed with EPERM, for error messages.

    Names the capabilities it needs and the ones this process lacks; when none
    is missing, the kernel itself refused and the sentence lists what can make
    it do so (sysctls, lockdown, LSMs, memlock on old kernels).
    """
    what = _needs(kind)[1]
    required = required_capabilities(kind)
    missing = missing_capabilities(kind)
    covered = [c for c in required if c in ("CAP_BPF", "CAP_PERFMON")]
    alt = f" (or CAP_SYS_ADMIN in place of {_join(covered)})" if covered else ""
    msg = f"{what} needs {_join(required)}{alt}"
    if missing:
        them = "them" if len(missing) > 1 else "it"
        return (msg + f"; this process lacks {_join(missing)}: run as root or grant {them} "
                f"(setcap {','.join(c.lower() for c in missing)}+ep on the interpreter, or "
                "systemd AmbientCapabilities=)")
    causes = ["kernel.unprivileged_bpf_disabled and kernel.perf_event_paranoid",
              "an LSM policy (SELinux, AppArmor, BPF LSM)"]
    lock = _lockdown()
    if lock:
        causes.insert(0, f"kernel lockdown ({lock} mode)")
    if kernel_version() < (5, 11):
        causes.append("RLIMIT_MEMLOCK (this kernel charges BPF memory to it: "
                      "pybpf.privileges.raise_memlock_limit())")
    causes.append("a kernel that does not allow this at all")
    return (msg + f"; this process has {_join(required)}, so the kernel refused on its own: "
            f"check {'; '.join(causes)}")


# -- RLIMIT_MEMLOCK -------------------------------------------------------------------------

_memlock_lock = threading.Lock()
_memlock_charged: Optional[bool] = None


def _probe_memlock_charging() -> bool:
    """Create a tiny map under a zero RLIMIT_MEMLOCK soft limit: EPERM means charged.

    The soft limit is restored right away; lowering it needs no privilege.
    (Other threads creating BPF objects during these microseconds would fail
    on a charging kernel, which is why :func:`memlock_charged` skips this on
    5.11+ kernels, where nothing is charged.)
    """
    from . import sys as _sys
    from .consts import MapType as _MT
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, hard))
    try:
        fd = _sys.map_create(_MT.ARRAY, 4, 4, 1, context="memlock accounting probe")
    except SyscallError as e:
        if e.errno == errno.EPERM:
            return True
        raise
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))
    fd.close()
    return False


def memlock_charged() -> bool:
    """Whether the running kernel charges BPF memory to RLIMIT_MEMLOCK (before 5.11).

    Kernels 5.11+ account BPF memory to the memory cgroup and are answered
    from their version; older ones (which may carry backports) are probed
    once per process, as cilium/ebpf's rlimit package does.
    """
    global _memlock_charged
    with _memlock_lock:
        if _memlock_charged is None:
            _memlock_charged = False if kernel_version() >= (5, 11) else _probe_memlock_charging()
        return _memlock_charged


@attrs.frozen
class MemlockStatus:
    """The outcome of :func:`raise_memlock_limit`: the limits now in force
    (``resource.RLIM_INFINITY`` for unlimited) and what was done."""
    charged: bool
    raised: bool
    soft: int
    hard: int
    note: str = ""


def raise_memlock_limit(limit: int = resource.RLIM_INFINITY, *,
                        force: bool = False) -> MemlockStatus:
    """Raise RLIMIT_MEMLOCK to ``limit`` where the kernel charges BPF memory to it.

    Does nothing on kernels that do not (5.11+) unless ``force``.  Raising the
    hard limit needs CAP_SYS_RESOURCE; without it the soft limit is raised to
    the hard one and the status says so (logged as a warning): BPF objects
    beyond that size will fail with EPERM.  Never raises.
    """
    charged = memlock_charged()
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if not charged and not force:
        return MemlockStatus(False, False, soft, hard,
                             "not needed: this kernel accounts BPF memory to the memory cgroup")

    def covers(value: int) -> bool:
        return value == resource.RLIM_INFINITY or (limit != resource.RLIM_INFINITY
                                                   and value >= limit)
    if covers(soft):
        return MemlockStatus(charged, False, soft, hard, "already high enough")
    new_hard = hard if covers(hard) else limit
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, new_hard))
        return MemlockStatus(charged, True, limit, new_hard)
    except (ValueError, OSError):
        pass
    note = "could not raise the RLIMIT_MEMLOCK hard limit: " + explain_eperm("memlock")
    raised = False
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
            note += f"; raised the soft limit to the hard limit ({hard} bytes)"
            soft, raised = hard, True
        except (ValueError, OSError):  # pragma: no cover - soft up to hard is always allowed
            pass
    log.warning("%s", note)
    return MemlockStatus(charged, raised, soft, hard, note)


# -- mounts ---------------------------------------------------------------------------------

def ensure_bpffs(path: Optional[str] = None) -> str:
    """Make sure ``path`` (default ``/sys/fs/bpf``) lies on a bpffs; returns the path.

    A directory inside an existing bpffs is created; otherwise bpffs is mounted
    at ``path`` when this process may (CAP_SYS_ADMIN).  Raises
    :class:`~pybpf.errors.NotSupportedError` saying how to mount it otherwise.
    """
    from . import sys as _sys
    path = path or _sys.DEFAULT_BPFFS
    if _sys.is_bpffs(path):
        os.makedirs(path, exist_ok=True)
        return path
    how = f"mount it with `mount -t bpf bpf {path}`"
    if not has_capability("CAP_SYS_ADMIN"):
        raise NotSupportedError("bpffs", f"{path} is not on a bpffs mount and {explain_eperm('mount')}"
                                f"; {how}")
    try:
        _sys.mount_bpffs(path)
    except PermissionDeniedError as e:
        raise NotSupportedError("bpffs", f"{path} is not on a bpffs mount and mounting it was "
                                f"refused ({e}); {how}") from e
    except OSError as e:
        raise NotSupportedError("bpffs", f"cannot create mount point {path}: {e.strerror}; "
                                f"{how}") from e
    return path


def ensure_tracefs() -> str:
    """The tracefs mount point, mounting it at /sys/kernel/tracing when absent and permitted.

    Raises :class:`~pybpf.errors.NotSupportedError` saying how to mount it otherwise.
    """
    from .link.tracefs import tracefs_root  # the one place that finds and mounts tracefs
    try:
        return tracefs_root(mount=True)
    except NotSupportedError as e:
        if has_capability("CAP_SYS_ADMIN"):
            raise
        raise NotSupportedError("tracefs", f"{e.reason}; {explain_eperm('mount')}") from e
