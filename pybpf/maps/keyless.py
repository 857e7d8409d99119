"""Maps without keys: queue, stack and bloom filter (``push`` / ``pop`` / ``peek``).

These maps have ``key_size == 0`` and the kernel insists that the key pointer
of an element command is NULL for them (EINVAL otherwise): push is
BPF_MAP_UPDATE_ELEM, peek BPF_MAP_LOOKUP_ELEM and pop
BPF_MAP_LOOKUP_AND_DELETE_ELEM, each with ``key = NULL``.  A bloom filter
"lookup" takes the value to test in the *value* pointer and answers with
success (maybe present) or ENOENT (definitely absent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import sys as _sys
from ..consts import Cmd, MapType
from ..errors import KeyNotFoundError, NotSupportedError
from ..sys._core import Pins, bpf_call, new, sizeof

if TYPE_CHECKING:
    from .map import Map

__all__ = ["push", "pop", "peek", "bloom_contains"]

_QUEUE_LIKE = (MapType.QUEUE, MapType.STACK)


def _need(m: "Map", types: tuple, op: str) -> None:
    if m.type not in types:
        raise NotSupportedError(f"{op} on map {m.name}",
                                f"only for {'/'.join(t.name for t in types)} maps, "
                                f"this is {getattr(m.type, 'name', m.type)}")


def _keyless(cmd: int, m: "Map", value: Any, flags: int, writable: bool) -> None:
    # pybpf.sys.map_update_elem/map_lookup_elem always pass a key pointer; these maps need
    # NULL, so the attribute is built here (still issued through pybpf.sys).
    pins = Pins()
    a = new("map_elem_attr")
    a.map_fd = m.fd
    a.key = 0
    a.value = pins.buf(value, writable=writable)
    a.flags = flags
    bpf_call(cmd, a, sizeof("map_elem_attr"), f"map {m.name}")


def push(m: "Map", value: Any, flags: int = 0) -> None:
    """Add ``value`` to a queue, stack or bloom filter."""
    _need(m, _QUEUE_LIKE + (MapType.BLOOM_FILTER,), "push")
    _keyless(Cmd.MAP_UPDATE_ELEM, m, m.value_bytes_of(value), flags, False)


def pop(m: "Map", default: Any = KeyError) -> Any:
    """Remove and return the next value of a queue (oldest) or stack (newest)."""
    _need(m, _QUEUE_LIKE, "pop")
    out = bytearray(m.value_size)
    try:
        _sys.map_lookup_and_delete_elem(m.fd, None, out, context=f"map {m.name}")
    except KeyNotFoundError:
        if default is KeyError:
            raise
        return default
    return m.value_codec.decode(out)


def peek(m: "Map", default: Any = KeyError) -> Any:
    """The value :func:`pop` would return, left in place."""
    _need(m, _QUEUE_LIKE, "peek")
    out = bytearray(m.value_size)
    try:
        _keyless(Cmd.MAP_LOOKUP_ELEM, m, out, 0, True)
    except KeyNotFoundError:
        if default is KeyError:
            raise
        return default
    return m.value_codec.decode(out)


def bloom_contains(m: "Map", value: Any) -> bool:
    """Whether a bloom filter may contain ``value`` (false: definitely absent)."""
    _need(m, (MapType.BLOOM_FILTER,), "membership test")
    buf = bytearray(m.value_bytes_of(value))
    try:
        _keyless(Cmd.MAP_LOOKUP_ELEM, m, buf, 0, True)
    except KeyNotFoundError:
        return False
    return True
