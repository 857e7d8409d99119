"""XDP: a program on a network interface's receive path.

Two mechanisms, one :class:`~pybpf.link.base.Link`:

* a ``bpf_link`` (``BPF_LINK_CREATE``, attach type ``XDP``, target = ifindex;
  Linux 5.9+): owned by its fd, pinnable, updatable, and gone when the last
  reference goes -- the default;
* rtnetlink ``RTM_SETLINK``/``IFLA_XDP`` (any kernel), used when links are
  missing or when asked (``via="netlink"``): the interface holds the
  program, and :class:`XDPNetlinkLink` detaches it on close.  Netlink
  attachments support libbpf's replace semantics: fail if a program is
  attached (the default), replace whatever is attached, or replace only a
  given program atomically (``IFLA_XDP_EXPECTED_FD``).

The interface name is looked up in the calling thread's network namespace,
and the attachment is made there.
"""

from __future__ import annotations

import errno as _errno
import weakref
from typing import Any, Dict, Optional, Union

from .. import sys as _sys
from ..consts import AttachType, ProgType
from ..errors import BPFError, NotSupportedError, SyscallError
from .base import Link, register
from .netlink import (
    XDP_FLAGS_DRV_MODE, XDP_FLAGS_HW_MODE, XDP_FLAGS_MODES, XDP_FLAGS_SKB_MODE,
    XDP_FLAGS_UPDATE_IF_NOEXIST,
    RtNetlink, XDPState, resolve_ifindex,
)

__all__ = ["attach_xdp", "xdp_query", "XDPNetlinkLink", "XDP_MODES"]

#: ``mode=`` names -> ``XDP_FLAGS_*_MODE`` (``None``: the driver's native mode if any, else generic).
XDP_MODES: Dict[Optional[str], int] = {
    None: 0, "auto": 0,
    "generic": XDP_FLAGS_SKB_MODE, "skb": XDP_FLAGS_SKB_MODE,
    "driver": XDP_FLAGS_DRV_MODE, "native": XDP_FLAGS_DRV_MODE, "drv": XDP_FLAGS_DRV_MODE,
    "hw": XDP_FLAGS_HW_MODE, "offload": XDP_FLAGS_HW_MODE,
}
_VIAS = ("auto", "link", "netlink")
# errno from BPF_LINK_CREATE meaning "this kernel has no XDP links" (before 5.9)
_NO_LINK_ERRNOS = (_errno.EINVAL, _errno.EOPNOTSUPP, 524)

Replace = Union[bool, Any, int]


def _mode_flags(mode: Optional[str]) -> int:
    try:
        return XDP_MODES[mode.lower() if isinstance(mode, str) else mode]
    except KeyError:
        raise ValueError(f"unknown XDP mode {mode!r}; use one of "
                         f"{', '.join(k for k in XDP_MODES if k)}") from None


def _fd_of(obj: Any) -> int:
    return obj if isinstance(obj, int) and not isinstance(obj, bool) else obj.fd


def attach_xdp(prog: Any, iface: Union[str, int], *, mode: Optional[str] = None,
               via: str = "auto", replace: Replace = False) -> Link:
    """Attach XDP program ``prog`` to interface ``iface`` (name or index).

    ``mode``: ``"generic"`` (skb), ``"driver"`` (native) or ``"hw"`` (offload);
    ``None`` lets the kernel choose (native when the driver has it).
    ``via``: ``"link"`` (bpf_link only), ``"netlink"`` (RTM_SETLINK only) or
    ``"auto"``: a bpf_link, falling back to netlink on kernels without XDP links.
    ``replace`` (netlink only, so it implies ``via="netlink"`` under ``"auto"``):
    ``False`` fails with EBUSY if a program is attached in that mode, ``True``
    replaces whatever is attached, a Program (or prog fd) replaces exactly that
    program and fails with EEXIST if another one is attached.  A bpf_link's
    program is replaced with :meth:`Link.update` instead.
    """
    if via not in _VIAS:
        raise ValueError(f"via must be one of {', '.join(_VIAS)}, not {via!r}")
    flags = _mode_flags(mode)
    ptype = getattr(prog, "type", ProgType.XDP)
    if int(ptype) != ProgType.XDP:
        raise BPFError(f"attaching to XDP: program {prog.name} is of type "
                       f"{getattr(ptype, 'name', ptype)}, not XDP")
    ifindex, ifname = resolve_ifindex(iface)
    context = f"XDP program {prog.name} on {ifname}"
    if replace is not False and via == "link":
        raise NotSupportedError("replace= with an XDP bpf_link",
                                "replace a link's program with Link.update(); replace= is "
                                "for netlink attachments")
    if via == "link" or (via == "auto" and replace is False):
        try:
            fd = _sys.link_create(prog.fd, ifindex, AttachType.XDP, flags, context=context)
            return Link(fd, program=prog, kind="xdp", target=ifname)
        except SyscallError as e:
            if e.errno == _errno.EBUSY:
                raise SyscallError(e.call, e.errno, context,
                                   f"{ifname} already has an XDP program in this mode (a netlink "
                                   "attachment?); detach it or attach with replace=") from None
            if via == "link" or e.errno not in _NO_LINK_ERRNOS:
                raise
    return _attach_netlink(prog, ifindex, ifname, flags, replace, context)


