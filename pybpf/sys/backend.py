"""The one seam between pybpf and the kernel's bpf(2) and perf_event_open(2).

Every wrapper in :mod:`pybpf.sys` issues its system call through the active
:class:`Backend`.  The default, :class:`LinuxBackend`, calls libc's
``syscall()``.  Tests swap in another backend with :func:`set_backend` to
produce faults the kernel cannot be made to produce on demand (EINTR, EAGAIN,
ENOMEM); anything the kernel *can* do is tested against the kernel.

A backend call returns the kernel's result, negative on failure, and
``backend.errno(result)`` tells the error number of a failure.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

from ..errors import NotSupportedError
from ._libc import ARCH, NR_BPF, NR_PERF_EVENT_OPEN, bpf_syscall, ffi, perf_event_open_syscall

__all__ = ["Backend", "LinuxBackend", "set_backend", "get_backend", "use_backend"]


@runtime_checkable
class Backend(Protocol):
    """What a kernel stand-in implements.  ``attr`` is a cffi pointer to the command's struct.

    ``bpf`` and ``perf_event_open`` return the call's result, negative on failure;
    ``errno(result)`` then gives the error number of that failure.  (The Linux backend
    returns -1 and reads the thread's saved errno; a fake can simply return ``-errno``
    and answer ``-result``.)
    """

    def bpf(self, cmd: int, attr: Any, size: int) -> int:
        """bpf(cmd, attr, size)."""
        ...

    def perf_event_open(self, attr: Any, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        """perf_event_open(attr, pid, cpu, group_fd, flags)."""
        ...

    def errno(self, result: int) -> int:
        """The error number of the failed call that returned ``result`` in this thread."""
        ...


def _saved_errno(result: int) -> int:
    return ffi.errno  # cffi saves errno right after each C call, per thread


def _unsupported(*_args: Any) -> int:
    raise NotSupportedError("bpf(2)", f"pybpf does not know the system call numbers of {ARCH!r}")


class LinuxBackend:
    """The real kernel, through libc's ``syscall()`` (C-level partials: no Python frame)."""

    bpf: Callable[..., int]
    perf_event_open: Callable[..., int]
    if NR_BPF >= 0:
        bpf = functools.partial(bpf_syscall, NR_BPF)
        perf_event_open = functools.partial(perf_event_open_syscall, NR_PERF_EVENT_OPEN)
    else:  # pragma: no cover - depends on the host
        bpf = perf_event_open = staticmethod(_unsupported)  # type: ignore[assignment]
    errno = staticmethod(_saved_errno)


class _Active:
    """The active backend's entry points, looked up once per call by the wrappers."""

    __slots__ = ("backend", "bpf", "perf_event_open", "errno")

    def __init__(self, backend: Backend):
        self.backend = backend
        self.bpf = backend.bpf
        self.perf_event_open = backend.perf_event_open
        self.errno = backend.errno


active = _Active(LinuxBackend())


def get_backend() -> Backend:
    """The backend in use."""
    return active.backend


def set_backend(backend: Backend) -> Backend:
    """Route every system call through ``backend``; returns the previous one."""
    if not isinstance(backend, Backend):
        raise TypeError(f"{backend!r} does not implement pybpf.sys.Backend")
    old = active.backend
    active.backend = backend
    active.bpf = backend.bpf
    active.perf_event_open = backend.perf_event_open
    active.errno = backend.errno
    return old


@contextlib.contextmanager
def use_backend(backend: Backend) -> Iterator[Backend]:
    """``with use_backend(fake):`` -- :func:`set_backend` for the duration of a block."""
    old = set_backend(backend)
    try:
        yield backend
    finally:
        set_backend(old)
