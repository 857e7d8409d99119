"""What every event reader shares: epoll over its sources, the asyncio bridge, records.

A *source* is one kernel ring a reader drains: a BPF ring buffer
(:class:`~pybpf.ringbuf.RingBuffer`) or one CPU's perf ring
(:class:`~pybpf.perf.ring.PerfRing`).  A reader (:class:`EventReader`, subclassed
by :class:`~pybpf.ringbuf.RingBufReader` and :class:`~pybpf.perf.PerfReader`)
registers its sources' fds on one epoll instance and drains the ready ones.

Three ways to consume, all built on the same drain loop:

* callbacks: ``poll(timeout)`` / ``consume()`` call ``callback(buf, offset, size)``
  per record, where ``buf`` is a read-only memoryview of the ring itself (no
  copy, valid only during the call; :func:`copy` takes a copy);
* iteration: ``records(timeout)`` yields :class:`Record` objects holding copies;
* asyncio: ``await poll_async()``, ``async for r in arecords()`` or
  ``add_to_loop()``, all driven by ``loop.add_reader`` on :attr:`epoll_fd`.

Watching :attr:`EventReader.epoll_fd` from another loop: when it is readable,
call ``consume()`` (drain every ring), not ``poll(0)``.  A perf event reports a
wake-up only once, and the outer loop's own poll of the epoll fd may be the one
that sees it.

Readers are not thread-safe: consume from one thread at a time.
"""

from __future__ import annotations

import asyncio
import select
import sys as _sys
from typing import (Any, AsyncIterator, Callable, Dict, Iterator, List, Optional, Protocol,
                    Union)

import attrs

from ..errors import BPFError

__all__ = ["Callback", "Record", "EventReader", "DropCounter", "read_counter", "copy"]

#: ``callback(buf, offset, size)``: the record is ``buf[offset:offset + size]``.  A true
#: return value stops consumption after this record.
Callback = Callable[[memoryview, int, int], Any]

#: Where a BPF program counts records it could not emit: a global variable
#: (``coll.variables["dropped"]``), an ARRAY / PERCPU_ARRAY map (key 0; per-CPU slots
#: are summed) or any callable returning an int.
DropCounter = Union[Callable[[], int], Any]


def copy(buf: memoryview, offset: int, size: int) -> bytes:
    """A copy of the record ``buf[offset:offset + size]`` handed to a callback.

    Callbacks get a view of the ring's memory, which the kernel reuses once the
    callback returns; keep a copy of what must outlive the call.
    """
    return buf[offset:offset + size].tobytes()


@attrs.frozen
class Record:
    """One record, copied out of its ring (the iterator and asyncio paths).

    ``source`` names the map it came from; ``cpu`` is the CPU whose perf ring held
    it (``None`` for BPF ring buffers, which are shared by all CPUs).
    """
    source: str
    data: bytes
    cpu: Optional[int] = None


class Source(Protocol):
    """One drainable ring (a BPF ring buffer, or one CPU of a perf buffer)."""
    name: str

    def fileno(self) -> int: ...

    def consume(self, callback: Optional[Callback] = None, limit: Optional[int] = None) -> int: ...

    def collect(self, out: List[Record], limit: Optional[int] = None) -> int: ...

    def available(self) -> int: ...

    def close(self) -> None: ...


def read_counter(counter: DropCounter) -> int:
    """Current value of a drop counter (see :data:`DropCounter`)."""
    from ..maps.map import Map   # local: the map layer is only needed when a map is the counter
    if isinstance(counter, Map):
        raw = counter.lookup_raw(bytes(max(counter.key_size, 4)))
        width = min(counter.value_size, 8)
        stride = (counter.value_size + 7) & ~7 if counter.percpu else counter.value_size
        return sum(int.from_bytes(raw[i:i + width], _sys.byteorder)
                   for i in range(0, len(raw), stride))
    if callable(counter):
        value = counter()
    elif hasattr(counter, "value"):
        value = counter.value
    else:
        raise BPFError(f"drop counter {counter!r}: expected a Variable, an array map or a callable")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BPFError(f"drop counter {counter!r}: value {value!r} is not an integer") from None


