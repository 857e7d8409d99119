"""bpf(2) link commands: link create/update/detach, raw tracepoints, iterators, task fd query."""

from __future__ import annotations

import errno
from typing import Any, Dict, Optional, Sequence

from ..consts import Cmd
from ._core import Buffer, Pins, attempt, bpf_call, bpf_fd, new, sizeof
from ._errors import bpf_error
from ._libc import ffi
from .fd import FD

__all__ = ["link_create", "link_update", "link_detach", "raw_tracepoint_open", "iter_create",
           "task_fd_query"]

_REPLACE = 1 << 2  # BPF_F_REPLACE


def link_create(prog_fd: int, target_fd: int, attach_type: int, flags: int = 0, *,
                target_btf_id: int = 0,
                iter_info: Optional[Buffer] = None,
                perf_event_bpf_cookie: int = 0,
                tracing_cookie: int = 0,
                kprobe_multi_flags: int = 0,
                kprobe_multi_syms: Optional[Sequence[str]] = None,
                kprobe_multi_addrs: Optional[Sequence[int]] = None,
                kprobe_multi_cookies: Optional[Sequence[int]] = None,
                uprobe_multi_path: Optional[str] = None,
                uprobe_multi_offsets: Optional[Sequence[int]] = None,
                uprobe_multi_ref_ctr_offsets: Optional[Sequence[int]] = None,
                uprobe_multi_cookies: Optional[Sequence[int]] = None,
                uprobe_multi_flags: int = 0,
                uprobe_multi_pid: int = 0,
                netfilter_pf: int = 0, netfilter_hooknum: int = 0, netfilter_priority: int = 0,
                netfilter_flags: int = 0,
                relative_fd: int = 0, relative_id: int = 0, expected_revision: int = 0,
                context: str = "") -> FD:
    """BPF_LINK_CREATE.  Returns the link's fd.

    ``prog_fd`` is the program (for struct_ops links: the map); ``target_fd`` the
    attach target (cgroup fd, ifindex for xdp/tcx/netkit, perf event fd, the program to
    replace for freplace, 0 for tracing).  The per-attach-type part of the attribute is
    a union; give the arguments of one group only:

    * ``target_btf_id`` (+ ``tracing_cookie``): fentry/fexit/fmod_ret/lsm/freplace
    * ``iter_info``: iterators (a packed ``union bpf_iter_link_info``)
    * ``perf_event_bpf_cookie``: perf event (kprobe/uprobe/tracepoint) links
    * ``kprobe_multi_*``: ``syms`` (names) or ``addrs``, optional ``cookies``, ``flags``
    * ``uprobe_multi_*``: ``path``, ``offsets``, optional ``ref_ctr_offsets``,
      ``cookies``, ``flags``, ``pid``
    * ``netfilter_*``: ``pf``, ``hooknum``, ``priority``, ``flags``
    * ``relative_fd``/``relative_id``/``expected_revision``: tcx, netkit and cgroup mprog
      links (their layouts coincide)
    """
    groups = [name for name, used in (
        ("iter_info", iter_info is not None),
        ("perf_event", bool(perf_event_bpf_cookie)),
        ("tracing", bool(tracing_cookie)),
        ("kprobe_multi", bool(kprobe_multi_syms or kprobe_multi_addrs or kprobe_multi_cookies
                              or kprobe_multi_flags)),
        ("uprobe_multi", uprobe_multi_path is not None),
        ("netfilter", bool(netfilter_pf or netfilter_hooknum or netfilter_priority
                           or netfilter_flags)),
        ("mprog", bool(relative_fd or relative_id or expected_revision)),
    ) if used]
    if target_btf_id and groups and groups != ["tracing"]:
        groups.insert(0, "target_btf_id")
    if len(groups) > 1:
        raise ValueError(f"link_create: arguments of {', '.join(groups)} share one union; "
                         "give one group")
    pins = Pins()
    a = new("link_create_attr")
    a.prog_fd = prog_fd
    a.target_fd = target_fd
    a.attach_type = attach_type
    a.flags = flags
    if target_btf_id:
        a.target_btf_id = target_btf_id
    group = groups[0] if groups else None
    if group == "iter_info":
        assert iter_info is not None
        a.iter_info = pins.buf(iter_info)
        a.iter_info_len = len(iter_info)
    elif group == "perf_event":
        a.perf_event.bpf_cookie = perf_event_bpf_cookie
    elif group == "tracing":
        a.tracing.cookie = tracing_cookie
    elif group == "kprobe_multi":
        _kprobe_multi(a.kprobe_multi, pins, kprobe_multi_syms, kprobe_multi_addrs,
                      kprobe_multi_cookies, kprobe_multi_flags)
    elif group == "uprobe_multi":
        _uprobe_multi(a.uprobe_multi, pins, uprobe_multi_path, uprobe_multi_offsets or (),
                      uprobe_multi_ref_ctr_offsets, uprobe_multi_cookies, uprobe_multi_flags,
                      uprobe_multi_pid)
    elif group == "netfilter":
        nf = a.netfilter
        nf.pf = netfilter_pf
        nf.hooknum = netfilter_hooknum
        nf.priority = netfilter_priority
        nf.flags = netfilter_flags
    elif group == "mprog":
        if relative_fd and relative_id:
            raise ValueError("relative_fd and relative_id share a field; give one")
        a.tcx.relative_fd = relative_fd or relative_id
        a.tcx.expected_revision = expected_revision
    return bpf_fd(Cmd.LINK_CREATE, a, sizeof("link_create_attr"), context)


