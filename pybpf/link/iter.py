"""BPF iterators: ``SEC("iter/task")``, ``iter/bpf_map_elem`` ... read like files.

An iterator program is attached once (``BPF_LINK_CREATE`` with
``BPF_TRACE_ITER``, optionally parameterised: which map, cgroup or task to
walk); each ``BPF_ITER_CREATE`` on that link then starts a fresh walk and
returns an fd whose ``read()`` yields what the program printed with
``BPF_SEQ_PRINTF``/``bpf_seq_write``.  :class:`IterLink` wraps both steps:
``link.read()`` returns one whole walk, ``link.open()`` a file to stream it.
A pinned iterator link can also be read with ``cat`` on bpffs.
"""

from __future__ import annotations

import io
import os
import struct
from typing import Any, Optional, Union

from .. import sys as _sys
from ..consts import AttachType
from ..errors import BPFError, SyscallError
from ..sys.fd import FD
from .base import Link, register

__all__ = ["IterLink", "IterReader", "attach_iter"]

_LINK_INFO = struct.Struct("=IIQ")     # union bpf_iter_link_info, as its largest member (16 bytes)


class IterReader(io.RawIOBase):
    """The output of one iterator walk: a read-only raw file over the ``BPF_ITER_CREATE`` fd.

    Read errors from the program's side (e.g. ``E2BIG`` when one object's
    output exceeds a page) are raised as :class:`~pybpf.errors.SyscallError`.
    """

    def __init__(self, fd: FD, context: str):
        super().__init__()
        self._fd = fd
        fd.owner = context
        self._context = context

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd.fileno()

    def readinto(self, buf: Any) -> int:
        while True:
            try:
                return os.readv(self._fd.fileno(), [buf])
            except InterruptedError:
                continue
            except OSError as e:
                raise SyscallError("read", e.errno or 5, self._context) from None

    def close(self) -> None:
        if not self.closed:
            self._fd.close()
        super().close()


class IterLink(Link):
    """An attached iterator program.  Every :meth:`read`/:meth:`open` is a new walk."""

    def open(self) -> io.BufferedReader:
        """A new walk, as a buffered binary file (iterate it for lines); close it after use."""
        ctx = f"iterator {self.program.name}"
        fd = _sys.iter_create(self.fd, context=ctx)
        return io.BufferedReader(IterReader(fd, ctx), buffer_size=64 * 1024)

    def read(self) -> bytes:
        """The whole output of a new walk."""
        with self.open() as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        """:meth:`read`, decoded."""
        return self.read().decode(encoding, "replace")


def _link_info(map: Any, cgroup: Any, order: int, tid: int, pid: int, pid_fd: int) -> Optional[bytes]:
    """The packed ``union bpf_iter_link_info`` for the parameters given (None for none)."""
    given = [n for n, v in (("map", map is not None), ("cgroup", cgroup is not None),
                            ("task", bool(tid or pid or pid_fd))) if v]
    if len(given) > 1:
        raise BPFError(f"iterator parameters {' and '.join(given)} exclude each other")
    if map is not None:
        return _LINK_INFO.pack(map if isinstance(map, int) else map.fd, 0, 0)
    if cgroup is not None:
        if isinstance(cgroup, int):         # a cgroup id
            return _LINK_INFO.pack(order, 0, cgroup)
        return _LINK_INFO.pack(order, cgroup.fileno(), 0)
    if tid or pid or pid_fd:
        if sum(bool(x) for x in (tid, pid, pid_fd)) > 1:
            raise BPFError("give one of tid, pid or pid_fd for a task iterator")
        return struct.pack("=III4x", tid, pid, pid_fd)
    return None


def attach_iter(prog: Any, *, map: Any = None, cgroup: Union[None, int, str, Any] = None,
                order: int = 0, tid: int = 0, pid: int = 0, pid_fd: int = 0) -> IterLink:
    """Attach iterator program ``prog`` (``SEC("iter/...")``).

    Parameters select what to walk, by iterator kind:

    * ``map``: a :class:`~pybpf.Map` or map fd for ``iter/bpf_map_elem``,
      ``iter/bpf_sk_storage_map`` ... (required by those);
    * ``cgroup``: a cgroup v2 directory path, an open file, or a cgroup id, and
      ``order`` (:class:`~pybpf.consts.CgroupIterOrder`) for ``iter/cgroup`` (6.1+);
    * ``tid``/``pid``/``pid_fd``: one thread or process for ``iter/task*`` (6.1+).
    """
    own = None
    if isinstance(cgroup, (str, os.PathLike)):
        path = os.fspath(cgroup)
        try:
            own = open(path, "rb", buffering=0)
        except OSError as e:
            raise BPFError(f"cannot open cgroup {path}: {e.strerror or e}") from None
        cgroup = own
    try:
        info = _link_info(map, cgroup, order, tid, pid, pid_fd)
        fd = _sys.link_create(prog.fd, 0, AttachType.TRACE_ITER, iter_info=info,
                              context=f"iterator {prog.name}")
    finally:
        if own is not None:
            own.close()
    target = prog.spec.attach_to if prog.spec is not None else ""
    return IterLink(fd, program=prog, kind="iter", target=target)


@register("iter")
def _auto_iter(prog: Any, **kw: Any) -> Link:
    return attach_iter(prog, **kw)
