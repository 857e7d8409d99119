"""Map type probes: create the smallest valid map of a type, close it.

The attributes follow each type's rules (what ``map_alloc_check`` of the type
demands): stack traces need 8-byte values, LPM tries a prefix key and no
prealloc, storage maps BTF for key and value, ring buffers a page, queues and
bloom filters no key, map-in-maps an inner map.  Struct_ops maps answer
ENOTSUPP for a value type that is no struct_ops (BTF id 1) once the type
exists, as cilium/ebpf's probe relies on.
"""

from __future__ import annotations

import errno
from typing import Any, Dict, Optional

from .. import sys as _sys
from ..btf import Int, IntEncoding, Member, Struct
from ..btf.marshal import marshal
from ..consts import MapFlags, MapType
from ..errors import SyscallError
from .result import ENOTSUPP, Probe, errname, refused_or_raise

__all__ = ["probe_map_type", "map_attrs", "PROBED_MAP_TYPES"]

_STORAGE = frozenset({MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE,
                      MapType.CGRP_STORAGE})
_NO_PREALLOC = int(MapFlags.NO_PREALLOC)
_MMAPABLE = int(MapFlags.MMAPABLE)

PROBED_MAP_TYPES = tuple(t for t in MapType if t != MapType.UNSPEC)
"""Every map type pybpf knows, in kernel order (``UNSPEC`` is no type)."""


def map_attrs(map_type: MapType) -> Dict[str, Any]:
    """``map_create`` keyword arguments for a minimal map of ``map_type`` (no fds)."""
    a: Dict[str, Any] = {"key_size": 4, "value_size": 4, "max_entries": 1}
    if map_type == MapType.STACK_TRACE:
        a["value_size"] = 8
    elif map_type == MapType.LPM_TRIE:
        a.update(key_size=8, value_size=8, map_flags=_NO_PREALLOC)
    elif map_type in (MapType.CGROUP_STORAGE_DEPRECATED,
                      MapType.PERCPU_CGROUP_STORAGE_DEPRECATED):
        a.update(key_size=16, value_size=8, max_entries=0)  # struct bpf_cgroup_storage_key
    elif map_type in (MapType.QUEUE, MapType.STACK):
        a["key_size"] = 0
    elif map_type in _STORAGE:
        a.update(max_entries=0, map_flags=_NO_PREALLOC, btf_key_type_id=1, btf_value_type_id=2)
    elif map_type in (MapType.RINGBUF, MapType.USER_RINGBUF):
        a.update(key_size=0, value_size=0, max_entries=_sys.PAGE_SIZE)
    elif map_type == MapType.BLOOM_FILTER:
        a.update(key_size=0, value_size=8)
    elif map_type == MapType.STRUCT_OPS:
        a["btf_vmlinux_value_type_id"] = 1
    elif map_type == MapType.ARENA:
        a.update(key_size=0, value_size=0, max_entries=1, map_flags=_MMAPABLE)
    return a


def _storage_btf() -> bytes:
    """BTF for storage map probes: [1] int (key), [2] struct { int cnt; } (value)."""
    return marshal([Int("int", 4, IntEncoding.SIGNED, 0, 32),
                    Struct("val", 4, (Member("cnt", 1, 0),))])


def probe_map_type(map_type: MapType) -> Probe:
    """Whether maps of ``map_type`` can be created here."""
    what = f"map type {map_type.name.lower()}"
    ctx = f"feature probe {what}"
    attrs = map_attrs(map_type)
    extra: Dict[str, Any] = {}
    owned = []
    try:
        if map_type in _STORAGE:
            try:
                btf = _sys.btf_load(_storage_btf(), context=ctx)
            except SyscallError as e:
                if e.errno == errno.EPERM:
                    return refused_or_raise(e, what, map_type)
                return Probe.no(f"BPF_BTF_LOAD failed ({errname(e)}): storage maps need BTF")
            owned.append(btf)
            extra["btf_fd"] = btf.fileno()
        elif map_type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            inner = _sys.map_create(MapType.ARRAY, 4, 4, 1, context=ctx)
            owned.append(inner)
            extra["inner_map_fd"] = inner.fileno()
        err = _create(map_type, attrs, extra, ctx)
    finally:
        for fd in owned:
            fd.close()
    if err is None:
        return Probe.yes()
    if err.errno == errno.EPERM:
        return refused_or_raise(err, what, map_type)
    if map_type == MapType.STRUCT_OPS and err.errno == ENOTSUPP:
        return Probe.yes()
    if err.errno in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP, errno.E2BIG):
        return Probe.no(f"BPF_MAP_CREATE refused the type with {errname(err)}")
    raise err


def _create(map_type: MapType, attrs: Dict[str, Any], extra: Dict[str, Any],
            ctx: str) -> Optional[SyscallError]:
    kwargs: Dict[str, Any] = {**attrs, **extra, "context": ctx}
    try:
        fd = _sys.map_create(map_type, **kwargs)
    except SyscallError as e:
        return e
    fd.close()
    return None
