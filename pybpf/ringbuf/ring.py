"""RingBuffer: one BPF_MAP_TYPE_RINGBUF map mapped into this process, consumer side.

Memory layout, as the kernel exposes it through ``mmap`` of the map fd::

    offset 0          consumer page   rw   consumer_pos (u64), written by us
    offset PAGE       producer page   ro   producer_pos (u64), written by BPF programs
    offset 2*PAGE     data            ro   2**n bytes, mapped twice back to back

Each record is an 8-byte header -- ``u32 len`` (bit 31 BUSY: being written, bit
30 DISCARD: skip it) and ``u32 pg_off`` (kernel-internal) -- followed by ``len``
bytes, the whole rounded up to 8 bytes.  Positions grow forever; ``pos & (size -
1)`` is the offset in the data area.  Because the data area is mapped twice, a
record that wraps past the end is still contiguous in memory: no copy is ever
needed.

The consumer reads ``producer_pos``, walks the headers up to it, stops at the
first BUSY record (records are consumed in order), and publishes the new
``consumer_pos`` once per pass, which frees the space for the producers.  On
x86-64 (TSO) plain loads and stores give the acquire/release ordering the
protocol needs.
"""

from __future__ import annotations

import mmap as _mmap
import sys
from itertools import compress, count
from typing import Any, Iterator, List, Optional

import attrs

from .. import sys as _sys
from ..consts import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ, MapType
from ..errors import BPFError
from ..sys.fd import FD
from .base import Callback, DropCounter, Record, read_counter

__all__ = ["RingBuffer", "RingStats"]

_BUSY = BPF_RINGBUF_BUSY_BIT
_DISCARD = BPF_RINGBUF_DISCARD_BIT
_FLAGS = _BUSY | _DISCARD              # any header >= _DISCARD has a flag set
_LEN = _DISCARD - 1                    # the length bits
_HDR = BPF_RINGBUF_HDR_SZ
_PAD = _HDR + 7                        # (len + _PAD) & -8 = record size in the ring
_FOREVER = sys.maxsize
_CHUNK_BYTES = 512 << 10               # batches(): chunks that stay in the CPU cache ...
_CHUNK_MIN = 4096                      # ... but long enough to amortise the per-chunk cost


@attrs.frozen
class RingStats:
    """Counters of one ring buffer (see :meth:`RingBuffer.statistics`).

    ``records``/``bytes``: records (and their payload bytes) handed to callbacks,
    iterators or batches.  ``discarded``: records the producer discarded
    (``bpf_ringbuf_discard``), skipped.  ``dropped``: records the producer could
    not emit because the ring was full, as counted by the BPF program itself;
    ``None`` when no counter was given (the kernel keeps no such count).
    """
    records: int
    bytes: int
    discarded: int
    dropped: Optional[int] = None


