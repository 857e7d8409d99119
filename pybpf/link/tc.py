"""tc programs (``SCHED_CLS``) on an interface's ingress or egress.

* **tcx** (Linux 6.6+): a ``bpf_link`` with attach type ``TCX_INGRESS`` or
  ``TCX_EGRESS`` on the ifindex; programs run in a list whose order is set
  with ``before=``/``after=`` anchors (BPF_F_BEFORE/AFTER) and guarded by
  ``expected_revision``.  ``SEC("tcx/ingress")``, ``SEC("tc/egress")``...
* **netlink** (any kernel): a ``clsact`` qdisc and a ``cls_bpf`` filter in
  direct-action mode, as ``tc filter add ... bpf da`` makes;
  ``SEC("tc")``/``SEC("classifier")`` programs attach this way, and tcx falls
  back to it when the kernel has no tcx.  The :class:`TCNetlinkLink` deletes
  its filter on close, and the ``clsact`` qdisc too if it created it and no
  other filter is left under it.

Direct action means the program's return value is the verdict (``TC_ACT_OK``,
``TC_ACT_SHOT``...).  The interface is looked up, and the attachment made, in
the calling thread's network namespace.
"""

from __future__ import annotations

import errno as _errno
import weakref
from typing import Any, Dict, Optional, Tuple, Union

from .. import sys as _sys
from ..consts import AttachFlags, AttachType, ProgType
from ..errors import BPFError, NotSupportedError, SyscallError
from .base import Link, register
from .netlink import TC_PARENT_EGRESS, TC_PARENT_INGRESS, RtNetlink, TCFilter, resolve_ifindex

__all__ = ["attach_tcx", "attach_tc", "TCNetlinkLink", "tc_filters"]

_DIRECTIONS: Dict[str, Tuple[AttachType, int]] = {
    "ingress": (AttachType.TCX_INGRESS, TC_PARENT_INGRESS),
    "egress": (AttachType.TCX_EGRESS, TC_PARENT_EGRESS),
}
_BY_ATTACH_TYPE = {int(AttachType.TCX_INGRESS): "ingress", int(AttachType.TCX_EGRESS): "egress"}
_VIAS = ("auto", "link", "netlink")
# errno from BPF_LINK_CREATE meaning "no tcx here" (before 6.6)
_NO_TCX_ERRNOS = (_errno.EINVAL, _errno.EOPNOTSUPP, 524)

Anchor = Union[None, bool, int, Any]


def _check_sched_cls(prog: Any, what: str) -> None:
    ptype = getattr(prog, "type", ProgType.SCHED_CLS)
    if int(ptype) != ProgType.SCHED_CLS:
        name = ptype.name if isinstance(ptype, ProgType) else str(ptype)
        raise BPFError(f"{what}: program {prog.name} is of type {name}; tc and tcx run "
                       "SCHED_CLS programs (SEC(\"tc\"), SEC(\"tcx/ingress\") ...)")


def _direction(prog: Any, direction: Optional[str]) -> str:
    if direction is None:
        spec = getattr(prog, "spec", None)
        eat = spec.expected_attach_type if spec is not None else None
        direction = _BY_ATTACH_TYPE.get(int(eat)) if eat is not None else None
        if direction is None:
            raise NotSupportedError(f"attaching {prog.name} without a direction",
                                    "say direction=\"ingress\" or \"egress\" (or use "
                                    "SEC(\"tcx/ingress\")/SEC(\"tcx/egress\"))")
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be 'ingress' or 'egress', not {direction!r}")
    return direction


def _anchor(before: Anchor, after: Anchor) -> Tuple[int, int, int]:
    """``(flags, relative_fd, relative_id)`` for a tcx ``before=``/``after=`` anchor.

    An anchor is ``True`` (first/last of the list), a Program, a Link (BPF_F_LINK)
    or a program id (BPF_F_ID).
    """
    if before is not None and before is not False and after is not None and after is not False:
        raise ValueError("give before= or after=, not both")
    anchor, flag = (before, AttachFlags.BEFORE) if before not in (None, False) else (after, AttachFlags.AFTER)
    if anchor in (None, False):
        return 0, 0, 0
    if anchor is True:
        return int(flag), 0, 0
    if isinstance(anchor, int):
        return int(flag | AttachFlags.ID), 0, anchor
    if isinstance(anchor, Link):
        return int(flag | AttachFlags.LINK), anchor.fd, 0
    return int(flag), anchor.fd, 0


