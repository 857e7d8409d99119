"""A small rtnetlink client: the pre-bpf_link way of attaching XDP and tc programs.

XDP programs can be attached with ``RTM_SETLINK`` (attribute ``IFLA_XDP``)
and tc programs as ``cls_bpf`` filters under a ``clsact`` qdisc
(``RTM_NEWQDISC``/``RTM_NEWTFILTER``).  Kernels before 5.9 (XDP) and 6.6
(tcx) have no other way, and tools such as ``ip`` and ``tc`` still use it, so
pybpf speaks just enough rtnetlink for that, over the :mod:`socket` module
(no pyroute2): messages are packed with :mod:`struct` in host byte order, as
netlink wants.

A :class:`RtNetlink` socket belongs to the network namespace of the thread
that opened it, for its whole life.  The links in :mod:`pybpf.link.xdp` and
:mod:`pybpf.link.tc` keep theirs open, so detaching works from any thread
even when the attachment was made inside another namespace.

Kernel errors become :class:`~pybpf.errors.SyscallError` (or
:class:`~pybpf.errors.PermissionDeniedError`) named after the request
(``"RTM_SETLINK"``), with the kernel's extended-ack message -- e.g. "Native
and generic XDP can't be active at the same time." -- as the hint.
"""

from __future__ import annotations

import errno as _errno
import os
import socket
import struct
from typing import Dict, List, Optional, Tuple, Union

import attrs

from ..errors import ParseError, PermissionDeniedError, SyscallError

__all__ = [
    "RtNetlink", "XDPState", "TCFilter", "resolve_ifindex",
    "XDP_FLAGS_UPDATE_IF_NOEXIST", "XDP_FLAGS_SKB_MODE", "XDP_FLAGS_DRV_MODE",
    "XDP_FLAGS_HW_MODE", "XDP_FLAGS_REPLACE", "XDP_FLAGS_MODES",
    "TC_H_CLSACT", "TC_PARENT_INGRESS", "TC_PARENT_EGRESS",
]

# --- uapi constants (linux/netlink.h, rtnetlink.h, if_link.h, pkt_sched.h, pkt_cls.h) ---
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ECHO = 0x8
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200      # on NLMSG_ERROR: extended-ack attributes follow

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_NEWTFILTER = 44
RTM_DELTFILTER = 45
RTM_GETTFILTER = 46
_RTM_NAMES = {RTM_GETLINK: "RTM_GETLINK", RTM_SETLINK: "RTM_SETLINK",
              RTM_NEWQDISC: "RTM_NEWQDISC", RTM_DELQDISC: "RTM_DELQDISC",
              RTM_NEWTFILTER: "RTM_NEWTFILTER", RTM_DELTFILTER: "RTM_DELTFILTER",
              RTM_GETTFILTER: "RTM_GETTFILTER"}

NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = 0x3FFF

IFLA_XDP = 43
IFLA_XDP_FD = 1
IFLA_XDP_ATTACHED = 2
IFLA_XDP_FLAGS = 3
IFLA_XDP_PROG_ID = 4
IFLA_XDP_DRV_PROG_ID = 5
IFLA_XDP_SKB_PROG_ID = 6
IFLA_XDP_HW_PROG_ID = 7
IFLA_XDP_EXPECTED_FD = 8

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
XDP_FLAGS_MODES = XDP_FLAGS_SKB_MODE | XDP_FLAGS_DRV_MODE | XDP_FLAGS_HW_MODE
_XDP_ATTACHED = {0: "none", 1: "driver", 2: "generic", 3: "hw", 4: "multi"}

TCA_KIND = 1
TCA_OPTIONS = 2
TCA_BPF_FD = 6
TCA_BPF_NAME = 7
TCA_BPF_FLAGS = 8
TCA_BPF_TAG = 10
TCA_BPF_ID = 11
TCA_BPF_FLAG_ACT_DIRECT = 1

TC_H_CLSACT = 0xFFFFFFF1                 # == TC_H_INGRESS
TC_CLSACT_HANDLE = 0xFFFF0000            # TC_H_MAKE(TC_H_CLSACT, 0)
TC_PARENT_INGRESS = 0xFFFFFFF2           # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
TC_PARENT_EGRESS = 0xFFFFFFF3            # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
ETH_P_ALL = 0x0003

