"""bpf(2) commands on BPF objects in general: pinning, ids, info, BTF, stats, tokens."""

from __future__ import annotations

import errno
import os
from typing import Any, Dict, Mapping, Optional, Union

from ..consts import Cmd, LinkType, PerfEventLinkType, StatsType
from ._core import Buffer, Pins, as_dict, attempt, bpf_call, bpf_fd, new, sizeof
from ._errors import bpf_error
from .fd import FD

__all__ = [
    "obj_pin", "obj_get", "prog_get_next_id", "map_get_next_id", "btf_get_next_id",
    "link_get_next_id", "prog_get_fd_by_id", "map_get_fd_by_id", "btf_get_fd_by_id",
    "link_get_fd_by_id", "obj_get_info_by_fd", "map_info", "prog_info", "btf_info", "link_info",
    "btf_load", "enable_stats", "token_create",
]

PathLike = Union[str, bytes, "os.PathLike[str]"]
_PATH_FD = 1 << 14   # BPF_F_PATH_FD
_TOKEN_FD = 1 << 16  # BPF_F_TOKEN_FD


# -- pinning --------------------------------------------------------------------------------

def _pin_attr(path: PathLike, fd: int, file_flags: int, path_fd: Optional[int], pins: Pins) -> Any:
    a = new("obj_pin_attr")
    a.pathname = pins.cstr(os.fsencode(path))
    a.bpf_fd = fd
    a.file_flags = file_flags
    if path_fd is not None:
        a.file_flags = file_flags | _PATH_FD
        a.path_fd = path_fd
    return a


def obj_pin(fd: int, path: PathLike, *, file_flags: int = 0, path_fd: Optional[int] = None,
            context: str = "") -> None:
    """BPF_OBJ_PIN: pin the object behind ``fd`` at ``path`` on a bpffs mount.

    With ``path_fd`` (6.5+) ``path`` is relative to that directory fd.
    """
    pins = Pins()
    a = _pin_attr(path, fd, file_flags, path_fd, pins)
    bpf_call(Cmd.OBJ_PIN, a, sizeof("obj_pin_attr"), context or f"pin {os.fsdecode(path)}")


def obj_get(path: PathLike, file_flags: int = 0, *, path_fd: Optional[int] = None,
            context: str = "") -> FD:
    """BPF_OBJ_GET: open the object pinned at ``path``.

    ``file_flags`` may be ``MapFlags.RDONLY``/``WRONLY`` for maps.
    """
    pins = Pins()
    a = _pin_attr(path, 0, file_flags, path_fd, pins)
    return bpf_fd(Cmd.OBJ_GET, a, sizeof("obj_pin_attr"), context or f"pin {os.fsdecode(path)}")


# -- ids ------------------------------------------------------------------------------------

def _next_id(cmd: int, start_id: int, context: str) -> Optional[int]:
    a = new("get_id_attr")
    a.start_id = start_id
    size = sizeof("get_id_attr")
    r = attempt(cmd, a, size)
    if r == -errno.ENOENT:
        return None
    if r < 0:
        raise bpf_error(cmd, -r, context)
    return a.next_id


def prog_get_next_id(start_id: int = 0, *, context: str = "") -> Optional[int]:
    """BPF_PROG_GET_NEXT_ID: the first program id above ``start_id``, or None after the last."""
    return _next_id(Cmd.PROG_GET_NEXT_ID, start_id, context)


def map_get_next_id(start_id: int = 0, *, context: str = "") -> Optional[int]:
    """BPF_MAP_GET_NEXT_ID: the first map id above ``start_id``, or None after the last."""
    return _next_id(Cmd.MAP_GET_NEXT_ID, start_id, context)


def btf_get_next_id(start_id: int = 0, *, context: str = "") -> Optional[int]:
    """BPF_BTF_GET_NEXT_ID: the first BTF object id above ``start_id``, or None after the last."""
    return _next_id(Cmd.BTF_GET_NEXT_ID, start_id, context)


def link_get_next_id(start_id: int = 0, *, context: str = "") -> Optional[int]:
    """BPF_LINK_GET_NEXT_ID: the first link id above ``start_id``, or None after the last."""
    return _next_id(Cmd.LINK_GET_NEXT_ID, start_id, context)


def _fd_by_id(cmd: int, obj_id: int, open_flags: int, token_fd: int, context: str) -> FD:
    a = new("get_id_attr")
    a.start_id = obj_id
    a.open_flags = open_flags
    if token_fd:
        a.open_flags = open_flags | _TOKEN_FD
        a.fd_by_id_token_fd = token_fd
    return bpf_fd(cmd, a, sizeof("get_id_attr"), context or f"id {obj_id}")


