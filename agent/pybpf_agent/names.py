"""Names for numbers: syscalls, errno values, signals, kernel enums, devices, interfaces.

Syscall names come from the generated per-architecture table
(``_syscalls_<machine>.py``, made by tools/gen_syscall_names.py from the kernel
headers' unistd tables); kernel enums (drop reasons, reset reasons, TCP states)
are read from the running kernel's BTF, never from a hand-written table, since
their values drift between kernels.
"""

from __future__ import annotations

import errno as _errno
import importlib
import os
import signal as _signal
import socket
from functools import lru_cache
from typing import Dict, Optional

__all__ = ["syscall_name", "syscall_names", "errno_name", "signal_name", "kernel_enum",
           "device_name", "ifname"]


@lru_cache(maxsize=None)
def syscall_names(machine: Optional[str] = None) -> Dict[int, str]:
    """number -> name for ``machine`` (default: this one); empty if no table was generated."""
    machine = machine or os.uname().machine
    try:
        mod = importlib.import_module(f"pybpf_agent._syscalls_{machine}")
    except ImportError:
        return {}
    return dict(mod.NAMES)


def syscall_name(nr: int) -> str:
    return syscall_names().get(nr) or f"syscall_{nr}"


def errno_name(err: int) -> str:
    return _errno.errorcode.get(err, f"errno_{err}")


def signal_name(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal_{sig}"


_kernel_enums: Dict[str, Dict[int, str]] = {}


def _kernel_btf():
    """The running kernel's BTF, shared with pybpf's loader (parsed once per process)."""
    try:
        from pybpf.kbtf import load_kernel_btf
        return load_kernel_btf(None)
    except ImportError:
        import pybpf
        with open("/sys/kernel/btf/vmlinux", "rb") as f:
            return pybpf.BTFSpec.parse(f.read())


def kernel_enum(enum_name: str, strip_prefix: str = "") -> Dict[int, str]:
    """value -> name of ``enum <enum_name>`` in the running kernel's BTF (empty if absent)."""
    key = f"{enum_name}:{strip_prefix}"
    if key in _kernel_enums:
        return _kernel_enums[key]
    out: Dict[int, str] = {}
    try:
        from pybpf.btf import Kind
        spec = _kernel_btf()
        for kind in (Kind.ENUM, getattr(Kind, "ENUM64", Kind.ENUM)):
            ids = spec.find(enum_name, kind)
            if not ids:
                continue
            for m in spec.type(ids[0]).values:
                name = m.name
                if strip_prefix and name.startswith(strip_prefix):
                    name = name[len(strip_prefix):]
                out.setdefault(int(m.value), name)
            break
    except (OSError, ImportError):
        pass
    _kernel_enums[key] = out
    return out


_dev_cache: Dict[int, str] = {}


def device_name(dev: int) -> str:
    """Kernel dev_t (major << 20 | minor) -> block device name (``/sys/dev/block``)."""
    name = _dev_cache.get(dev)
    if name is None:
        major, minor = dev >> 20, dev & ((1 << 20) - 1)
        name = f"{major}:{minor}"
        try:
            with open(f"/sys/dev/block/{major}:{minor}/uevent") as f:
                for line in f:
                    if line.startswith("DEVNAME="):
                        name = line.strip().split("=", 1)[1]
                        break
        except OSError:
            pass
        _dev_cache[dev] = name
    return name


def device_number(name: str) -> Optional[int]:
    """Block device name -> kernel dev_t, from /sys/class/block/<name>/dev."""
    try:
        with open(f"/sys/class/block/{name}/dev") as f:
            major, minor = f.read().strip().split(":")
    except (OSError, ValueError):
        return None
    return (int(major) << 20) | int(minor)


def ifname(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return f"if{index}"
