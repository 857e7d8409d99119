"""Attaching programs.  Every attachment is a :class:`Link` that detaches on close.

One module per attach family registers its auto-attach function for the
``attach_kind`` of SEC() names (see :mod:`pybpf.elf.sections`);
:func:`attach_program` dispatches on it.  Explicit attach functions
(``attach_tracepoint`` ...) take their arguments directly.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import NotSupportedError
from .base import ATTACHERS, Link, register
from .tracepoint import attach_raw_tracepoint, attach_tracepoint

__all__ = ["Link", "attach_program", "attach_raw_tracepoint", "attach_tracepoint", "register",
           "AUTO_ATTACH_KINDS", "can_auto_attach"]

# Kinds whose SEC() name says everything needed to attach (libbpf's skeleton auto-attach);
# networking and cgroup programs need a target (interface, cgroup, socket, map) and are skipped.
AUTO_ATTACH_KINDS = frozenset({"tracepoint", "raw_tp", "tp_btf", "fentry", "fexit", "fmod_ret",
                               "lsm", "iter", "kprobe", "kretprobe", "uprobe", "uretprobe", "usdt",
                               "ksyscall", "kretsyscall", "uprobe_multi", "uretprobe_multi",
                               "kprobe_multi", "kretprobe_multi"})
_NEEDS_TARGET_IN_SECTION = frozenset({"kprobe", "kretprobe", "uprobe", "uretprobe", "usdt",
                                      "ksyscall", "kretsyscall", "raw_tp", "tracepoint",
                                      "uprobe_multi", "uretprobe_multi", "kprobe_multi",
                                      "kretprobe_multi"})


# Iterators over the elements of one map or socket storage need that map: no auto-attach.
_ITER_NEEDS_MAP = frozenset({"bpf_map_elem", "bpf_sk_storage_map", "sockmap"})


def can_auto_attach(spec) -> bool:
    """Whether ``attach_all`` attaches this program: its section names the hook completely."""
    kind = spec.attach_kind
    if kind not in AUTO_ATTACH_KINDS:
        return False
    if kind == "iter" and spec.attach_to in _ITER_NEEDS_MAP:
        return False
    return bool(spec.attach_to) or kind not in _NEEDS_TARGET_IN_SECTION

# Attach families, imported for their registrations.  Each module owns one family.
_FAMILIES = ("tracepoint", "xdp", "tc", "cgroup", "sockets", "netfilter", "perf_event", "uprobe",
             "usdt", "kprobe", "tracing", "iter")
for _m in _FAMILIES:
    importlib.import_module(f"{__name__}.{_m}")


def attach_program(prog: Any, *args: Any, **kwargs: Any) -> Link:
    """Attach ``prog`` as its section name says (``SEC("raw_tp/sys_enter")`` ...).

    Positional/keyword arguments go to the family's attach function (e.g.
    ``target=...``, an interface, a cgroup path, a pid).
    """
    spec = prog.spec
    kind = spec.attach_kind if spec is not None else None
    fn = ATTACHERS.get(kind) if kind else None
    if fn is None:
        raise NotSupportedError(f"attaching {prog.name} ({spec.section if spec else 'no section'})",
                                f"pybpf cannot attach {kind or 'this kind of'} programs yet")
    return fn(prog, *args, **kwargs)
