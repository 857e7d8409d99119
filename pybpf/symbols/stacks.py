"""Reading BPF_MAP_TYPE_STACK_TRACE maps from user space.

A program records a stack with ``bpf_get_stackid(ctx, &stacks, flags)`` and
keeps the returned id (``BPF_F_USER_STACK`` for the user stack); the map's
value for that id is an array of ``value_size / 8`` u64 instruction pointers,
innermost first, zero after the last frame.  A map created with
``BPF_F_STACK_BUILD_ID`` holds ``struct bpf_stack_build_id`` entries instead
(32 bytes: ``s32 status``, 20-byte build id, then the file offset -- or the raw
address when the kernel could not read the build id).
"""

from __future__ import annotations

import struct
from array import array
from sys import byteorder as _BYTEORDER
from typing import TYPE_CHECKING, List, Optional, Tuple

from ..consts import MapFlags, MapType
from ..errors import BPFError, KeyNotFoundError, NotSupportedError
from .symbolizer import Frame, Symbolizer

if TYPE_CHECKING:
    from ..maps import Map

__all__ = ["read_stack", "read_build_id_stack", "BuildIdEntry", "StackTraces",
           "BUILD_ID_EMPTY", "BUILD_ID_VALID", "BUILD_ID_IP"]

BUILD_ID_EMPTY, BUILD_ID_VALID, BUILD_ID_IP = 0, 1, 2
_BUILD_ID_ENTRY = struct.Struct("=i20sQ")      # struct bpf_stack_build_id (native order)

BuildIdEntry = Tuple[int, bytes, int]             # (status, build id, file offset or ip)


def _check(m: "Map", build_id: bool) -> None:
    if m.type != MapType.STACK_TRACE:
        raise NotSupportedError(f"reading stacks from map {m.name}", "not a STACK_TRACE map")
    if bool(m.flags & MapFlags.STACK_BUILD_ID) != build_id:
        raise BPFError(f"map {m.name}: " + ("created without BPF_F_STACK_BUILD_ID: use read_stack()"
                                            if build_id else
                                            "holds build-id stacks: use read_build_id_stack()"))


def _raw(m: "Map", stack_id: int) -> Optional[bytes]:
    if stack_id < 0:
        raise BPFError(f"map {m.name}: stack id {stack_id} is an error from bpf_get_stackid() "
                       "(-EFAULT: no stack, -EEXIST: hash collision, -ENOMEM ...)")
    try:
        return m.lookup_raw(stack_id.to_bytes(4, _BYTEORDER))
    except KeyNotFoundError:
        return None



def read_stack(m: "Map", stack_id: int) -> List[int]:
    """The instruction pointers of stack ``stack_id`` (innermost first); ``[]`` when the map
    has no such stack (never recorded, or replaced after a hash collision)."""
    _check(m, False)
    raw = _raw(m, stack_id)
    if raw is None:
        return []
    ips = array("Q", raw)
    try:
        return ips[:ips.index(0)].tolist()
    except ValueError:
        return ips.tolist()


def read_build_id_stack(m: "Map", stack_id: int) -> List[BuildIdEntry]:
    """The ``(status, build_id, offset_or_ip)`` entries of build-id stack ``stack_id``."""
    _check(m, True)
    raw = _raw(m, stack_id)
    if raw is None:
        return []
    out = []
    for status, bid, off in _BUILD_ID_ENTRY.iter_unpack(raw[:len(raw) // 32 * 32]):
        if status == BUILD_ID_EMPTY:
            break
        out.append((status, bid, off))
    return out


class StackTraces:
    """A stack trace map plus a :class:`Symbolizer`: stack ids straight to frames."""

    def __init__(self, m: "Map", symbolizer: Optional[Symbolizer] = None):
        if m.type != MapType.STACK_TRACE:
            raise NotSupportedError(f"reading stacks from map {m.name}", "not a STACK_TRACE map")
        self.map = m
        self.symbolizer = symbolizer or Symbolizer()
        self.build_ids = bool(m.flags & MapFlags.STACK_BUILD_ID)

    def kernel(self, stack_id: int) -> List[Frame]:
        """Kernel stack ``stack_id``, symbolised."""
        return self.symbolizer.kernel(read_stack(self.map, stack_id))

    def user(self, stack_id: int, pid: Optional[int] = None) -> List[Frame]:
        """User stack ``stack_id`` of process ``pid``, symbolised (build-id stacks need no
        pid unless the kernel could only record addresses)."""
        if self.build_ids:
            return self.symbolizer.build_id(read_build_id_stack(self.map, stack_id), pid)
        if pid is None:
            raise BPFError(f"map {self.map.name}: user stacks need the pid whose stack it is")
        return self.symbolizer.user(pid, read_stack(self.map, stack_id))