def prog_get_fd_by_id(prog_id: int, *, open_flags: int = 0, token_fd: int = 0,
                      context: str = "") -> FD:
    """BPF_PROG_GET_FD_BY_ID."""
    return _fd_by_id(Cmd.PROG_GET_FD_BY_ID, prog_id, open_flags, token_fd, context)


def map_get_fd_by_id(map_id: int, *, open_flags: int = 0, token_fd: int = 0,
                     context: str = "") -> FD:
    """BPF_MAP_GET_FD_BY_ID (``open_flags``: ``MapFlags.RDONLY``/``WRONLY``)."""
    return _fd_by_id(Cmd.MAP_GET_FD_BY_ID, map_id, open_flags, token_fd, context)


def btf_get_fd_by_id(btf_id: int, *, open_flags: int = 0, token_fd: int = 0,
                     context: str = "") -> FD:
    """BPF_BTF_GET_FD_BY_ID."""
    return _fd_by_id(Cmd.BTF_GET_FD_BY_ID, btf_id, open_flags, token_fd, context)


def link_get_fd_by_id(link_id: int, *, open_flags: int = 0, token_fd: int = 0,
                      context: str = "") -> FD:
    """BPF_LINK_GET_FD_BY_ID."""
    return _fd_by_id(Cmd.LINK_GET_FD_BY_ID, link_id, open_flags, token_fd, context)


# -- info -----------------------------------------------------------------------------------

_INFO_STRUCTS = ("bpf_prog_info", "bpf_map_info", "bpf_btf_info", "bpf_link_info",
                 "bpf_token_info")


def obj_get_info_by_fd(fd: int, struct: str, *,
                       fill: Optional[Mapping[str, Union[int, bytearray, Any]]] = None,
                       context: str = "") -> Any:
    """BPF_OBJ_GET_INFO_BY_FD into a fresh ``struct <struct>`` (``"bpf_prog_info"``,
    ``"bpf_map_info"``, ``"bpf_btf_info"``, ``"bpf_link_info"``, ``"bpf_token_info"``).

    ``fill`` presets fields before the call, by (dotted) field name: ints are stored
    as they are, writable buffers (``bytearray``) by address -- this is how the kernel
    is asked to copy out arrays, e.g. ``{"map_ids": buf, "nr_map_ids": n}``.  Returns the
    cffi struct pointer; read fields as attributes or convert with :func:`as_dict`.
    """
    if struct not in _INFO_STRUCTS:
        raise ValueError(f"unknown info struct {struct!r} (one of {', '.join(_INFO_STRUCTS)})")
    pins = Pins()
    info = new(struct)
    for path, value in (fill or {}).items():
        target = info
        *parents, last = path.split(".")
        for p in parents:
            target = getattr(target, p)
        setattr(target, last, value if isinstance(value, int) else pins.buf(value, writable=True))
    a = new("info_by_fd_attr")
    a.bpf_fd = fd
    a.info_len = sizeof(struct)
    a.info = Pins.addr(info)
    bpf_call(Cmd.OBJ_GET_INFO_BY_FD, a, sizeof("info_by_fd_attr"), context)
    return info


def map_info(fd: int, *, context: str = "") -> Dict[str, Any]:
    """The map's ``bpf_map_info`` as a dict (``name`` as str)."""
    return as_dict(obj_get_info_by_fd(fd, "bpf_map_info", context=context))


def prog_info(fd: int, *, map_ids: bool = True, context: str = "") -> Dict[str, Any]:
    """The program's ``bpf_prog_info`` as a dict (``name`` str, ``tag`` bytes) plus, with
    ``map_ids``, the ids of the maps it uses as ``map_ids`` (a list)."""
    info = obj_get_info_by_fd(fd, "bpf_prog_info", context=context)
    out = as_dict(info)
    if map_ids:
        n = info.nr_map_ids
        ids = bytearray(4 * n)
        if n:
            obj_get_info_by_fd(fd, "bpf_prog_info", fill={"map_ids": ids, "nr_map_ids": n},
                               context=context)
        out["map_ids"] = list(memoryview(ids).cast("I"))
    return out