class EventReader:
    """Several rings drained through one epoll instance.

    Subclasses add sources with :meth:`_register`.  ``poll`` waits for any of them;
    ``consume`` drains all of them without waiting.  The epoll fd
    (:attr:`epoll_fd`, also :meth:`fileno`) becomes readable when a ring has data,
    so it can be watched by another event loop.
    """

    def __init__(self) -> None:
        self._epoll: Optional[select.epoll] = select.epoll()
        self._sources: Dict[int, Source] = {}
        self._callbacks: Dict[int, Optional[Callback]] = {}
        self._owned: Dict[int, bool] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # -- sources ----------------------------------------------------------------------
    def _register(self, source: Source, callback: Optional[Callback], *, owned: bool = True) -> None:
        """Watch ``source``; ``owned`` sources are closed with the reader."""
        fd = source.fileno()
        self._ep().register(fd, select.EPOLLIN)
        self._sources[fd] = source
        self._callbacks[fd] = callback
        self._owned[fd] = owned

    def _ep(self) -> select.epoll:
        ep = self._epoll
        if ep is None:
            raise BPFError(f"{type(self).__name__} is closed")
        return ep

    # -- synchronous consumption ------------------------------------------------------
    @property
    def epoll_fd(self) -> int:
        """The epoll fd: readable when some ring has records (for your own event loop)."""
        return self._ep().fileno()

    def fileno(self) -> int:
        """Same as :attr:`epoll_fd`, so a reader can be handed to ``select``/``selectors``."""
        return self.epoll_fd

    def poll(self, timeout: Optional[float] = None) -> int:
        """Wait up to ``timeout`` seconds (``None``: forever, ``0``: not at all) for records,
        hand those of the ready rings to their callbacks; return how many were handled."""
        events = self._ep().poll(-1 if timeout is None else timeout)
        n = 0
        sources, callbacks = self._sources, self._callbacks
        for fd, _ in events:
            n += sources[fd].consume(callbacks[fd])
        return n

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until some ring has data (or ``timeout`` s pass: False), consuming
        nothing: for draining with batches (:meth:`RingBuffer.batches`) or your own code."""
        if self._has_data():
            return True
        return bool(self._ep().poll(-1 if timeout is None else timeout)) or self._has_data()

    def consume(self) -> int:
        """Drain every ring now (no waiting); return the number of records handled."""
        self._ep()
        n = 0
        for fd, src in list(self._sources.items()):
            n += src.consume(self._callbacks[fd])
        return n

    def _collect_all(self) -> List[Record]:
        out: List[Record] = []
        for src in list(self._sources.values()):
            src.collect(out)
        return out

    def _has_data(self) -> bool:
        return any(src.available() for src in self._sources.values())

    def records(self, timeout: Optional[float] = None) -> Iterator[Record]:
        """Yield :class:`Record` copies: what the rings hold now, then what arrives,
        until ``timeout`` seconds pass with no wake-up (``None``: forever, ``0``: just
        what is there now).  Callbacks are bypassed.  Each record is a copy: the
        convenient path, not the fast one (use callbacks or batches for throughput).
        """
        ep = self._ep()
        while True:
            out = self._collect_all()
            if out:
                yield from out
                continue
            if not ep.poll(-1 if timeout is None else timeout):
                return

    def __iter__(self) -> Iterator[Record]:
        """Records forever (blocking): ``for rec in reader: ...``."""
        return self.records(None)

    # -- asyncio ------------------------------------------------------------------------
    async def wait_async(self, timeout: Optional[float] = None) -> bool:
        """Wait, without blocking the event loop, until some ring has data.

        Returns False on timeout.  Uses ``loop.add_reader`` on :attr:`epoll_fd`; data
        that arrived before the reader was installed counts as ready too.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        fd = self.epoll_fd

        def ready() -> None:
            if not fut.done():
                fut.set_result(True)

        loop.add_reader(fd, ready)
        try:
            # Perf events report readiness once per wake-up, and polling the epoll fd
            # from outside may use it up: look at the rings themselves as well.
            if self._has_data():
                return True
            if timeout is None:
                await fut
                return True
            try:
                await asyncio.wait_for(fut, timeout)
                return True
            except asyncio.TimeoutError:
                return False
        finally:
            loop.remove_reader(fd)

    async def poll_async(self, timeout: Optional[float] = None) -> int:
        """``poll`` for asyncio: await records (up to ``timeout`` s), hand them to the
        callbacks, return how many.  0 means the timeout passed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            n = self.consume()
            if n:
                return n
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return 0
            if not await self.wait_async(left):
                return self.consume()

    async def arecords(self) -> AsyncIterator[Record]:
        """``async for rec in reader.arecords()``: records (copies) as they arrive, forever."""
        while True:
            out = self._collect_all()
            if not out:
                await self.wait_async()
                continue
            for r in out:
                yield r

    def add_to_loop(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        """Let an asyncio loop drive the callbacks: whenever the epoll fd is readable,
        the loop runs :meth:`consume`.  Undo with :meth:`remove_from_loop` (``close``
        does it too)."""
        if self._loop is not None:
            raise BPFError(f"{type(self).__name__} is already added to an event loop")
        loop = loop or asyncio.get_running_loop()
        loop.add_reader(self.epoll_fd, self.consume)
        self._loop = loop
        self.consume()          # what arrived before: its wake-up may be gone

    def remove_from_loop(self) -> None:
        """Stop the event loop from driving this reader."""
        loop, self._loop = self._loop, None
        if loop is not None and self._epoll is not None and not loop.is_closed():
            loop.remove_reader(self._epoll.fileno())

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop watching, unmap and close the rings the reader owns, close the epoll fd.
        Idempotent."""
        if self._epoll is None:
            return
        self.remove_from_loop()
        try:
            for fd, src in self._sources.items():
                if self._owned.get(fd, True):
                    src.close()
        finally:
            self._sources.clear()
            self._callbacks.clear()
            self._owned.clear()
            self._epoll.close()
            self._epoll = None

    @property
    def closed(self) -> bool:
        return self._epoll is None

    def __enter__(self) -> "EventReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
