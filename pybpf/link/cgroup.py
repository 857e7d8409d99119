"""cgroup programs: attached to a cgroup v2 directory, run for the processes inside it.

Covers every cgroup attach type: skb ingress/egress (``CGROUP_SKB``), socket
create/release/post-bind (``CGROUP_SOCK``), sock_addr hooks (connect, bind,
sendmsg, recvmsg, getpeername, getsockname for IPv4/IPv6/unix), sockops,
sysctl, get/setsockopt and device access.  The attach type comes from the
SEC() name (``cgroup/connect4`` -> ``CGROUP_INET4_CONNECT``); sections that
do not name one (``cgroup/skb``) need ``attach_type=``.

* ``bpf_link`` (``BPF_LINK_CREATE`` on the cgroup fd, Linux 5.7+): the
  default; pinnable and updatable, several links per hook.
* ``BPF_PROG_ATTACH`` with ``BPF_F_ALLOW_MULTI`` (any kernel, or
  ``via="attach"``): undone with ``BPF_PROG_DETACH`` on close.

The link keeps its own fd of the cgroup (and, for PROG_ATTACH, of the
program) so that detaching works whatever the caller closed meanwhile.
"""

from __future__ import annotations

import errno as _errno
import os
import weakref
from typing import Any, Dict, Optional, Tuple, Union, cast

from .. import sys as _sys
from ..consts import AttachFlags, AttachType
from ..errors import BPFError, NotSupportedError, SyscallError
from ..sys.fd import FD
from .base import Link, register

__all__ = ["attach_cgroup", "open_cgroup", "program_attach_type", "ProgAttachLink"]

CgroupTarget = Union[str, "os.PathLike[str]", int, Any]
_VIAS = ("auto", "link", "attach")
_NO_LINK_ERRNOS = (_errno.EINVAL, _errno.EOPNOTSUPP, 524)
# Short names for the cgroup/skb section, which has no expected attach type.
_ALIASES = {"ingress": AttachType.CGROUP_INET_INGRESS, "egress": AttachType.CGROUP_INET_EGRESS}


def program_attach_type(prog: Any, attach_type: Union[None, int, str], family: str) -> AttachType:
    """The attach type to use for ``prog``: ``attach_type`` (an AttachType, its value, its
    name without ``BPF_``, or a short alias) or else the one its SEC() name implies.

    Raises NotSupportedError naming ``family`` when neither says.
    """
    if attach_type is None:
        spec = getattr(prog, "spec", None)
        if spec is not None and _section_names_attach_type(spec):
            return AttachType(spec.expected_attach_type)
        raise NotSupportedError(f"attaching {prog.name} ({getattr(spec, 'section', '?')})",
                                f"the section does not name a {family} attach type: "
                                "pass attach_type=")
    if isinstance(attach_type, str):
        key = attach_type.upper().removeprefix("BPF_")
        if attach_type.lower() in _ALIASES:
            return _ALIASES[attach_type.lower()]
        try:
            return AttachType[key]
        except KeyError:
            raise ValueError(f"unknown attach type {attach_type!r}") from None
    return AttachType(int(attach_type))


def _section_names_attach_type(spec: Any) -> bool:
    """Whether the program's SEC() entry has an expected attach type (value 0 is
    ``CGROUP_INET_INGRESS``, so the spec's field alone cannot tell)."""
    from ..elf.sections import parse_section
    try:
        return parse_section(spec.section, strict=False).expected_attach_type is not None
    except Exception:  # a hand-built spec with an unknown section name
        return bool(spec.expected_attach_type)


def open_cgroup(cgroup: CgroupTarget) -> Tuple[FD, str]:
    """An owned fd of a cgroup v2 directory given as a path, an fd or an object with
    ``fileno()`` (the caller's fd is duplicated, not taken), and a printable name."""
    if isinstance(cgroup, int) and not isinstance(cgroup, bool):
        return _sys.dup_fd(cgroup), f"cgroup fd {cgroup}"
    if hasattr(cgroup, "fileno"):
        return _sys.dup_fd(cgroup.fileno()), f"cgroup fd {cgroup.fileno()}"
    path = os.fspath(cast("Union[str, os.PathLike[str]]", cgroup))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SyscallError("open", e.errno or _errno.ENOENT, f"cgroup {path}",
                           "expected a cgroup v2 directory (e.g. under /sys/fs/cgroup)") from None
    return FD(fd), path


def attach_cgroup(prog: Any, cgroup: CgroupTarget, attach_type: Union[None, int, str] = None,
                  *, via: str = "auto", flags: int = AttachFlags.ALLOW_MULTI,
                  replace: Any = None) -> Link:
    """Attach cgroup program ``prog`` to ``cgroup`` (a cgroup v2 directory path or fd).

    ``attach_type`` overrides the one the section implies (needed for
    ``cgroup/skb``: ``"ingress"``/``"egress"``).  ``via``: ``"link"``,
    ``"attach"`` (BPF_PROG_ATTACH) or ``"auto"`` (a link, falling back to
    PROG_ATTACH on kernels without cgroup links).  ``flags`` and ``replace``
    (a Program to swap out atomically, BPF_F_REPLACE) apply to PROG_ATTACH.
    """
    if via not in _VIAS:
        raise ValueError(f"via must be one of {', '.join(_VIAS)}, not {via!r}")
    atype = program_attach_type(prog, attach_type, "cgroup")
    cg_fd, name = open_cgroup(cgroup)
    context = f"program {prog.name} on {name} ({atype.name})"
    try:
        if via != "attach" and replace is None:
            try:
                fd = _sys.link_create(prog.fd, cg_fd.fileno(), atype, context=context)
                return Link(fd, program=prog, kind="cgroup", target=name, extra=(cg_fd,))
            except SyscallError as e:
                if via == "link" or e.errno not in _NO_LINK_ERRNOS:
                    raise _explain(e, context)
        return _prog_attach(prog, cg_fd, name, atype, int(flags), replace, context)
    except BaseException:
        cg_fd.close()
        raise