def _attach_netlink(prog: Any, ifindex: int, ifname: str, flags: int, replace: Replace,
                    context: str) -> "XDPNetlinkLink":
    nl = RtNetlink()
    try:
        prog_ref = _sys.dup_fd(prog.fd)    # detach must name the program even if prog is closed
        try:
            expected: Optional[int] = None
            if replace is False:
                flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
            elif replace is not True:
                expected = _fd_of(replace)
            nl.xdp_set(ifindex, prog.fd, flags, expected_fd=expected, context=context)
        except BaseException:
            prog_ref.close()
            raise
    except BaseException:
        nl.close()
        raise
    return XDPNetlinkLink(nl, prog_ref, program=prog, ifindex=ifindex, ifname=ifname,
                          mode_flags=flags & XDP_FLAGS_MODES)


class XDPNetlinkLink(Link):
    """An XDP program attached with rtnetlink.

    Closing detaches it -- only if it is still this link's program (an atomic
    ``XDP_FLAGS_REPLACE``), so a program someone attached since is left alone.
    The interface, not a file descriptor, holds the program, so a link that is
    garbage collected, or still open at interpreter exit, detaches then too.
    :meth:`update` swaps the program atomically the same way.  Not pinnable.
    """

    def __init__(self, nl: RtNetlink, prog_ref: Any, *, program: Any, ifindex: int,
                 ifname: str, mode_flags: int):
        self._state = _XDPAttachment(nl, prog_ref, ifindex, ifname, mode_flags, program.name)
        super().__init__(None, program=program, kind="xdp", target=ifname,
                         detach=weakref.finalize(self, self._state.detach), is_bpf_link=False)
        self.ifindex = ifindex
        self.mode_flags = mode_flags

    def update(self, program: Any) -> None:
        """Replace the attached program with ``program``, atomically (fails with EEXIST if
        the attached program is no longer this link's)."""
        if self.closed:
            raise BPFError(f"link xdp:{self.target} is closed")
        st = self._state
        new_ref = _sys.dup_fd(program.fd)
        try:
            st.nl.xdp_set(self.ifindex, program.fd, self.mode_flags,
                          expected_fd=st.prog_ref.fileno(),
                          context=f"XDP program {program.name} on {self.target}")
        except BaseException:
            new_ref.close()
            raise
        st.prog_ref.close()
        st.prog_ref, st.prog_name = new_ref, program.name
        self.program = program

    def info(self) -> Dict[str, Any]:
        """The interface's XDP state: ``ifindex``, ``attached`` mode, ``prog_id`` (this
        link's mode), and the per-mode program ids."""
        st = self._state.nl.xdp_query(self.ifindex, context=f"XDP on {self.target}")
        return {"type": "xdp (netlink)", "ifindex": self.ifindex, "attached": st.attached,
                "prog_id": st.mode_prog_id(self.mode_flags), "drv_prog_id": st.drv_prog_id,
                "skb_prog_id": st.skb_prog_id, "hw_prog_id": st.hw_prog_id}


class _XDPAttachment:
    """What detaching a netlink XDP attachment needs; no reference back to the link,
    so that the link's finalizer can hold it."""

    def __init__(self, nl: RtNetlink, prog_ref: Any, ifindex: int, ifname: str,
                 mode_flags: int, prog_name: str):
        self.nl = nl
        self.prog_ref = prog_ref
        self.ifindex = ifindex
        self.ifname = ifname
        self.mode_flags = mode_flags
        self.prog_name = prog_name

    def detach(self) -> None:
        try:
            self.nl.xdp_set(self.ifindex, -1, self.mode_flags, expected_fd=self.prog_ref.fileno(),
                            context=f"detaching XDP program {self.prog_name} from {self.ifname}")
        except SyscallError as e:
            # ENODEV: the interface is gone; EEXIST: another program replaced ours.
            if e.errno not in (_errno.ENODEV, _errno.EEXIST):
                raise
        finally:
            self.nl.close()
            self.prog_ref.close()


def xdp_query(iface: Union[str, int]) -> XDPState:
    """The XDP programs attached to ``iface`` (per mode), in this thread's network namespace."""
    ifindex, ifname = resolve_ifindex(iface)
    with RtNetlink() as nl:
        return nl.xdp_query(ifindex, context=f"XDP on {ifname}")


@register("xdp")
def _auto_xdp(prog: Any, iface: Union[str, int, None] = None, **kw: Any) -> Link:
    if iface is None:
        raise NotSupportedError(f"attaching {prog.name} without an interface",
                                "XDP programs attach to a network interface: "
                                "prog.attach(\"eth0\") or prog.attach(ifindex)")
    return attach_xdp(prog, iface, **kw)
