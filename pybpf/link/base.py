"""Link: an attachment of a program that detaches on close.

Every attach kind returns a :class:`Link`.  Most own a kernel ``bpf_link`` fd
(pinnable, updatable, with ``bpf_link_info``); attachments made through older
interfaces (perf event ioctl, netlink, PROG_ATTACH) are Links too, whose
``close()`` undoes exactly what the attach did.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional

from .. import sys as _sys
from ..errors import BPFError, NotSupportedError
from ..sys.fd import FD

__all__ = ["Link", "register", "ATTACHERS"]


class Link:
    """An attached program.  ``close()`` (or leaving ``with``) detaches it.

    ``kind`` is the attach kind ("raw_tp", "tracepoint", "xdp" ...), ``target``
    what it is attached to.  ``fd`` is the bpf_link (or perf event) fd when
    there is one.  ``detach`` is an optional callable for attachments that are
    not fds (netlink, PROG_ATTACH); ``extra`` are further fds owned by the link
    (e.g. the perf event behind a tracepoint link), closed after it.
    """

    def __init__(self, fd: Optional[FD], *, program: Any, kind: str, target: str,
                 extra: tuple = (), detach: Optional[Callable[[], None]] = None,
                 is_bpf_link: bool = True):
        self._fd = fd
        if fd is not None:
            fd.owner = f"{kind} link to {target}"
        self._extra = tuple(e for e in extra if e is not None)
        self._detach = detach
        self.program = program       # keeps the program alive while attached
        self.kind = kind
        self.target = target
        self.is_bpf_link = is_bpf_link and fd is not None
        self._closed = False

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise BPFError(f"link {self.kind}:{self.target} has no fd (attached via {self.kind} API)")
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Detach: undo the attachment and release every fd the link owns."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._detach is not None:
                self._detach()
        finally:
            if self._fd is not None:
                self._fd.close()
            for e in self._extra:
                e.close()

    def pin(self, path: str) -> None:
        """Pin the bpf_link on bpffs: the attachment then outlives this process."""
        if not self.is_bpf_link:
            raise NotSupportedError(f"pinning a {self.kind} attachment",
                                    "only bpf_link attachments can be pinned")
        _sys.obj_pin(self.fd, os.fspath(path), context=f"link {self.kind}:{self.target}")

    def update(self, program: Any) -> None:
        """Replace the program behind this link (BPF_LINK_UPDATE)."""
        if not self.is_bpf_link:
            raise NotSupportedError(f"updating a {self.kind} attachment", "not a bpf_link")
        _sys.link_update(self.fd, program.fd, context=f"link {self.kind}:{self.target}")
        self.program = program

    def info(self) -> Dict[str, Any]:
        """The kernel's bpf_link_info (id, type, prog_id and per-type fields)."""
        return _sys.link_info(self.fd)

    def detach_kernel(self) -> None:
        """BPF_LINK_DETACH: detach in the kernel while keeping the fd (and pins) valid."""
        _sys.link_detach(self.fd, context=f"link {self.kind}:{self.target}")

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "attached"
        return f"<pybpf.Link {self.kind}:{self.target} prog={getattr(self.program, 'name', '?')} {state}>"


# attach kind (ProgramSpec.attach_kind) -> function(program, *args, **kwargs) -> Link
ATTACHERS: Dict[str, Callable[..., Link]] = {}


def register(*kinds: str) -> Callable[[Callable[..., Link]], Callable[..., Link]]:
    """Decorator: make ``fn`` the auto-attach function for ``kinds``."""
    def deco(fn: Callable[..., Link]) -> Callable[..., Link]:
        for k in kinds:
            ATTACHERS[k] = fn
        return fn
    return deco
