"""bpf(2) program commands: load, test run, legacy attach/detach/query, bind map, streams."""

from __future__ import annotations

import errno
from typing import Any, Dict, Optional, Sequence

from ..consts import Cmd
from ._core import Buffer, Pins, attempt, bpf_call, new, set_name, sizeof
from ._errors import bpf_error
from ._libc import ffi
from ..errors import SyscallError
from .fd import FD

__all__ = ["prog_load", "prog_test_run", "prog_attach", "prog_detach", "prog_query",
           "prog_bind_map", "prog_stream_read", "PROG_LOAD_EAGAIN_RETRIES"]

PROG_LOAD_EAGAIN_RETRIES = 5   # as libbpf: the verifier returns EAGAIN when a signal interrupts it
_TOKEN_FD_FLAG = 1 << 16       # BPF_F_TOKEN_FD


def prog_load(prog_type: int, insns: Buffer, license: str = "GPL", *, prog_name: str = "",
              log_level: int = 0, log_buf: Optional[bytearray] = None, kern_version: int = 0,
              prog_flags: int = 0, prog_ifindex: int = 0, expected_attach_type: int = 0,
              prog_btf_fd: int = 0, func_info: Optional[Buffer] = None,
              func_info_rec_size: int = 0, line_info: Optional[Buffer] = None,
              line_info_rec_size: int = 0, attach_btf_id: int = 0, attach_prog_fd: int = 0,
              attach_btf_obj_fd: int = 0, fd_array: Optional[Sequence[int]] = None,
              fd_array_cnt: int = 0, core_relos: Optional[Buffer] = None,
              core_relo_rec_size: int = 0, prog_token_fd: int = 0, context: str = "") -> FD:
    """BPF_PROG_LOAD.  Keyword names are the kernel's ``bpf_attr`` field names.

    ``insns`` is the raw instruction bytes (8 per slot).  ``func_info``, ``line_info``
    and ``core_relos`` are packed records; their counts are derived from the
    ``*_rec_size`` arguments.  ``fd_array`` is a list of fds (``BPF_PSEUDO_MAP_IDX``
    and module-BTF kfunc slots); ``fd_array_cnt`` (6.14+) also binds them all.

    With ``log_level > 0`` the verifier writes its log into ``log_buf``.  A failure
    raises a :class:`~pybpf.errors.SyscallError` (:class:`~pybpf.errors.PermissionDeniedError`
    for EPERM) carrying ``.log_true_size``: the log size the kernel needed (0 if the
    kernel does not report it, before 6.4).  Turning a rejection and its log into a
    :class:`~pybpf.errors.VerifierError` is the caller's job (it knows the source lines).
    EAGAIN is retried :data:`PROG_LOAD_EAGAIN_RETRIES` times, EINTR always.
    """
    n = len(insns)
    if n == 0 or n % 8:
        raise ValueError(f"instructions are {n} bytes, not a non-empty multiple of 8")
    if attach_prog_fd and attach_btf_obj_fd:
        raise ValueError("attach_prog_fd and attach_btf_obj_fd share a field; give one")
    pins = Pins()
    a = new("prog_load_attr")
    a.prog_type = prog_type
    a.insn_cnt = n // 8
    a.insns = pins.buf(insns)
    a.license = pins.cstr(license)
    if log_level:
        if not log_buf:
            raise ValueError("log_level > 0 needs a log_buf")
        a.log_level = log_level
        a.log_size = len(log_buf)
        a.log_buf = pins.buf(log_buf, writable=True)
    a.kern_version = kern_version
    a.prog_flags = prog_flags
    if prog_name:
        set_name(a.prog_name, prog_name)
    a.prog_ifindex = prog_ifindex
    a.expected_attach_type = expected_attach_type
    a.prog_btf_fd = prog_btf_fd
    if func_info:
        _records(a, pins, "func_info", func_info, func_info_rec_size)
    if line_info:
        _records(a, pins, "line_info", line_info, line_info_rec_size)
    a.attach_btf_id = attach_btf_id
    a.attach_prog_fd = attach_prog_fd or attach_btf_obj_fd
    if core_relos:
        if core_relo_rec_size <= 0 or len(core_relos) % core_relo_rec_size:
            raise ValueError("core_relos is not a whole number of core_relo_rec_size records")
        a.core_relos = pins.buf(core_relos)
        a.core_relo_rec_size = core_relo_rec_size
        a.core_relo_cnt = len(core_relos) // core_relo_rec_size
    if fd_array:
        a.fd_array = pins.array("int32_t", fd_array)
    a.fd_array_cnt = fd_array_cnt
    if prog_token_fd:
        a.prog_token_fd = prog_token_fd
        a.prog_flags = prog_flags | _TOKEN_FD_FLAG
    size = sizeof("prog_load_attr")
    cmd = int(Cmd.PROG_LOAD)
    r = attempt(cmd, a, size)
    eagain = PROG_LOAD_EAGAIN_RETRIES
    while r == -errno.EAGAIN and eagain > 0:
        eagain -= 1
        r = attempt(cmd, a, size)
    if r < 0:
        err = bpf_error(cmd, -r, context)
        err.log_true_size = a.log_true_size  # type: ignore[attr-defined]
        raise err
    return FD(r)


