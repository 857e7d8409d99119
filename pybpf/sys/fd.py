"""``FD``: sole owner of one kernel file descriptor.

BPF objects live as long as some fd (or pin, or attachment) refers to them, so
every fd pybpf creates has exactly one owner.  ``FD`` closes it on
:meth:`FD.close`, on ``with`` exit, or -- as a backstop only -- when garbage
collected.  :meth:`FD.detach` hands ownership to the caller.

Two kernel conventions are enforced here, as libbpf and cilium/ebpf do:

* fds 0, 1 and 2 are never handed out.  The bpf(2) ABI reads fd 0 as "no fd"
  in many fields, and a process that closed its stdio would otherwise get BPF
  objects there; such an fd is moved to 3 or above.
* every fd is close-on-exec (bpf(2) fds are by default; perf fds are opened
  with ``PERF_FLAG_FD_CLOEXEC``; dups use ``F_DUPFD_CLOEXEC``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import weakref
from typing import Optional

from ..errors import SyscallError

__all__ = ["FD", "dup_fd", "MIN_FD"]

MIN_FD = 3  # lowest fd number handed out


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _dup_cloexec(fd: int) -> int:
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, MIN_FD)
    except OSError as e:
        raise SyscallError("fcntl(F_DUPFD_CLOEXEC)", e.errno or errno.EBADF,
                           f"fd {fd}") from None


class FD:
    """An owned file descriptor.

    ``FD(n)`` takes ownership of ``n`` (moving it above stdio if needed); use
    :func:`dup_fd` to own a copy of an fd that belongs to someone else.
    """

    __slots__ = ("_fd", "_finalizer", "owner", "__weakref__")

    def __init__(self, fd: int):
        #: What the fd belongs to (``"map counts"``), set by its owner: the closed-fd
        #: error names it.
        self.owner = ""
        fd = int(fd)
        if fd < 0:
            raise SyscallError("FD", errno.EBADF, f"fd {fd}", "negative file descriptor")
        if fd < MIN_FD:
            try:
                new = _dup_cloexec(fd)
            finally:
                _close_quietly(fd)
            fd = new
        self._fd = fd
        self._finalizer: Optional[weakref.finalize] = weakref.finalize(self, _close_quietly, fd)

    def fileno(self) -> int:
        """The fd number; raises ``SyscallError`` (EBADF) once closed or detached."""
        fd = self._fd
        if fd < 0:
            raise SyscallError("FD.fileno", errno.EBADF, self.owner,
                               hint=f"{self.owner or 'the FD'} was closed or detached")
        return fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`detach` was called."""
        return self._fd < 0

    def close(self) -> None:
        """Close the fd.  Calling it again does nothing."""
        fd = self._fd
        if fd < 0:
            return
        self._fd = -1
        fin = self._finalizer
        if fin is not None:
            fin.detach()
            self._finalizer = None
        try:
            os.close(fd)
        except OSError as e:
            if e.errno != errno.EINTR:  # Linux closes the fd even when close() says EINTR
                raise SyscallError("close", e.errno or errno.EBADF, f"fd {fd}") from None

    def detach(self) -> int:
        """Give up ownership: return the fd number, which the caller must close."""
        fd = self.fileno()
        self._fd = -1
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        return fd

    def dup(self) -> "FD":
        """A new owned fd for the same kernel object (close-on-exec, >= 3)."""
        return FD(_dup_cloexec(self.fileno()))

    def __enter__(self) -> "FD":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pybpf.sys.FD {self._fd if self._fd >= 0 else 'closed'}>"


def dup_fd(fd: int) -> FD:
    """Own a close-on-exec duplicate of ``fd`` (which stays the caller's)."""
    return FD(_dup_cloexec(fd))