def _prog_attach(prog: Any, cg_fd: FD, name: str, atype: AttachType, flags: int, replace: Any,
                 context: str) -> "ProgAttachLink":
    prog_ref = _sys.dup_fd(prog.fd)
    try:
        replace_fd = 0
        if replace is not None:
            flags |= AttachFlags.REPLACE
            replace_fd = replace.fd
        try:
            _sys.prog_attach(prog.fd, cg_fd.fileno(), atype, flags, replace_bpf_fd=replace_fd,
                             context=context)
        except SyscallError as e:
            raise _explain(e, context)
    except BaseException:
        prog_ref.close()
        raise
    return ProgAttachLink(program=prog, kind="cgroup", target=name, target_fd=cg_fd,
                          attach_type=atype, prog_ref=prog_ref,
                          flags=flags & ~AttachFlags.REPLACE, what=context)


class ProgAttachLink(Link):
    """An attachment made with BPF_PROG_ATTACH rather than a bpf_link (cgroup programs on
    kernels before 5.7 or with ``via="attach"``, sockmap programs before 6.10).

    The target (a cgroup, a sockmap) holds the program, possibly beyond this
    process, so closing the link -- or its garbage collection, or interpreter
    exit -- does BPF_PROG_DETACH.  The link owns fds of the target and of the
    program for that.  :meth:`update` swaps the program (atomically with
    BPF_F_REPLACE where the hook takes several programs).  Not pinnable.
    """

    def __init__(self, *, program: Any, kind: str, target: str, target_fd: FD,
                 attach_type: AttachType, prog_ref: FD, flags: int, what: str):
        self._state = _ProgAttachment(target_fd, attach_type, prog_ref, what)
        super().__init__(None, program=program, kind=kind, target=target,
                         detach=weakref.finalize(self, self._state.detach), is_bpf_link=False)
        self.attach_type = attach_type
        self.flags = flags

    def update(self, program: Any) -> None:
        """Attach ``program`` in place of this link's program."""
        if self.closed:
            raise BPFError(f"link {self.kind}:{self.target} is closed")
        st = self._state
        new_ref = _sys.dup_fd(program.fd)
        try:
            if self.flags & AttachFlags.ALLOW_MULTI:
                _sys.prog_attach(program.fd, st.target_fd.fileno(), self.attach_type,
                                 self.flags | AttachFlags.REPLACE,
                                 replace_bpf_fd=st.prog_ref.fileno(), context=st.what)
            else:
                _sys.prog_attach(program.fd, st.target_fd.fileno(), self.attach_type,
                                 self.flags, context=st.what)
        except BaseException:
            new_ref.close()
            raise
        st.prog_ref.close()
        st.prog_ref = new_ref
        self.program = program

    def info(self) -> Dict[str, Any]:
        """``attach_type`` and ``prog_ids`` attached to the target (BPF_PROG_QUERY)."""
        st = self._state
        q = _sys.prog_query(st.target_fd.fileno(), self.attach_type, context=st.what)
        return {"type": "prog_attach", "attach_type": self.attach_type,
                "prog_id": _sys.prog_info(st.prog_ref.fileno())["id"], "prog_ids": q["prog_ids"]}


class _ProgAttachment:
    """What BPF_PROG_DETACH needs; no reference back to the link (its finalizer holds this)."""

    def __init__(self, target_fd: FD, attach_type: AttachType, prog_ref: FD, what: str):
        self.target_fd = target_fd
        self.attach_type = attach_type
        self.prog_ref = prog_ref
        self.what = what

    def detach(self) -> None:
        try:
            _sys.prog_detach(self.target_fd.fileno(), self.attach_type, self.prog_ref.fileno(),
                             context=f"detaching {self.what}")
        except SyscallError as e:
            if e.errno != _errno.ENOENT:   # already detached (by someone else)
                raise
        finally:
            self.prog_ref.close()
            self.target_fd.close()


def _explain(e: SyscallError, context: str) -> SyscallError:
    """Add what EBADF means here: the fd is not a cgroup v2 directory."""
    if e.errno == _errno.EBADF:
        return SyscallError(e.call, e.errno, context, "not a cgroup v2 directory (cgroup2 is "
                            "mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified)")
    return e


@register("cgroup")
def _auto_cgroup(prog: Any, cgroup: Optional[CgroupTarget] = None, **kw: Any) -> Link:
    if cgroup is None:
        raise NotSupportedError(f"attaching {prog.name} without a cgroup",
                                "cgroup programs attach to a cgroup v2 directory: "
                                "prog.attach(\"/sys/fs/cgroup/my.slice\") or prog.attach(fd)")
    return attach_cgroup(prog, cgroup, **kw)
