"""BPF ring buffers from user space: readers, vectorised batches, user ring buffers.

* :class:`RingBuffer` -- one ``BPF_MAP_TYPE_RINGBUF`` map mapped into the process;
  ``consume(callback)`` calls ``callback(buf, offset, size)`` per record with a
  view of the ring itself (no copy; :func:`copy` keeps one), ``batch(dtype)``
  returns fixed-size records as one numpy array (optional ``pybpf[numpy]``).
* :class:`RingBufReader` -- several rings on one epoll: ``poll(timeout)``,
  ``consume()``, ``records()`` iteration, asyncio (``poll_async``, ``arecords``,
  ``add_to_loop``), ``epoll_fd`` for other loops, ``statistics()``.
* :class:`UserRingBuffer` -- producer side of ``BPF_MAP_TYPE_USER_RINGBUF``.
* :func:`prepare_events` / :func:`open_events` -- ring buffer with a perf buffer
  fallback (:mod:`pybpf.perf`) on kernels without ring buffers.

See docs/ringbuf.md.
"""

from .base import Callback, DropCounter, EventReader, Record, copy, read_counter
from .events import have_ringbuf, open_events, prepare_events
from .reader import RingBufReader
from .ring import RingBuffer, RingStats
from .user import Reservation, UserRingBuffer

__all__ = [
    "RingBuffer", "RingStats", "RingBufReader", "EventReader", "Record", "Callback",
    "DropCounter", "copy", "read_counter", "UserRingBuffer", "Reservation",
    "have_ringbuf", "prepare_events", "open_events",
]