class _ClosedWords:
    """What :attr:`RingBuffer.words` becomes when the ring is closed."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __getitem__(self, index: Any) -> int:
        raise BPFError(f"ring buffer {self.name} is closed: its words are unmapped")

    def __len__(self) -> int:
        return 0


class RingBuffer:
    """Consumer side of one BPF ring buffer map.

    ``callback(buf, offset, size)`` is called for every record, ``buf`` being a
    read-only view of the ring (valid during the call only; copy with
    :func:`pybpf.ringbuf.copy`).  ``drops`` is the BPF program's own counter of
    failed reservations (a global variable, an array map or a callable), reported
    as :attr:`RingStats.dropped`.

    Records are 8-byte aligned, so :attr:`words` (the same memory viewed as native
    u64) gives the record at ``offset`` as ``words[offset >> 3]``,
    ``words[(offset >> 3) + 1]``...: the cheapest way to read integer fields in a
    callback (``struct.unpack_from(fmt, buf, offset)`` is the general way).

    The ring keeps a reference to ``map`` and owns a duplicate of its fd, so the
    mapping stays valid whatever happens to the :class:`~pybpf.Map` object.
    """

    def __init__(self, map: Any, callback: Optional[Callback] = None, *,
                 drops: Optional[DropCounter] = None, name: Optional[str] = None):
        if getattr(map, "type", None) != MapType.RINGBUF:
            raise BPFError(f"map {getattr(map, 'name', map)!r} is not a BPF_MAP_TYPE_RINGBUF "
                           f"(type {getattr(map, 'type', '?')!s})")
        self.map = map
        self.name: str = name or map.name
        self.callback = callback
        self.drops = drops
        self.size: int = map.max_entries
        self._records = self._bytes = self._discarded = 0
        self._held = False
        page = _sys.PAGE_SIZE
        ctx = f"ring buffer {self.name}"
        self._fd: Optional[FD] = _sys.dup_fd(map.fd)
        maps: List[_mmap.mmap] = []
        try:
            maps.append(_sys.mmap(self._fd.fileno(), page, _mmap.PROT_READ | _mmap.PROT_WRITE,
                                  context=f"{ctx}: consumer page"))
            maps.append(_sys.mmap(self._fd.fileno(), page + 2 * self.size, _mmap.PROT_READ,
                                  offset=page, context=f"{ctx}: producer page and data"))
        except BaseException:
            for m in maps:
                m.close()
            self._fd.close()
            raise
        self._maps = maps
        cons_page, prod_area = memoryview(maps[0]), memoryview(maps[1])
        self._cons = cons_page.cast("Q")                 # [0]: consumer_pos
        self._prod = prod_area[:page].cast("Q")          # [0]: producer_pos
        self._data = prod_area[page:]                    # 2 * size bytes (double mapping)
        self._hdr = self._data.cast("I")                 # headers, indexed by offset >> 2
        self._pay = self._data[_HDR:]                    # payload of the record at offset o: o
        self.words = self._pay.cast("Q")
        self._views = [self.words, self._pay, self._hdr, self._data, self._prod, self._cons,
                       prod_area, cons_page]
        self._mask = self.size - 1

    # -- the fast path ------------------------------------------------------------------
    def consume(self, callback: Optional[Callback] = None, limit: Optional[int] = None) -> int:
        """Hand every available record (at most ``limit``) to ``callback`` (default: the
        ring's own); return how many were handled.

        Stops early at a record still being written, or after a callback returns a
        true value.  If a callback raises, the records before it and the one that
        raised are consumed and the exception propagates.  The consumer position is
        published once per pass over the ring, not per record.

        Runs of same-size records (the usual case) are found with one C-level scan
        of their headers and delivered by a tight loop; other records go one by one.
        """
        self._check_free()
        cb = callback if callback is not None else self.callback
        if cb is None:
            raise BPFError(f"ring buffer {self.name}: no callback (pass one to consume(), "
                           "or iterate records())")
        cons_v, prod_v, hdr, pay, mask = self._cons, self._prod, self._hdr, self._pay, self._mask
        left = _FOREVER if limit is None else limit
        n = nbytes = ndisc = 0
        cons = cons_v[0]
        stop = left <= 0
        try:
            while not stop:
                prod = prod_v[0]
                if cons >= prod:
                    break
                while cons < prod:
                    off = cons & mask
                    ln = hdr[off >> 2]
                    if ln >= _DISCARD:                      # BUSY or DISCARD
                        if ln & _BUSY:
                            stop = True
                            break
                        cons += ((ln & _LEN) + _PAD) & -8
                        ndisc += 1
                        continue
                    stride = (ln + _PAD) & -8
                    k = (prod - cons) // stride
                    if k > left:
                        k = left
                    if k > 1 and hdr[(off + stride) >> 2] == ln:
                        # A run of records of this size: check all headers at C speed.
                        heads = hdr[off >> 2:(off + k * stride) >> 2:stride >> 2].tolist()
                        if heads.count(ln) != k:
                            k = next(compress(count(), map(ln.__ne__, heads)))
                        o = off
                        try:
                            for o in range(off, off + k * stride, stride):
                                if cb(pay, o, ln):
                                    stop = True
                                    break
                        except BaseException:
                            stop = True
                            raise
                        finally:
                            if stop:
                                k = (o - off) // stride + 1
                            cons += k * stride
                            n += k
                            nbytes += k * ln
                            left -= k
                        if stop:
                            break
                    else:
                        cons += stride
                        n += 1
                        nbytes += ln
                        left -= 1
                        if cb(pay, off, ln):
                            stop = True
                            break
                    if not left:
                        stop = True
                        break
                cons_v[0] = cons                            # once per pass
        finally:
            cons_v[0] = cons
            self._records += n
            self._bytes += nbytes
            self._discarded += ndisc
        return n

    def records(self, limit: Optional[int] = None) -> List[bytes]:
        """Copies of the available records (at most ``limit``), consumed."""
        out: List[bytes] = []
        append = out.append
        self.consume(lambda buf, off, size: append(buf[off:off + size].tobytes()), limit)
        return out

    def collect(self, out: List[Record], limit: Optional[int] = None) -> int:
        """Append the available records to ``out`` as :class:`Record` copies (reader use)."""
        name, append = self.name, out.append
        return self.consume(lambda buf, off, size: append(Record(name, buf[off:off + size].tobytes())),
                            limit)

    # -- vectorised path (numpy) ----------------------------------------------------------
    def batch(self, dtype: Any, *, limit: Optional[int] = None,
              other: Optional[Callback] = None) -> Any:
        """All available fixed-size records at once, as a numpy structured array.

        Returns a :class:`~pybpf.ringbuf.vector.RecordBatch`: use it as a context
        manager (``with ring.batch(dt) as recs:``); ``recs`` is, whenever possible, a
        zero-copy view of the ring, and the space is handed back to the kernel on exit
        (:meth:`~pybpf.ringbuf.vector.RecordBatch.release`).  See
        :func:`pybpf.ringbuf.vector.take_batch` for the header checks and fallbacks.
        Needs numpy (``pip install pybpf[numpy]``).
        """
        from .vector import take_batch
        return take_batch(self, dtype, limit=limit, other=other)

    def batches(self, dtype: Any, *, max_records: Optional[int] = None,
                other: Optional[Callback] = None) -> Iterator[Any]:
        """The available records as a sequence of :meth:`batch` arrays of at most
        ``max_records`` records each (default: 512 KiB of ring, at least 4096 records),
        until the ring is drained.  Each array is valid until the next one is requested:
        its space is released then.  Chunks that fit in the CPU cache make checking the
        headers and then reading the records one pass over memory instead of two: the
        fastest way to drain a big ring.
        """
        from .vector import batch_dtype, iter_batches
        if max_records is None:
            max_records = max(_CHUNK_MIN, _CHUNK_BYTES // batch_dtype(dtype)[2])
        elif max_records < 1:
            raise BPFError(f"ring buffer {self.name}: max_records must be >= 1, not {max_records}")
        return iter_batches(self, dtype, max_records, other)

    def read_batch(self, dtype: Any, *, limit: Optional[int] = None,
                   other: Optional[Callback] = None) -> Any:
        """Like :meth:`batch`, but returns a copy and releases the ring space at once."""
        from .vector import take_batch
        with take_batch(self, dtype, limit=limit, other=other) as recs:
            return recs.copy()

    # -- state ------------------------------------------------------------------------------
    def available(self) -> int:
        """Bytes between the consumer and producer positions (headers included)."""
        self._check_open()
        return self._prod[0] - self._cons[0]

    @property
    def consumer_pos(self) -> int:
        self._check_open()
        return self._cons[0]

    @property
    def producer_pos(self) -> int:
        self._check_open()
        return self._prod[0]

    # Every entry point checks here first: once closed, the position views are released
    # and reading them would raise a bare ValueError.
    def _check_open(self) -> None:
        if self._fd is None:
            raise BPFError(f"ring buffer {self.name} is closed")

    def _check_free(self) -> None:
        """Open, and not held by a batch (what reading records needs)."""
        self._check_open()
        if self._held:
            raise BPFError(f"ring buffer {self.name}: a batch is still held; release it first")

    def _hand_back(self, pos: int) -> None:
        """End a batch's hold and publish ``pos`` as the consumer position (nothing to
        publish once the ring is closed: its consumer page is unmapped)."""
        self._held = False
        if self._fd is not None:
            self._cons[0] = pos

    def statistics(self) -> RingStats:
        """Counters so far; ``dropped`` reads the BPF program's counter (a syscall) if given."""
        dropped = read_counter(self.drops) if self.drops is not None else None
        return RingStats(records=self._records, bytes=self._bytes, discarded=self._discarded,
                         dropped=dropped)

    def fileno(self) -> int:
        """The ring's own fd (a dup of the map fd): readable when it holds records."""
        self._check_open()
        return self._fd.fileno()  # type: ignore[union-attr]

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Unmap the ring and close its fd (the map itself belongs to its owner).

        Views of the ring still held elsewhere (a kept ``buf``, an unreleased batch)
        keep that memory mapped until they are gone; it is never unmapped under them.
        """
        if self._fd is None:
            return
        for v in self._views:
            try:
                v.release()
            except BufferError:
                pass                        # exported to a live view: freed with it
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                pass
        self._views = []
        self.words = _ClosedWords(self.name)      # not a released memoryview's ValueError
        self._maps = []
        self._fd.close()
        self._fd = None

    def __enter__(self) -> "RingBuffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"fd={self._fd.fileno()}"
        return f"<pybpf.ringbuf.RingBuffer {self.name} size={self.size} {state}>"