def btf_info(fd: int, *, data: bool = False, context: str = "") -> Dict[str, Any]:
    """The BTF object's ``bpf_btf_info`` as a dict, with its ``name`` (``"vmlinux"``, a module
    name, or ``""``) and, with ``data``, the raw BTF bytes as ``btf``."""
    name = bytearray(256)
    info = obj_get_info_by_fd(fd, "bpf_btf_info", fill={"name": name, "name_len": len(name)},
                              context=context)
    out = as_dict(info)
    out["name"] = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    out.pop("name_len", None)
    if data:
        size = info.btf_size
        blob = bytearray(size)
        obj_get_info_by_fd(fd, "bpf_btf_info", fill={"btf": blob, "btf_size": size},
                           context=context)
        out["btf"] = bytes(blob)
    return out


def link_info(fd: int, *, context: str = "") -> Dict[str, Any]:
    """The link's ``bpf_link_info`` as a dict.  The per-type union is present under every
    member name (only the one matching ``type`` is meaningful); for raw tracepoint, iter
    and perf_event links the target's name is fetched too, as ``name``."""
    info = obj_get_info_by_fd(fd, "bpf_link_info", context=context)
    out = as_dict(info)
    field = None
    t = info.type
    if t == LinkType.RAW_TRACEPOINT:
        field = ("raw_tracepoint.tp_name", "raw_tracepoint.tp_name_len")
    elif t == LinkType.ITER:
        field = ("iter.target_name", "iter.target_name_len")
    elif t == LinkType.PERF_EVENT:
        pt = info.perf_event.type
        if pt in (PerfEventLinkType.KPROBE, PerfEventLinkType.KRETPROBE):
            field = ("perf_event.kprobe.func_name", "perf_event.kprobe.name_len")
        elif pt in (PerfEventLinkType.UPROBE, PerfEventLinkType.URETPROBE):
            field = ("perf_event.uprobe.file_name", "perf_event.uprobe.name_len")
        elif pt == PerfEventLinkType.TRACEPOINT:
            field = ("perf_event.tracepoint.tp_name", "perf_event.tracepoint.name_len")
    if field is not None:
        buf = bytearray(4096)
        obj_get_info_by_fd(fd, "bpf_link_info", fill={field[0]: buf, field[1]: len(buf)},
                           context=context)
        out["name"] = bytes(buf).split(b"\0", 1)[0].decode("utf-8", "replace")
    return out


# -- BTF, stats, tokens ---------------------------------------------------------------------

def btf_load(btf: Buffer, *, log_level: int = 0, log_buf: Optional[bytearray] = None,
             btf_flags: int = 0, btf_token_fd: int = 0, context: str = "") -> FD:
    """BPF_BTF_LOAD: load raw BTF bytes; the kernel's BTF verifier writes its log into
    ``log_buf`` when ``log_level > 0``.  A failure carries ``.log_true_size`` like
    :func:`~pybpf.sys.prog_load`."""
    pins = Pins()
    a = new("btf_load_attr")
    a.btf = pins.buf(btf)
    a.btf_size = len(btf)
    if log_level:
        if not log_buf:
            raise ValueError("log_level > 0 needs a log_buf")
        a.btf_log_level = log_level
        a.btf_log_size = len(log_buf)
        a.btf_log_buf = pins.buf(log_buf, writable=True)
    a.btf_flags = btf_flags
    if btf_token_fd:
        a.btf_token_fd = btf_token_fd
        a.btf_flags = btf_flags | _TOKEN_FD
    size = sizeof("btf_load_attr")
    r = attempt(Cmd.BTF_LOAD, a, size)
    if r < 0:
        err = bpf_error(Cmd.BTF_LOAD, -r, context)
        err.log_true_size = a.btf_log_true_size  # type: ignore[attr-defined]
        raise err
    return FD(r)


def enable_stats(stats_type: int = StatsType.RUN_TIME, *, context: str = "") -> FD:
    """BPF_ENABLE_STATS: run-time statistics stay enabled while the returned fd is open."""
    a = new("enable_stats_attr")
    a.type = stats_type
    return bpf_fd(Cmd.ENABLE_STATS, a, sizeof("enable_stats_attr"), context)


def token_create(bpffs_fd: int, flags: int = 0, *, context: str = "") -> FD:
    """BPF_TOKEN_CREATE (6.9+): a BPF token from a bpffs mounted with delegation options."""
    a = new("token_create_attr")
    a.flags = flags
    a.bpffs_fd = bpffs_fd
    return bpf_fd(Cmd.TOKEN_CREATE, a, sizeof("token_create_attr"), context)
