"""RingBufReader: several BPF ring buffers drained through one epoll instance.

The counterpart of libbpf's ``ring_buffer`` manager (``ring_buffer__new/add/poll/
consume/epoll_fd``)::

    with RingBufReader() as reader:
        reader.add(coll.maps["events"], on_event, drops=coll.variables["dropped"])
        reader.add(coll.maps["errors"], on_error)
        while running:
            reader.poll(0.1)             # or: for rec in reader: ...
                                         # or: await reader.poll_async()
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Union

from ..errors import BPFError
from .base import Callback, DropCounter, EventReader
from .ring import RingBuffer, RingStats

__all__ = ["RingBufReader"]


class RingBufReader(EventReader):
    """Consumer of one or more BPF ring buffers (see :class:`EventReader` for
    ``poll``/``consume``/``records``/asyncio).

    ``maps`` are added with the reader-wide ``callback``; :meth:`add` adds more,
    each with its own callback and drop counter.  Rings the reader maps itself
    (from maps) are closed with it; :class:`RingBuffer` objects handed in stay
    their owner's.
    """

    def __init__(self, maps: Iterable[Any] = (), callback: Optional[Callback] = None):
        super().__init__()
        self.callback = callback
        self.rings: Dict[str, RingBuffer] = {}
        try:
            for m in maps:
                self.add(m)
        except BaseException:
            self.close()
            raise

    def add(self, map: Union[Any, RingBuffer], callback: Optional[Callback] = None, *,
            drops: Optional[DropCounter] = None, name: Optional[str] = None) -> RingBuffer:
        """Start watching a ring buffer map (or an already mapped :class:`RingBuffer`).

        ``callback`` defaults to the reader's; ``drops`` is the BPF program's counter
        of failed reservations (see :class:`RingStats`); ``name`` (default: the map's
        name) keys :attr:`rings` and :meth:`statistics` and names the records.
        """
        ring = map if isinstance(map, RingBuffer) else RingBuffer(map, drops=drops, name=name)
        if ring.name in self.rings:
            if ring is not map:
                ring.close()
            raise BPFError(f"ring buffer reader: a ring named {ring.name!r} is already added")
        cb = callback or ring.callback or self.callback
        if ring is not map:
            ring.callback = cb
        try:
            self._register(ring, cb, owned=ring is not map)
        except BaseException:
            if ring is not map:
                ring.close()
            raise
        self.rings[ring.name] = ring
        return ring

    def statistics(self) -> Dict[str, RingStats]:
        """Per-ring counters, by ring name."""
        return {name: ring.statistics() for name, ring in self.rings.items()}

    def close(self) -> None:
        super().close()
        self.rings.clear()

    def __enter__(self) -> "RingBufReader":
        return self

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"epoll fd={self.epoll_fd}"
        return f"<pybpf.ringbuf.RingBufReader rings={list(self.rings)} {state}>"