def attach_tcx(prog: Any, iface: Union[str, int], direction: Optional[str] = None, *,
               before: Anchor = None, after: Anchor = None, expected_revision: int = 0,
               via: str = "auto") -> Link:
    """Attach tc program ``prog`` to ``iface``'s ingress or egress with a tcx link.

    ``direction`` defaults to the program's section (``tcx/ingress``...).
    ``before``/``after`` place it in the tcx list: ``True`` (first/last), a
    Program, a Link or a program id.  ``expected_revision`` (non-zero) makes the
    attach fail with ESTALE if the list changed since that revision.  ``via``:
    ``"link"`` (tcx only), ``"netlink"`` (clsact + cls_bpf), ``"auto"`` (tcx,
    falling back to netlink on kernels without tcx; anchors have no netlink
    equivalent and make the fallback fail with NotSupportedError).
    """
    if via not in _VIAS:
        raise ValueError(f"via must be one of {', '.join(_VIAS)}, not {via!r}")
    _check_sched_cls(prog, "attaching to tcx")
    direction = _direction(prog, direction)
    if via == "netlink":
        return attach_tc(prog, iface, direction)
    ifindex, ifname = resolve_ifindex(iface)
    attach_type = _DIRECTIONS[direction][0]
    flags, rel_fd, rel_id = _anchor(before, after)
    context = f"tcx program {prog.name} on {ifname} {direction}"
    try:
        fd = _sys.link_create(prog.fd, ifindex, attach_type, flags, relative_fd=rel_fd,
                              relative_id=rel_id, expected_revision=expected_revision,
                              context=context)
        return Link(fd, program=prog, kind="tcx", target=f"{ifname}/{direction}")
    except SyscallError as e:
        if via == "link" or e.errno not in _NO_TCX_ERRNOS or _kernel_has_tcx():
            raise
    if flags or expected_revision:
        raise NotSupportedError("tcx before=/after=/expected_revision", "this kernel has no tcx "
                                "links and netlink filters have no such ordering", min_kernel="6.6")
    return attach_tc(prog, iface, direction)


def _kernel_has_tcx() -> bool:
    """Whether BPF_PROG_QUERY knows tcx on loopback (so an EINVAL came from the arguments,
    not from a kernel without tcx)."""
    try:
        _sys.prog_query(1, AttachType.TCX_INGRESS, max_progs=1)
    except SyscallError:
        return False
    return True


def attach_tc(prog: Any, iface: Union[str, int], direction: str = "ingress", *,
              priority: int = 0, handle: int = 0, replace: bool = False) -> "TCNetlinkLink":
    """Attach tc program ``prog`` as a direct-action ``cls_bpf`` filter (netlink).

    The ``clsact`` qdisc is added to ``iface`` if missing.  ``priority`` and
    ``handle`` 0 let the kernel pick them (the link records the chosen ones);
    ``replace=True`` (with both given) replaces the program of an existing
    filter there instead of failing with EEXIST.
    """
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be 'ingress' or 'egress', not {direction!r}")
    if replace and not (priority and handle):
        raise ValueError("replace=True needs the priority= and handle= of the filter to replace")
    _check_sched_cls(prog, "adding a tc filter")
    ifindex, ifname = resolve_ifindex(iface)
    parent = _DIRECTIONS[direction][1]
    context = f"tc program {prog.name} on {ifname} {direction}"
    nl = RtNetlink()
    created = False
    try:
        created = nl.clsact_add(ifindex, context=context)
        handle, priority = nl.bpf_filter_add(ifindex, parent, prog.fd, name=prog.name,
                                             handle=handle, priority=priority, replace=replace,
                                             context=context)
    except BaseException:
        try:
            if created:
                nl.clsact_del(ifindex, context=context)
        except SyscallError:
            pass
        finally:
            nl.close()
        raise
    return TCNetlinkLink(nl, program=prog, ifindex=ifindex, ifname=ifname, direction=direction,
                         handle=handle, priority=priority, owns_qdisc=created)