def _records(a: Any, pins: Pins, field: str, data: Buffer, rec_size: int) -> None:
    if rec_size <= 0 or len(data) % rec_size:
        raise ValueError(f"{field} is not a whole number of {rec_size}-byte records")
    setattr(a, field, pins.buf(data))
    setattr(a, f"{field}_rec_size", rec_size)
    setattr(a, f"{field}_cnt", len(data) // rec_size)


def prog_test_run(prog_fd: int, *, data_in: Optional[Buffer] = None, data_size_out: int = 0,
                  ctx_in: Optional[Buffer] = None, ctx_size_out: int = 0, repeat: int = 0,
                  flags: int = 0, cpu: int = 0, batch_size: int = 0,
                  context: str = "") -> Dict[str, Any]:
    """BPF_PROG_TEST_RUN (alias BPF_PROG_RUN).

    ``data_size_out``/``ctx_size_out`` size the output buffers (0: no output).  Returns
    a dict: ``retval``, ``duration`` (ns, average per run), ``data_out`` and ``ctx_out``
    (bytes, as long as the kernel reported), ``data_size_out``, ``ctx_size_out``.
    """
    pins = Pins()
    a = new("test_run_attr")
    a.prog_fd = prog_fd
    if data_in:
        a.data_in = pins.buf(data_in)
        a.data_size_in = len(data_in)
    data_out = pins.new("char", data_size_out) if data_size_out else None
    if data_out is not None:
        a.data_out = pins.addr(data_out)
        a.data_size_out = data_size_out
    ctx_copy = None
    if ctx_in:
        # A private copy: syscall programs write their context back into ctx_in, which
        # must never be the caller's (possibly immutable) object.
        ctx_copy = pins.new("char", len(ctx_in))
        ffi.memmove(ctx_copy, bytes(ctx_in), len(ctx_in))
        a.ctx_in = pins.addr(ctx_copy)
        a.ctx_size_in = len(ctx_in)
    ctx_out = pins.new("char", ctx_size_out) if ctx_size_out else None
    if ctx_out is not None:
        a.ctx_out = pins.addr(ctx_out)
        a.ctx_size_out = ctx_size_out
    a.repeat = repeat
    a.flags = flags
    a.cpu = cpu
    a.batch_size = batch_size
    try:
        bpf_call(Cmd.PROG_TEST_RUN, a, sizeof("test_run_attr"), context)
    except SyscallError as e:
        if e.errno == errno.ENOSPC:
            e.hint = (f"output buffers too small: the kernel needed data_size_out="
                      f"{a.data_size_out}, ctx_size_out={a.ctx_size_out}")
            e._message += f"; {e.hint}"
        raise
    return {
        "retval": a.retval,
        "duration": a.duration,
        "data_out": ffi.unpack(data_out, min(a.data_size_out, data_size_out)) if data_out else b"",
        "ctx_out": ffi.unpack(ctx_out, min(a.ctx_size_out, ctx_size_out)) if ctx_out else b"",
        "data_size_out": a.data_size_out,
        "ctx_size_out": a.ctx_size_out,
        "ctx_in_after": ffi.unpack(ctx_copy, len(ctx_in)) if ctx_copy is not None else b"",
    }


def _attach_attr(target_fd: int, prog_fd: int, attach_type: int, attach_flags: int,
                 replace_bpf_fd: int, relative_fd: int, relative_id: int,
                 expected_revision: int) -> Any:
    if relative_fd and relative_id:
        raise ValueError("relative_fd and relative_id share a field; give one")
    a = new("prog_attach_attr")
    a.target_fd = target_fd
    a.attach_bpf_fd = prog_fd
    a.attach_type = attach_type
    a.attach_flags = attach_flags
    a.replace_bpf_fd = replace_bpf_fd
    a.relative_fd = relative_fd or relative_id
    a.expected_revision = expected_revision
    return a


def prog_attach(prog_fd: int, target_fd: int, attach_type: int, attach_flags: int = 0, *,
                replace_bpf_fd: int = 0, relative_fd: int = 0, relative_id: int = 0,
                expected_revision: int = 0, context: str = "") -> None:
    """BPF_PROG_ATTACH (cgroup, sockmap, flow dissector, lirc, tcx/netkit via mprog).

    ``attach_flags`` from :class:`~pybpf.consts.AttachFlags`; ``relative_fd``/``relative_id``
    with ``BPF_F_BEFORE``/``AFTER``; ``target_fd`` is an ifindex for tcx.
    """
    a = _attach_attr(target_fd, prog_fd, attach_type, attach_flags, replace_bpf_fd, relative_fd,
                     relative_id, expected_revision)
    bpf_call(Cmd.PROG_ATTACH, a, sizeof("prog_attach_attr"), context)


def prog_detach(target_fd: int, attach_type: int, prog_fd: int = 0, *, attach_flags: int = 0,
                relative_fd: int = 0, relative_id: int = 0, expected_revision: int = 0,
                context: str = "") -> None:
    """BPF_PROG_DETACH: remove ``prog_fd`` (or the only program) from ``target_fd``."""
    a = _attach_attr(target_fd, prog_fd, attach_type, attach_flags, 0, relative_fd, relative_id,
                     expected_revision)
    bpf_call(Cmd.PROG_DETACH, a, sizeof("prog_attach_attr"), context)


def prog_query(target_fd: int, attach_type: int, *, query_flags: int = 0, max_progs: int = 64,
               prog_attach_flags: bool = False, link_ids: bool = False,
               context: str = "") -> Dict[str, Any]:
    """BPF_PROG_QUERY: programs attached to ``target_fd`` (a cgroup fd, netns fd, ifindex ...).

    Returns a dict: ``attach_flags``, ``prog_ids`` (list), ``revision`` and, when asked
    (kernels that know the fields: 6.1+ / 6.6+), ``prog_attach_flags`` and
    ``link_ids``/``link_attach_flags`` (lists).  Grows its arrays once when the kernel
    has more than ``max_progs`` to report.
    """
    size = sizeof("query_attr")
    for _ in range(2):
        pins = Pins()
        a = new("query_attr")
        a.target_fd = target_fd
        a.attach_type = attach_type
        a.query_flags = query_flags
        ids = pins.new("uint32_t", max_progs)
        a.prog_ids = pins.addr(ids)
        a.prog_cnt = max_progs
        pflags = lids = lflags = None
        if prog_attach_flags:
            pflags = pins.new("uint32_t", max_progs)
            a.prog_attach_flags = pins.addr(pflags)
        if link_ids:
            lids = pins.new("uint32_t", max_progs)
            lflags = pins.new("uint32_t", max_progs)
            a.link_ids = pins.addr(lids)
            a.link_attach_flags = pins.addr(lflags)
        r = attempt(Cmd.PROG_QUERY, a, size)
        if r == -errno.ENOSPC and a.prog_cnt > max_progs:
            max_progs = a.prog_cnt
            continue
        if r < 0:
            raise bpf_error(Cmd.PROG_QUERY, -r, context)
        n = min(a.prog_cnt, max_progs)
        out: Dict[str, Any] = {"attach_flags": a.attach_flags, "prog_ids": list(ids[0:n]),
                               "revision": a.revision}
        if pflags is not None:
            out["prog_attach_flags"] = list(pflags[0:n])
        if lids is not None and lflags is not None:
            out["link_ids"] = list(lids[0:n])
            out["link_attach_flags"] = list(lflags[0:n])
        return out
    raise bpf_error(Cmd.PROG_QUERY, errno.ENOSPC, context)  # pragma: no cover - racing attaches


def prog_bind_map(prog_fd: int, map_fd: int, flags: int = 0, *, context: str = "") -> None:
    """BPF_PROG_BIND_MAP: keep ``map_fd`` alive as long as the program (e.g. .rodata, metadata)."""
    a = new("prog_bind_map_attr")
    a.prog_fd = prog_fd
    a.map_fd = map_fd
    a.flags = flags
    bpf_call(Cmd.PROG_BIND_MAP, a, sizeof("prog_bind_map_attr"), context)


def prog_stream_read(prog_fd: int, stream_id: int, size: int = 4096, *,
                     context: str = "") -> bytes:
    """BPF_PROG_STREAM_READ_BY_FD (6.17+): read up to ``size`` bytes from a program's
    stdout (1) or stderr (2) stream."""
    pins = Pins()
    buf = pins.new("char", size)
    a = new("prog_stream_read_attr")
    a.stream_buf = pins.addr(buf)
    a.stream_buf_len = size
    a.stream_id = stream_id
    a.prog_fd = prog_fd
    n = bpf_call(Cmd.PROG_STREAM_READ_BY_FD, a, sizeof("prog_stream_read_attr"), context)
    return ffi.unpack(buf, min(n, size))