# --- wire formats (host byte order) ---
_NLMSGHDR = struct.Struct("=IHHII")      # len, type, flags, seq, pid
_NLATTR = struct.Struct("=HH")           # len, type
_IFINFOMSG = struct.Struct("=BxHiII")    # family, type, index, flags, change
_TCMSG = struct.Struct("=BxxxiIII")      # family, ifindex, handle, parent, info
_S32 = struct.Struct("=i")
_U32 = struct.Struct("=I")

_RECV_SIZE = 1 << 16

_HINTS = {
    _errno.EPERM: "needs CAP_NET_ADMIN in the interface's network namespace",
    _errno.ENODEV: "no such network interface in this network namespace",
    _errno.EBUSY: "the interface already has a program attached there",
    _errno.EEXIST: "already exists (or the attached program is not the expected one)",
    _errno.EOPNOTSUPP: "the driver or kernel does not support this attachment mode",
}


def _align4(n: int) -> int:
    return (n + 3) & ~3


def nla(kind: int, payload: bytes) -> bytes:
    """One netlink attribute (type ``kind``), padded to 4 bytes."""
    n = _NLATTR.size + len(payload)
    return _NLATTR.pack(n, kind) + payload + b"\0" * (_align4(n) - n)


def nla_u32(kind: int, v: int) -> bytes:
    return nla(kind, _U32.pack(v))


def nla_s32(kind: int, v: int) -> bytes:
    return nla(kind, _S32.pack(v))


def nla_str(kind: int, s: str) -> bytes:
    return nla(kind, s.encode() + b"\0")


def nla_nested(kind: int, *children: bytes) -> bytes:
    return nla(kind | NLA_F_NESTED, b"".join(children))


def parse_attrs(data: bytes, what: str = "netlink message") -> Dict[int, bytes]:
    """Attributes of a netlink payload by type (the last one wins for duplicates)."""
    out: Dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos + _NLATTR.size <= end:
        n, kind = _NLATTR.unpack_from(data, pos)
        if n < _NLATTR.size or pos + n > end:
            raise ParseError(f"truncated attribute (type {kind & _NLA_TYPE_MASK}, length {n})",
                             file="rtnetlink", section=what, offset=pos)
        out[kind & _NLA_TYPE_MASK] = data[pos + _NLATTR.size:pos + n]
        pos += _align4(n)
    return out


def _u32(attrs_: Dict[int, bytes], kind: int, default: int = 0) -> int:
    v = attrs_.get(kind)
    return _U32.unpack_from(v)[0] if v is not None and len(v) >= 4 else default


def _cstr(v: Optional[bytes]) -> str:
    return v.split(b"\0", 1)[0].decode("utf-8", "replace") if v else ""


def netlink_error(call: str, err: int, context: str = "", extack: str = "") -> SyscallError:
    """The pybpf exception for an rtnetlink request ``call`` failing with ``err``."""
    hint = extack.rstrip(".") if extack else _HINTS.get(err, "")
    cls = PermissionDeniedError if err in (_errno.EPERM, _errno.EACCES) else SyscallError
    return cls(call, err, context, hint)


def resolve_ifindex(iface: Union[str, int]) -> Tuple[int, str]:
    """``(ifindex, name)`` of a network interface given by name or index, looked up in the
    calling thread's network namespace."""
    try:
        if isinstance(iface, int) and not isinstance(iface, bool):
            if iface <= 0:
                raise ValueError(f"interface index must be positive, not {iface}")
            try:
                return iface, socket.if_indextoname(iface)
            except OSError:
                return iface, f"ifindex {iface}"
        if isinstance(iface, str) and iface.isdigit():
            return resolve_ifindex(int(iface))
        if not isinstance(iface, str):
            raise TypeError(f"interface must be a name or an index, not {type(iface).__name__}")
        return socket.if_nametoindex(iface), iface
    except OSError as e:
        raise SyscallError("if_nametoindex", e.errno or _errno.ENODEV, f"interface {iface!r}",
                           _HINTS[_errno.ENODEV]) from None


