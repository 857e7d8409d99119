"""The cffi handle on libc: ``ffi``, ``lib`` and typed ``syscall()`` entry points.

ABI mode only: ``import pybpf`` never needs a compiler.  The declarations come
from the generated out-of-line module :mod:`pybpf.sys._ffi` (fast import); if
that cannot be loaded (a cffi too old or too new for its format) the same
declarations are parsed from :mod:`pybpf.sys._cdef` instead.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Dict, Tuple

__all__ = ["ffi", "lib", "NR_BPF", "NR_PERF_EVENT_OPEN", "bpf_syscall", "perf_event_open_syscall",
           "machine", "ARCH"]

try:
    from ._ffi import ffi
except Exception:  # pragma: no cover - only with an incompatible cffi
    import cffi

    from ._cdef import CDEF

    ffi = cffi.FFI()
    ffi.cdef(CDEF)

try:
    lib: Any = ffi.dlopen(None)      # the process's global namespace: libc is in it
except OSError:  # pragma: no cover - static or unusual interpreters
    lib = ffi.dlopen("libc.so.6")


def machine() -> str:
    """The architecture this process runs as (a 32-bit process on a 64-bit kernel is 32-bit)."""
    m = os.uname().machine if hasattr(os, "uname") else ""
    if struct.calcsize("P") == 4:
        if m in ("x86_64", "i686", "i586", "i386"):
            return "i386"
        if m.startswith(("arm", "aarch64")):
            return "arm"
    if m.startswith("armv"):
        return "arm"
    if m in ("i686", "i586"):
        return "i386"
    return m


# (bpf, perf_event_open) system call numbers, from each architecture's unistd.h.
# asm-generic (aarch64, riscv64, loongarch64) shares one table.
_SYSCALLS: Dict[str, Tuple[int, int]] = {
    "x86_64": (321, 298),
    "i386": (357, 336),
    "aarch64": (280, 241),
    "arm": (386, 364),
    "riscv64": (280, 241),
    "loongarch64": (280, 241),
    "ppc64le": (361, 319),
    "ppc64": (361, 319),
    "s390x": (351, 331),
}

ARCH = machine()
# -1 on an architecture pybpf does not know (or not Linux): importing still works (the pure
# layers need nothing from here), and the backend raises NotSupportedError on first use.
NR_BPF, NR_PERF_EVENT_OPEN = _SYSCALLS.get(ARCH, (-1, -1))

# syscall() is variadic.  Calling it through a variadic declaration makes cffi build a
# new function type per call (about 1 µs); a fixed prototype is as fast as any C call.
# That is sound here because glibc's and musl's syscall() only move integer registers
# into the kernel's order, and every supported ABI passes integer and pointer
# arguments of a variadic call exactly as for a prototyped one.
bpf_syscall = ffi.cast("long (*)(long, long, void *, unsigned long)", lib.syscall)
perf_event_open_syscall = ffi.cast(
    "long (*)(long, struct perf_event_attr *, long, long, long, unsigned long)", lib.syscall)