def _kprobe_multi(km: Any, pins: Pins, syms: Optional[Sequence[str]],
                  addrs: Optional[Sequence[int]], cookies: Optional[Sequence[int]],
                  flags: int) -> None:
    if bool(syms) == bool(addrs):
        raise ValueError("kprobe_multi needs either syms or addrs")
    cnt = len(syms) if syms else len(addrs)  # type: ignore[arg-type]
    if cookies and len(cookies) != cnt:
        raise ValueError(f"kprobe_multi: {len(cookies)} cookies for {cnt} probes")
    km.flags = flags
    km.cnt = cnt
    if syms:
        km.syms = pins.strings(syms)
    else:
        km.addrs = pins.array("uint64_t", addrs or ())
    if cookies:
        km.cookies = pins.array("uint64_t", cookies)


def _uprobe_multi(um: Any, pins: Pins, path: Optional[str], offsets: Sequence[int],
                  ref_ctr_offsets: Optional[Sequence[int]], cookies: Optional[Sequence[int]],
                  flags: int, pid: int) -> None:
    cnt = len(offsets)
    if not cnt:
        raise ValueError("uprobe_multi needs at least one offset")
    for name, arr in (("ref_ctr_offsets", ref_ctr_offsets), ("cookies", cookies)):
        if arr and len(arr) != cnt:
            raise ValueError(f"uprobe_multi: {len(arr)} {name} for {cnt} offsets")
    um.path = pins.cstr(path)
    um.offsets = pins.array("uint64_t", offsets)
    if ref_ctr_offsets:
        um.ref_ctr_offsets = pins.array("uint64_t", ref_ctr_offsets)
    if cookies:
        um.cookies = pins.array("uint64_t", cookies)
    um.cnt = cnt
    um.flags = flags
    um.pid = pid


def link_update(link_fd: int, new_prog_fd: int, *, flags: int = 0, old_prog_fd: int = 0,
                context: str = "") -> None:
    """BPF_LINK_UPDATE: swap the link's program (or struct_ops map) for ``new_prog_fd``.

    With ``old_prog_fd`` the update only happens if that is the current program
    (``BPF_F_REPLACE`` is added to ``flags``).
    """
    a = new("link_update_attr")
    a.link_fd = link_fd
    a.new_prog_fd = new_prog_fd
    a.flags = flags | (_REPLACE if old_prog_fd else 0)
    a.old_prog_fd = old_prog_fd
    bpf_call(Cmd.LINK_UPDATE, a, sizeof("link_update_attr"), context)


def link_detach(link_fd: int, *, context: str = "") -> None:
    """BPF_LINK_DETACH: detach the link from its target; the fd stays open (defunct)."""
    a = new("link_detach_attr")
    a.link_fd = link_fd
    bpf_call(Cmd.LINK_DETACH, a, sizeof("link_detach_attr"), context)


def raw_tracepoint_open(name: Optional[str], prog_fd: int, *, cookie: int = 0,
                        context: str = "") -> FD:
    """BPF_RAW_TRACEPOINT_OPEN: attach a raw tracepoint program to tracepoint ``name``
    (``None`` for tp_btf/fentry-style programs, whose target is in the program);
    ``cookie`` needs 6.10+."""
    pins = Pins()
    a = new("raw_tp_open_attr")
    a.name = pins.cstr(name)
    a.prog_fd = prog_fd
    a.cookie = cookie
    return bpf_fd(Cmd.RAW_TRACEPOINT_OPEN, a, sizeof("raw_tp_open_attr"), context)


def iter_create(link_fd: int, flags: int = 0, *, context: str = "") -> FD:
    """BPF_ITER_CREATE: a readable fd producing the iterator program's output."""
    a = new("iter_create_attr")
    a.link_fd = link_fd
    a.flags = flags
    return bpf_fd(Cmd.ITER_CREATE, a, sizeof("iter_create_attr"), context)


def task_fd_query(pid: int, fd: int, flags: int = 0, *, context: str = "") -> Dict[str, Any]:
    """BPF_TASK_FD_QUERY: what the perf event / raw tracepoint fd ``fd`` of process ``pid``
    has attached.  Returns ``prog_id``, ``fd_type`` (:class:`~pybpf.consts.TaskFdType`),
    ``name`` (tracepoint, function or file), ``probe_offset``, ``probe_addr``."""
    size = sizeof("task_fd_query_attr")
    buf_len = 256
    while True:
        pins = Pins()
        buf = pins.new("char", buf_len)
        a = new("task_fd_query_attr")
        a.pid = pid
        a.fd = fd
        a.flags = flags
        a.buf = pins.addr(buf)
        a.buf_len = buf_len
        r = attempt(Cmd.TASK_FD_QUERY, a, size)
        if r == -errno.ENOSPC and a.buf_len >= buf_len:
            buf_len = a.buf_len + 1
            continue
        if r < 0:
            raise bpf_error(Cmd.TASK_FD_QUERY, -r, context)
        return {"prog_id": a.prog_id, "fd_type": a.fd_type,
                "name": ffi.string(buf).decode("utf-8", "replace"),
                "probe_offset": a.probe_offset, "probe_addr": a.probe_addr}