@attrs.frozen
class XDPState:
    """What ``RTM_GETLINK`` reports about an interface's XDP programs (0: none)."""
    ifindex: int
    attached: str        # "none", "driver", "generic", "hw" or "multi"
    prog_id: int         # the program when exactly one is attached
    drv_prog_id: int
    skb_prog_id: int
    hw_prog_id: int

    def mode_prog_id(self, mode_flag: int) -> int:
        """The program attached in the mode of ``mode_flag`` (an ``XDP_FLAGS_*_MODE``)."""
        return {XDP_FLAGS_SKB_MODE: self.skb_prog_id, XDP_FLAGS_DRV_MODE: self.drv_prog_id,
                XDP_FLAGS_HW_MODE: self.hw_prog_id}.get(mode_flag, self.prog_id)


@attrs.frozen
class TCFilter:
    """One filter of a tc dump (``kind`` "bpf" filters carry the program fields)."""
    ifindex: int
    parent: int
    handle: int
    priority: int
    protocol: int        # host order (ETH_P_ALL = 3)
    kind: str
    prog_id: int = 0
    name: str = ""
    direct_action: bool = False
    tag: str = ""


class RtNetlink:
    """A NETLINK_ROUTE socket, bound to the network namespace of the thread that opens it.

    Requests are synchronous: :meth:`request` sends one message and reads
    replies until the kernel's ack (or ``NLMSG_DONE`` for dumps), raising a
    :class:`~pybpf.errors.SyscallError` with the extended-ack text on error.
    """

    def __init__(self) -> None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                 NETLINK_ROUTE)
        except OSError as e:
            raise SyscallError("socket(AF_NETLINK)", e.errno or _errno.EPROTONOSUPPORT,
                               "rtnetlink") from None
        try:
            for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
                try:
                    sock.setsockopt(SOL_NETLINK, opt, 1)
                except OSError:  # pragma: no cover - kernels before 4.12 lack extended acks
                    pass
            sock.bind((0, 0))
        except OSError as e:
            sock.close()
            raise SyscallError("bind(AF_NETLINK)", e.errno or _errno.EINVAL, "rtnetlink") from None
        self._sock = sock
        self._seq = 0
        self._buf = bytearray(_RECV_SIZE)

    def close(self) -> None:
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._sock.fileno() < 0

    def __enter__(self) -> "RtNetlink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg_type: int, flags: int, body: bytes, *,
                context: str = "") -> List[Tuple[int, bytes]]:
        """Send one request; return the ``(type, payload)`` replies before the ack/done.

        ``NLM_F_REQUEST`` and ``NLM_F_ACK`` are always set; a dump (``NLM_F_DUMP`` in
        ``flags``) collects its multipart replies.
        """
        call = _RTM_NAMES.get(msg_type, f"RTM_{msg_type}")
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF or 1
        msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type,
                             flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
        try:
            self._sock.sendto(msg, (0, 0))
        except OSError as e:
            raise SyscallError("sendto(AF_NETLINK)", e.errno or _errno.EIO, context) from None
        replies: List[Tuple[int, bytes]] = []
        while True:
            for mtype, mflags, payload in self._receive(seq, context):
                if mtype == NLMSG_ERROR:
                    self._check_error(call, payload, mflags, context)
                    return replies            # error 0: the ack
                if mtype == NLMSG_DONE:
                    return replies
                if mtype != NLMSG_NOOP:
                    replies.append((mtype, payload))

    def _receive(self, seq: int, context: str) -> List[Tuple[int, int, bytes]]:
        """One datagram's messages answering ``seq`` (others -- stale replies -- are dropped)."""
        buf = self._buf
        try:
            n, _ = self._sock.recvfrom_into(buf, len(buf), socket.MSG_TRUNC)
        except OSError as e:
            raise SyscallError("recvfrom(AF_NETLINK)", e.errno or _errno.EIO, context) from None
        if n > len(buf):
            raise SyscallError("recvfrom(AF_NETLINK)", _errno.EMSGSIZE, context,
                               f"a {n}-byte netlink reply did not fit in {len(buf)} bytes")
        out = []
        pos = 0
        while pos + _NLMSGHDR.size <= n:
            length, mtype, mflags, mseq, _pid = _NLMSGHDR.unpack_from(buf, pos)
            if length < _NLMSGHDR.size or pos + length > n:
                raise ParseError(f"truncated netlink message (length {length})",
                                 file="rtnetlink", offset=pos)
            if mseq == seq:
                out.append((mtype, mflags, bytes(buf[pos + _NLMSGHDR.size:pos + length])))
            pos += _align4(length)
        return out

    @staticmethod
    def _check_error(call: str, payload: bytes, mflags: int, context: str) -> None:
        if len(payload) < 4:
            raise ParseError("truncated NLMSG_ERROR", file="rtnetlink", section=call)
        err = -_S32.unpack_from(payload)[0]
        if err == 0:
            return
        extack = ""
        if mflags & NLM_F_ACK_TLVS and len(payload) >= 4 + _NLMSGHDR.size:
            # With NETLINK_CAP_ACK the echoed request is its header only; TLVs follow it.
            tlvs = parse_attrs(payload[4 + _NLMSGHDR.size:], f"{call} extended ack")
            extack = _cstr(tlvs.get(NLMSGERR_ATTR_MSG))
        raise netlink_error(call, err, context, extack)

    # --- XDP (RTM_SETLINK / RTM_GETLINK with IFLA_XDP) ---

    def xdp_set(self, ifindex: int, prog_fd: int, flags: int = 0, *,
                expected_fd: Optional[int] = None, context: str = "") -> None:
        """Attach ``prog_fd`` (-1: detach) as the XDP program of ``ifindex``.

        ``flags`` are ``XDP_FLAGS_*``: one mode bit (none: the driver's native mode
        if it has one, else generic), ``UPDATE_IF_NOEXIST`` to fail with EBUSY when a
        program is attached.  ``expected_fd`` (adds ``XDP_FLAGS_REPLACE``) makes the
        change atomic: it only happens if that program (-1: none) is the one attached.
        """
        inner = [nla_s32(IFLA_XDP_FD, prog_fd)]
        if expected_fd is not None:
            flags |= XDP_FLAGS_REPLACE
            inner.append(nla_s32(IFLA_XDP_EXPECTED_FD, expected_fd))
        if flags:
            inner.append(nla_u32(IFLA_XDP_FLAGS, flags))
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0) + nla_nested(IFLA_XDP, *inner)
        self.request(RTM_SETLINK, 0, body, context=context)

    def xdp_query(self, ifindex: int, *, context: str = "") -> XDPState:
        """The XDP programs attached to ``ifindex``, per mode."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0)
        for mtype, payload in self.request(RTM_GETLINK, 0, body, context=context):
            if mtype != RTM_NEWLINK or len(payload) < _IFINFOMSG.size:
                continue
            top = parse_attrs(payload[_IFINFOMSG.size:], "RTM_NEWLINK")
            xdp = parse_attrs(top.get(IFLA_XDP, b""), "IFLA_XDP")
            attached = xdp.get(IFLA_XDP_ATTACHED, b"\0")[0]
            return XDPState(ifindex=ifindex, attached=_XDP_ATTACHED.get(attached, str(attached)),
                            prog_id=_u32(xdp, IFLA_XDP_PROG_ID),
                            drv_prog_id=_u32(xdp, IFLA_XDP_DRV_PROG_ID),
                            skb_prog_id=_u32(xdp, IFLA_XDP_SKB_PROG_ID),
                            hw_prog_id=_u32(xdp, IFLA_XDP_HW_PROG_ID))
        raise netlink_error("RTM_GETLINK", _errno.ENODEV, context, "no RTM_NEWLINK in the reply")

    # --- tc: clsact qdisc and cls_bpf filters ---

    def clsact_add(self, ifindex: int, *, context: str = "") -> bool:
        """Add the ``clsact`` qdisc to ``ifindex``; False if it was already there."""
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, TC_CLSACT_HANDLE, TC_H_CLSACT, 0)
        try:
            self.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL,
                         body + nla_str(TCA_KIND, "clsact"), context=context)
        except SyscallError as e:
            if e.errno == _errno.EEXIST:
                return False
            raise
        return True

    def clsact_del(self, ifindex: int, *, context: str = "") -> None:
        """Remove the ``clsact`` qdisc of ``ifindex`` (and every filter under it)."""
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, TC_CLSACT_HANDLE, TC_H_CLSACT, 0)
        self.request(RTM_DELQDISC, 0, body + nla_str(TCA_KIND, "clsact"), context=context)

    def bpf_filter_add(self, ifindex: int, parent: int, prog_fd: int, *, name: str = "",
                       handle: int = 0, priority: int = 0, protocol: int = ETH_P_ALL,
                       direct_action: bool = True, replace: bool = False,
                       context: str = "") -> Tuple[int, int]:
        """Add a ``cls_bpf`` filter running ``prog_fd``; returns its ``(handle, priority)``.

        ``handle``/``priority`` 0 let the kernel choose (read back from the echoed
        message).  ``replace`` swaps the program of an existing filter with the same
        handle and priority instead of failing with EEXIST.
        """
        info = (priority << 16) | socket.htons(protocol)
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, handle, parent, info)
        opts = [nla_u32(TCA_BPF_FD, prog_fd)]
        if name:
            opts.append(nla_str(TCA_BPF_NAME, name))
        opts.append(nla_u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT if direct_action else 0))
        body += nla_str(TCA_KIND, "bpf") + nla_nested(TCA_OPTIONS, *opts)
        flags = NLM_F_CREATE | NLM_F_ECHO | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        for mtype, payload in self.request(RTM_NEWTFILTER, flags, body, context=context):
            if mtype == RTM_NEWTFILTER and len(payload) >= _TCMSG.size:
                _fam, _ifi, got_handle, _parent, got_info = _TCMSG.unpack_from(payload)
                return got_handle, got_info >> 16
        if handle and priority:
            return handle, priority
        raise netlink_error("RTM_NEWTFILTER", _errno.EPROTO, context,
                            "the kernel did not echo the new filter")

    def filter_del(self, ifindex: int, parent: int, handle: int, priority: int, *,
                   protocol: int = ETH_P_ALL, kind: str = "bpf", context: str = "") -> None:
        """Delete the filter ``handle`` at ``priority`` under ``parent``."""
        info = (priority << 16) | socket.htons(protocol)
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, handle, parent, info) + nla_str(TCA_KIND, kind)
        self.request(RTM_DELTFILTER, 0, body, context=context)

    def filters(self, ifindex: int, parent: int, *, context: str = "") -> List[TCFilter]:
        """Every filter under ``parent`` of ``ifindex`` (a dump; chain heads are skipped)."""
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, parent, 0)
        out = []
        for mtype, payload in self.request(RTM_GETTFILTER, NLM_F_DUMP, body, context=context):
            if mtype != RTM_NEWTFILTER or len(payload) < _TCMSG.size:
                continue
            _fam, ifi, handle, par, info = _TCMSG.unpack_from(payload)
            if handle == 0:
                continue
            top = parse_attrs(payload[_TCMSG.size:], "RTM_NEWTFILTER")
            kind = _cstr(top.get(TCA_KIND))
            f = TCFilter(ifindex=ifi, parent=par, handle=handle, priority=info >> 16,
                         protocol=socket.ntohs(info & 0xFFFF), kind=kind)
            if kind == "bpf":
                opts = parse_attrs(top.get(TCA_OPTIONS, b""), "TCA_OPTIONS")
                f = attrs.evolve(
                    f, prog_id=_u32(opts, TCA_BPF_ID), name=_cstr(opts.get(TCA_BPF_NAME)),
                    direct_action=bool(_u32(opts, TCA_BPF_FLAGS) & TCA_BPF_FLAG_ACT_DIRECT),
                    tag=(opts.get(TCA_BPF_TAG) or b"").hex())
            out.append(f)
        return out

    def __repr__(self) -> str:
        return f"<pybpf RtNetlink fd={self._sock.fileno()} pid={os.getpid()}>"
