"""UserRingBuffer: the producer side of a BPF_MAP_TYPE_USER_RINGBUF map.

The same layout as a BPF ring buffer with the roles swapped: user space writes
records and advances ``producer_pos``; a BPF program drains them with
``bpf_user_ringbuf_drain(&map, callback, ctx, 0)`` and advances
``consumer_pos``::

    offset 0          consumer page   ro   consumer_pos, written by the kernel
    offset PAGE       producer page   rw   producer_pos, written by us
    offset 2*PAGE     data            rw   2**n bytes, mapped twice back to back

A reservation writes the header ``size | BUSY`` and publishes the new producer
position; submit clears BUSY (discard sets DISCARD instead).  The kernel stops
draining at a BUSY record, so records reach BPF in reservation order even when
submitted out of order.  One producer at a time: guard the object with a lock if
several threads write.
"""

from __future__ import annotations

import mmap as _mmap
import select
import time
from typing import Any, List, Optional

from .. import sys as _sys
from ..consts import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ, MapType
from ..errors import BPFError
from ..sys.fd import FD

__all__ = ["UserRingBuffer", "Reservation"]

_MAX_SAMPLE = (1 << 24) - 1      # the kernel hands samples to BPF as dynptrs (24-bit size)


class Reservation:
    """Space reserved in a user ring buffer: fill :attr:`data`, then :meth:`submit`
    (or :meth:`discard`).  Until then the kernel stops draining at this record."""

    __slots__ = ("data", "size", "_ring", "_index")

    def __init__(self, ring: "UserRingBuffer", data: memoryview, size: int, index: int):
        self.data = data            # writable view of the record's bytes
        self.size = size
        self._ring: Optional["UserRingBuffer"] = ring
        self._index = index         # header index in the ring's u32 view

    def submit(self) -> None:
        """Make the record visible to the BPF program."""
        self._commit(self.size)

    def discard(self) -> None:
        """Give the space back without the BPF program ever seeing the record."""
        self._commit(self.size | BPF_RINGBUF_DISCARD_BIT)

    def _commit(self, header: int) -> None:
        ring = self._ring
        if ring is None:
            raise BPFError("user ring buffer record was already submitted or discarded")
        self._ring = None
        try:
            self.data.release()
        except BufferError:
            pass                    # the caller still holds a view of it: harmless
        ring._commit(self._index, header)

    def __enter__(self) -> memoryview:
        return self.data

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        """Submit on normal exit, discard when the block raised."""
        if self._ring is not None:
            self.discard() if exc_type is not None else self.submit()


class UserRingBuffer:
    """Writes records into a BPF_MAP_TYPE_USER_RINGBUF map for a BPF program to drain."""

    def __init__(self, map: Any, *, name: Optional[str] = None):
        if getattr(map, "type", None) != MapType.USER_RINGBUF:
            raise BPFError(f"map {getattr(map, 'name', map)!r} is not a "
                           f"BPF_MAP_TYPE_USER_RINGBUF (type {getattr(map, 'type', '?')!s})")
        self.map = map
        self.name: str = name or map.name
        self.size: int = map.max_entries
        self._mask = self.size - 1
        page = _sys.PAGE_SIZE
        ctx = f"user ring buffer {self.name}"
        self._fd: Optional[FD] = _sys.dup_fd(map.fd)
        maps: List[_mmap.mmap] = []
        try:
            maps.append(_sys.mmap(self._fd.fileno(), page, _mmap.PROT_READ,
                                  context=f"{ctx}: consumer page"))
            maps.append(_sys.mmap(self._fd.fileno(), page + 2 * self.size,
                                  _mmap.PROT_READ | _mmap.PROT_WRITE, offset=page,
                                  context=f"{ctx}: producer page and data"))
        except BaseException:
            for m in maps:
                m.close()
            self._fd.close()
            raise
        self._maps = maps
        cons_page, prod_area = memoryview(maps[0]), memoryview(maps[1])
        self._cons = cons_page.cast("Q")
        self._prod = prod_area[:page].cast("Q")
        self._data = prod_area[page:]
        self._hdr = self._data.cast("I")
        self._views = [self._hdr, self._data, self._prod, self._cons, prod_area, cons_page]
        self._pos = self._prod[0]                 # our producer position
        self._epoll: Optional[select.epoll] = None

    @property
    def max_record(self) -> int:
        """The largest record this ring can ever take."""
        return min(self.size - BPF_RINGBUF_HDR_SZ, _MAX_SAMPLE)

    def free(self) -> int:
        """Bytes free for new records (headers and padding included)."""
        return self.size - (self._pos - self._cons[0])

    def reserve(self, size: int) -> Optional[Reservation]:
        """Reserve ``size`` bytes; ``None`` if the ring is too full right now."""
        if self._fd is None:
            raise BPFError(f"user ring buffer {self.name} is closed")
        if not 0 < size <= self.max_record:
            raise BPFError(f"user ring buffer {self.name}: cannot reserve {size} bytes "
                           f"(1..{self.max_record} fit in this {self.size}-byte ring)")
        total = (size + BPF_RINGBUF_HDR_SZ + 7) & -8
        pos = self._pos
        if pos + total - self._cons[0] > self.size:
            return None
        off = pos & self._mask
        idx = off >> 2
        self._hdr[idx] = size | BPF_RINGBUF_BUSY_BIT
        self._hdr[idx + 1] = 0
        self._pos = pos + total
        self._prod[0] = self._pos                 # publish after the BUSY header
        start = off + BPF_RINGBUF_HDR_SZ
        return Reservation(self, self._data[start:start + size], size, idx)

    def reserve_blocking(self, size: int, timeout: Optional[float] = None) -> Optional[Reservation]:
        """:meth:`reserve`, waiting up to ``timeout`` seconds (``None``: forever) for the
        BPF side to drain enough space; ``None`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            r = self.reserve(size)
            if r is not None:
                return r
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._wait_space(left)

    def write(self, data: Any) -> bool:
        """Reserve, copy ``data`` (a bytes-like object) in and submit; False if full."""
        mv = memoryview(data).cast("B")
        r = self.reserve(len(mv))
        if r is None:
            return False
        r.data[:] = mv
        r.submit()
        return True

    def _commit(self, index: int, header: int) -> None:
        if self._fd is None:
            raise BPFError(f"user ring buffer {self.name} is closed: cannot submit")
        self._hdr[index] = header                 # one 32-bit store: clears BUSY

    def _wait_space(self, timeout: Optional[float]) -> None:
        # The map fd polls EPOLLOUT while the ring is not completely full (and the kernel
        # wakes it after each drain).  "Not full" may still be too little room: then back
        # off briefly instead of spinning, and let the caller recheck.
        if self._epoll is None:
            self._epoll = select.epoll()
            self._epoll.register(self.fileno(), select.EPOLLOUT)
        if self._epoll.poll(-1 if timeout is None else max(timeout, 0.0)):
            time.sleep(0.0005 if timeout is None else min(0.0005, max(timeout, 0.0)))

    def fileno(self) -> int:
        """The ring's fd (a dup of the map fd): EPOLLOUT while it is not full."""
        if self._fd is None:
            raise BPFError(f"user ring buffer {self.name} is closed")
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Unmap and close.  Pending reservations can no longer be submitted."""
        if self._fd is None:
            return
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        for v in self._views:
            try:
                v.release()
            except BufferError:
                pass
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                pass
        self._views, self._maps = [], []
        self._fd.close()
        self._fd = None

    def __enter__(self) -> "UserRingBuffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pybpf.ringbuf.UserRingBuffer {self.name} size={self.size}>"
