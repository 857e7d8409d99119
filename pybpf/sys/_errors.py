"""errno -> pybpf exception, done once for every system call pybpf makes."""

from __future__ import annotations

import errno as _e
from typing import Dict, FrozenSet, Optional

from ..consts import Cmd
from ..errors import KeyExistsError, KeyNotFoundError, PermissionDeniedError, SyscallError

__all__ = ["bpf_error", "os_error", "cmd_name", "ENOTSUPP"]

ENOTSUPP = 524  # kernel-internal "not supported" that leaks out of some bpf commands

_NAMES: Dict[int, str] = {}
for _c in Cmd:  # first name wins: BPF_PROG_TEST_RUN rather than its alias BPF_PROG_RUN
    _NAMES.setdefault(int(_c), f"BPF_{_c.name}")

# ENOENT from these means "no such key" (for an update: flag EXIST on an absent key).
_KEY_CMDS: FrozenSet[int] = frozenset({
    Cmd.MAP_LOOKUP_ELEM, Cmd.MAP_DELETE_ELEM, Cmd.MAP_GET_NEXT_KEY, Cmd.MAP_LOOKUP_AND_DELETE_ELEM,
    Cmd.MAP_DELETE_BATCH,
    Cmd.MAP_UPDATE_ELEM,
})
# Commands where EACCES means "the verifier said no", not "you may not".
_VERIFIED: FrozenSet[int] = frozenset({Cmd.PROG_LOAD, Cmd.BTF_LOAD})

_PERM_HINT = ("needs CAP_BPF (with CAP_PERFMON for tracing or CAP_NET_ADMIN for networking "
              "programs) or CAP_SYS_ADMIN; see also kernel.unprivileged_bpf_disabled, and "
              "RLIMIT_MEMLOCK on kernels before 5.11")

_HINTS: Dict[tuple, str] = {
    (None, _e.EPERM): _PERM_HINT,
    (None, _e.EACCES): "access denied: check capabilities, LSM policy and bpffs permissions",
    (None, _e.E2BIG): "the attribute has fields this kernel does not know (feature too new "
                      "for this kernel)",
    (None, _e.EBADF): "not an open file descriptor",
    (None, ENOTSUPP): "not supported by this kernel or for this program/map type (ENOTSUPP)",
    (Cmd.MAP_UPDATE_ELEM, _e.E2BIG): "the map is full (max_entries reached)",
    (Cmd.MAP_UPDATE_BATCH, _e.E2BIG): "the map is full (max_entries reached)",
    (Cmd.MAP_UPDATE_ELEM, _e.EBUSY): "the map is being modified from BPF on this CPU",
    (Cmd.PROG_LOAD, _e.EACCES): "the verifier rejected the program",
    (Cmd.PROG_LOAD, _e.ENOSPC): "the verifier log buffer is too small",
    (Cmd.BTF_LOAD, _e.ENOSPC): "the BTF log buffer is too small",
    (Cmd.MAP_FREEZE, _e.EBUSY): "the map is writably mmap()ed or already frozen",
    (Cmd.OBJ_PIN, _e.EPERM): "the path is not on a bpffs mount (mount -t bpf bpf /sys/fs/bpf), "
                             "or " + _PERM_HINT,
    (Cmd.OBJ_GET, _e.EPERM): "the path is not on a bpffs mount, or " + _PERM_HINT,
    (Cmd.OBJ_GET, _e.ENOENT): "nothing is pinned at that path",
    (Cmd.OBJ_PIN, _e.EEXIST): "something is already pinned at that path",
}


def cmd_name(cmd: int) -> str:
    """``"BPF_MAP_CREATE"`` for ``Cmd.MAP_CREATE``."""
    return _NAMES.get(cmd, f"BPF_CMD_{cmd}")


def bpf_error(cmd: int, err: int, context: str = "", hint: Optional[str] = None) -> SyscallError:
    """The pybpf exception for bpf(``cmd``) failing with ``err`` (to be raised by the caller)."""
    call = cmd_name(cmd)
    if hint is None:
        hint = _HINTS.get((cmd, err)) or _HINTS.get((None, err), "")
    if err == _e.ENOENT and cmd in _KEY_CMDS:
        return KeyNotFoundError(call, err, context, hint)
    if err == _e.EEXIST and cmd in (Cmd.MAP_UPDATE_ELEM, Cmd.MAP_UPDATE_BATCH):
        return KeyExistsError(call, err, context, hint)
    if err == _e.EPERM or (err == _e.EACCES and cmd not in _VERIFIED):
        return PermissionDeniedError(call, err, context, hint)
    return SyscallError(call, err, context, hint)


_OS_HINTS: Dict[tuple, str] = {
    ("perf_event_open", _e.EACCES): "check kernel.perf_event_paranoid, or run with CAP_PERFMON",
    ("perf_event_open", _e.EPERM): "check kernel.perf_event_paranoid, or run with CAP_PERFMON",
    ("perf_event_open", _e.ENOENT): "no such PMU, event or probe target",
    ("perf_event_open", _e.E2BIG): "perf_event_attr has fields this kernel does not know",
    ("mount", _e.EPERM): "needs CAP_SYS_ADMIN",
}


def os_error(call: str, err: int, context: str = "", hint: Optional[str] = None) -> SyscallError:
    """The pybpf exception for a non-bpf system call (``"perf_event_open"``, ``"ioctl(...)"``)."""
    if hint is None:
        hint = _OS_HINTS.get((call, err), "")
    if err in (_e.EPERM, _e.EACCES):
        return PermissionDeniedError(call, err, context, hint)
    return SyscallError(call, err, context, hint)
