"""Socket programs: a filter on one socket, and sk_msg/sk_skb programs on a sockmap.

* ``SEC("socket")`` (``SOCKET_FILTER``): ``setsockopt(SO_ATTACH_BPF)`` on a
  socket; the program's return value is how many bytes of each packet to
  keep (0 drops it).  Closing the link does ``SO_DETACH_BPF``.
* ``SEC("sk_msg")`` and ``SEC("sk_skb/...")``: attached to a sockmap or
  sockhash and run for the sockets stored in it (sendmsg verdicts, stream
  parser/verdict).  A ``bpf_link`` on the map (Linux 6.10+) when the kernel
  has one, else ``BPF_PROG_ATTACH`` on the map fd, undone on close.  Attach
  before inserting sockets: a socket takes the map's programs when it is
  added.
"""

from __future__ import annotations

import errno as _errno
import socket
from typing import Any, Optional, Union

from .. import sys as _sys
from ..errors import NotSupportedError, SyscallError
from .base import Link, register
from .cgroup import ProgAttachLink, program_attach_type

__all__ = ["attach_socket_filter", "attach_sockmap", "SO_ATTACH_BPF", "SO_DETACH_BPF"]

SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27   # == SO_DETACH_FILTER
_VIAS = ("auto", "link", "attach")
_NO_LINK_ERRNOS = (_errno.EINVAL, _errno.EOPNOTSUPP, 524)

SocketLike = Union[socket.socket, int, Any]


def _setsockopt(sock: SocketLike, opt: int, value: int) -> None:
    """setsockopt(SOL_SOCKET, opt, value) on a socket object, an fd or anything with fileno()."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.SOL_SOCKET, opt, value)
        return
    fd = sock if isinstance(sock, int) else sock.fileno()
    tmp = socket.socket(fileno=fd)      # borrows the fd: detach() below, never close()
    try:
        tmp.setsockopt(socket.SOL_SOCKET, opt, value)
    finally:
        tmp.detach()


def _sock_name(sock: SocketLike) -> str:
    try:
        fd = sock if isinstance(sock, int) else sock.fileno()
    except (OSError, ValueError):
        fd = -1
    return f"socket fd {fd}"


def attach_socket_filter(prog: Any, sock: SocketLike) -> Link:
    """Attach socket filter ``prog`` to ``sock`` (a socket, an fd, or anything with
    ``fileno()``) with SO_ATTACH_BPF.  A socket has one filter: attaching replaces it."""
    name = _sock_name(sock)
    context = f"socket filter {prog.name} on {name}"
    try:
        _setsockopt(sock, SO_ATTACH_BPF, prog.fd)
    except OSError as e:
        raise SyscallError("setsockopt(SO_ATTACH_BPF)", e.errno or _errno.EINVAL, context,
                           "needs a SOCKET_FILTER program (SEC(\"socket\")) and an open "
                           "socket") from None

    def detach() -> None:
        try:
            _setsockopt(sock, SO_DETACH_BPF, 0)
        except OSError as e:
            # The socket is closed already (EBADF), or its filter was removed (ENOENT).
            if e.errno not in (_errno.EBADF, _errno.ENOENT, _errno.ENOTSOCK):
                raise SyscallError("setsockopt(SO_DETACH_BPF)", e.errno or _errno.EINVAL,
                                   f"detaching {context}") from None
        except ValueError:   # a socket object already closed (fileno() == -1)
            pass

    return Link(None, program=prog, kind="socket", target=name, detach=detach, is_bpf_link=False)


def attach_sockmap(prog: Any, sockmap: Any, attach_type: Union[None, int, str] = None, *,
                   via: str = "auto") -> Link:
    """Attach sk_msg/sk_skb program ``prog`` to ``sockmap`` (a sockmap or sockhash Map).

    ``attach_type`` overrides the section's (``SEC("sk_skb")`` has none: give
    ``"SK_SKB_STREAM_VERDICT"``, ``"SK_SKB_STREAM_PARSER"`` or ``"SK_SKB_VERDICT"``).
    ``via``: ``"link"`` (Linux 6.10+), ``"attach"`` (BPF_PROG_ATTACH) or
    ``"auto"`` (a link when the kernel has sockmap links, else PROG_ATTACH).
    """
    if via not in _VIAS:
        raise ValueError(f"via must be one of {', '.join(_VIAS)}, not {via!r}")
    atype = program_attach_type(prog, attach_type, "sockmap")
    map_name = getattr(sockmap, "name", "?")
    context = f"program {prog.name} on map {map_name} ({atype.name})"
    if via != "attach":
        try:
            fd = _sys.link_create(prog.fd, sockmap.fd, atype, context=context)
            return Link(fd, program=prog, kind=_kind(prog), target=f"map {map_name}")
        except SyscallError as e:
            if via == "link" or e.errno not in _NO_LINK_ERRNOS:
                raise
    map_ref = _sys.dup_fd(sockmap.fd)    # detaching needs the map even if the caller closed it
    try:
        prog_ref = _sys.dup_fd(prog.fd)
        try:
            _sys.prog_attach(prog.fd, map_ref.fileno(), atype, context=context)
        except BaseException:
            prog_ref.close()
            raise
    except BaseException:
        map_ref.close()
        raise
    return ProgAttachLink(program=prog, kind=_kind(prog), target=f"map {map_name}",
                          target_fd=map_ref, attach_type=atype, prog_ref=prog_ref, flags=0,
                          what=context)


def _kind(prog: Any) -> str:
    spec = getattr(prog, "spec", None)
    return (spec.attach_kind if spec is not None and spec.attach_kind else "sockmap")


@register("socket")
def _auto_socket(prog: Any, sock: Optional[SocketLike] = None, **kw: Any) -> Link:
    if sock is None:
        raise NotSupportedError(f"attaching {prog.name} without a socket",
                                "socket filters attach to a socket: prog.attach(sock)")
    return attach_socket_filter(prog, sock, **kw)


@register("sk_msg", "sk_skb")
def _auto_sockmap(prog: Any, sockmap: Any = None, **kw: Any) -> Link:
    if sockmap is None:
        raise NotSupportedError(f"attaching {prog.name} without a map",
                                "sk_msg/sk_skb programs attach to a sockmap or sockhash: "
                                "prog.attach(coll.maps[\"sock_map\"])")
    return attach_sockmap(prog, sockmap, **kw)