class TCNetlinkLink(Link):
    """A ``cls_bpf`` direct-action filter under the ``clsact`` qdisc of an interface.

    ``handle`` and ``priority`` identify the filter.  Closing deletes it, then
    the qdisc if this link added it and no filter is left in either direction.
    The interface holds the filter, so a link garbage collected or still open
    at interpreter exit deletes it then.  :meth:`update` replaces the filter's
    program in place.  Not pinnable.
    """

    def __init__(self, nl: RtNetlink, *, program: Any, ifindex: int, ifname: str,
                 direction: str, handle: int, priority: int, owns_qdisc: bool):
        self._state = _TCAttachment(nl, ifindex, _DIRECTIONS[direction][1], handle, priority,
                                    owns_qdisc, f"tc program {program.name} on {ifname}/{direction}")
        super().__init__(None, program=program, kind="tc", target=f"{ifname}/{direction}",
                         detach=weakref.finalize(self, self._state.detach), is_bpf_link=False)
        self.ifindex = ifindex
        self.direction = direction
        self.parent = self._state.parent
        self.handle = handle
        self.priority = priority
        self.owns_qdisc = owns_qdisc

    def update(self, program: Any) -> None:
        """Replace the filter's program (same handle and priority)."""
        if self.closed:
            raise BPFError(f"link tc:{self.target} is closed")
        self._state.nl.bpf_filter_add(self.ifindex, self.parent, program.fd, name=program.name,
                                      handle=self.handle, priority=self.priority, replace=True,
                                      context=f"tc program {program.name} on {self.target}")
        self.program = program

    def filter(self) -> Optional[TCFilter]:
        """This link's filter as the kernel dumps it (None if it is gone)."""
        for f in self._state.nl.filters(self.ifindex, self.parent, context=f"tc on {self.target}"):
            if f.handle == self.handle and f.priority == self.priority:
                return f
        return None

    def info(self) -> Dict[str, Any]:
        """``ifindex``, ``direction``, ``handle``, ``priority``, ``prog_id``, ``name`` and
        ``direct_action`` of the filter (``prog_id`` 0 if it is gone)."""
        f = self.filter()
        return {"type": "tc (netlink)", "ifindex": self.ifindex, "direction": self.direction,
                "handle": self.handle, "priority": self.priority,
                "prog_id": f.prog_id if f else 0, "name": f.name if f else "",
                "direct_action": f.direct_action if f else False}


class _TCAttachment:
    """What deleting a filter needs; no reference back to the link (its finalizer holds this)."""

    def __init__(self, nl: RtNetlink, ifindex: int, parent: int, handle: int, priority: int,
                 owns_qdisc: bool, what: str):
        self.nl = nl
        self.ifindex = ifindex
        self.parent = parent
        self.handle = handle
        self.priority = priority
        self.owns_qdisc = owns_qdisc
        self.what = what

    def detach(self) -> None:
        context = f"detaching {self.what}"
        gone = (_errno.ENOENT, _errno.ENODEV, _errno.EINVAL)  # EINVAL: the qdisc is gone
        nl = self.nl
        try:
            try:
                nl.filter_del(self.ifindex, self.parent, self.handle, self.priority,
                              context=context)
            except SyscallError as e:
                if e.errno not in gone:
                    raise
            if self.owns_qdisc:
                try:
                    if not any(nl.filters(self.ifindex, p, context=context)
                               for p in (TC_PARENT_INGRESS, TC_PARENT_EGRESS)):
                        nl.clsact_del(self.ifindex, context=context)
                except SyscallError as e:
                    if e.errno not in gone:
                        raise
        finally:
            nl.close()


def tc_filters(iface: Union[str, int], direction: str = "ingress") -> list:
    """The tc filters (:class:`~pybpf.link.netlink.TCFilter`) on ``iface``'s clsact
    ``direction``, in this thread's network namespace."""
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be 'ingress' or 'egress', not {direction!r}")
    ifindex, ifname = resolve_ifindex(iface)
    with RtNetlink() as nl:
        try:
            return nl.filters(ifindex, _DIRECTIONS[direction][1], context=f"tc on {ifname}")
        except SyscallError as e:
            if e.errno == _errno.EINVAL:   # no clsact qdisc
                return []
            raise


def _need_iface(prog: Any, iface: Any, what: str) -> None:
    if iface is None:
        raise NotSupportedError(f"attaching {prog.name} without an interface",
                                f"{what} programs attach to a network interface: "
                                "prog.attach(\"eth0\") or prog.attach(ifindex)")


@register("tcx")
def _auto_tcx(prog: Any, iface: Union[str, int, None] = None, **kw: Any) -> Link:
    _need_iface(prog, iface, "tcx")
    return attach_tcx(prog, iface, **kw)   # type: ignore[arg-type]


@register("tc")
def _auto_tc(prog: Any, iface: Union[str, int, None] = None, direction: str = "ingress",
             **kw: Any) -> Link:
    _need_iface(prog, iface, "tc")
    return attach_tc(prog, iface, direction, **kw)   # type: ignore[arg-type]
