"""Netfilter hooks: ``SEC("netfilter")`` programs as ``bpf_link``s (Linux 6.4+).

The program runs at a netfilter hook (``prerouting``, ``local_in``,
``forward``, ``local_out``, ``postrouting``) of a protocol family (``ipv4``,
``ipv6``) in the calling thread's network namespace, ordered among the other
hooks by ``priority`` (as iptables/nftables priorities; the extremes
INT_MIN/INT_MAX are reserved).  It returns ``NF_DROP`` (0) or ``NF_ACCEPT``
(1).  ``defrag=True`` asks the kernel to reassemble fragments first (6.6+;
the priority must then be above ``NF_IP_PRI_CONNTRACK_DEFRAG``, -400).
"""

from __future__ import annotations

import errno as _errno
from typing import Any, Dict, Union

from .. import sys as _sys
from ..consts import BPF_F_NETFILTER_IP_DEFRAG, AttachType
from ..errors import NotSupportedError, SyscallError
from .base import Link, register

__all__ = ["attach_netfilter", "NF_PROTOCOLS", "NF_HOOKS"]

NF_PROTOCOLS: Dict[str, int] = {"ipv4": 2, "inet": 2, "ipv6": 10}   # NFPROTO_*
NF_HOOKS: Dict[str, int] = {"prerouting": 0, "local_in": 1, "input": 1, "forward": 2,
                            "local_out": 3, "output": 3, "postrouting": 4}   # NF_INET_*


def _lookup(table: Dict[str, int], value: Union[str, int], what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return table[str(value).lower().replace("-", "_")]
    except KeyError:
        raise ValueError(f"unknown netfilter {what} {value!r}; use one of "
                         f"{', '.join(table)} or a number") from None


def attach_netfilter(prog: Any, hook: Union[str, int], *, pf: Union[str, int] = "ipv4",
                     priority: int = 0, defrag: bool = False) -> Link:
    """Attach netfilter program ``prog`` at ``hook`` of family ``pf`` with ``priority``."""
    pf_n = _lookup(NF_PROTOCOLS, pf, "protocol family")
    hook_n = _lookup(NF_HOOKS, hook, "hook")
    context = f"netfilter program {prog.name} at {pf}/{hook} priority {priority}"
    try:
        fd = _sys.link_create(prog.fd, 0, AttachType.NETFILTER, 0, netfilter_pf=pf_n,
                              netfilter_hooknum=hook_n, netfilter_priority=priority,
                              netfilter_flags=BPF_F_NETFILTER_IP_DEFRAG if defrag else 0,
                              context=context)
    except SyscallError as e:
        if e.errno in (_errno.EOPNOTSUPP, 524):
            raise NotSupportedError("netfilter bpf links", "the kernel was built without "
                                    "CONFIG_NETFILTER_BPF_LINK", min_kernel="6.4") from None
        if e.errno == _errno.ERANGE:
            raise SyscallError(e.call, e.errno, context, "priority out of range (INT_MIN/INT_MAX "
                               "are reserved; with defrag it must be above -400)") from None
        raise
    return Link(fd, program=prog, kind="netfilter", target=f"{pf}/{hook}@{priority}")


@register("netfilter")
def _auto_netfilter(prog: Any, hook: Union[str, int, None] = None, **kw: Any) -> Link:
    if hook is None:
        raise NotSupportedError(f"attaching {prog.name} without a hook",
                                "netfilter programs need a hook: "
                                "prog.attach(\"local_in\", pf=\"ipv4\", priority=-128)")
    return attach_netfilter(prog, hook, **kw)
