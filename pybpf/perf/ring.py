"""PerfRing: one CPU's BPF output event and its mmap'd perf ring.

``bpf_perf_event_output(ctx, &map, BPF_F_CURRENT_CPU, data, size)`` writes into
the perf event stored at ``map[cpu]``.  Each such event is a software event
(``PERF_COUNT_SW_BPF_OUTPUT``, ``sample_type = PERF_SAMPLE_RAW``) whose ring is
mapped as ``1 + 2**n`` pages: a metadata page (``struct perf_event_mmap_page``:
``data_head`` written by the kernel, ``data_tail`` written by us) and the data
pages.  Records are ``struct perf_event_header { u32 type; u16 misc; u16 size; }``
followed by the body, 8-byte aligned:

* ``PERF_RECORD_SAMPLE``: ``u32 size; u8 data[size]`` -- ``size`` includes the
  padding the kernel adds to keep records 8-aligned (the BPF program's length
  rounded up to ``8k + 4``), as libbpf also reports it;
* ``PERF_RECORD_LOST``: ``u64 id; u64 lost`` -- samples dropped because the ring
  was full.

Unlike a BPF ring buffer the data pages are mapped once, so a record can wrap
past the end of the ring: its body is then copied, in two pieces, into a
scratch buffer.  Headers and 8-byte fields never straddle the end (everything is
8-aligned and the ring is a whole number of pages).
"""

from __future__ import annotations

import mmap as _mmap
import sys
from itertools import compress, count
from typing import Callable, List, Optional

from .. import sys as _sys
from ..consts import PERF_ATTR_FLAG_WATERMARK, PerfRecord, PerfSample, PerfSwId, PerfType
from ..errors import BPFError
from ..ringbuf.base import Callback, Record
from ..sys.fd import FD

__all__ = ["PerfRing"]

# struct perf_event_mmap_page: data_head, data_tail, data_offset, data_size (u64 each),
# as u64 indexes (byte offsets 1024, 1032, 1040, 1048; checked against the kernel
# layout by the tests).
_HEAD, _TAIL, _DATA_OFFSET, _DATA_SIZE = 128, 129, 130, 131
_SAMPLE = int(PerfRecord.SAMPLE)
_LOST = int(PerfRecord.LOST)
_SAMPLE_HDR = 12                 # perf_event_header + u32 raw size
_FOREVER = sys.maxsize

#: ``on_lost(cpu, count)``: the kernel reported ``count`` samples lost on ``cpu``.
LostCallback = Callable[[int, int], object]


class PerfRing:
    """The BPF output perf event of one CPU and its ring (consumer side).

    ``pages`` data pages (a power of two); wake-ups after every ``wakeup_events``
    samples, or, with ``watermark``, once that many bytes are waiting.
    """

    def __init__(self, cpu: int, *, name: str, pages: int, wakeup_events: int = 1,
                 watermark: Optional[int] = None, on_lost: Optional[LostCallback] = None):
        if pages <= 0 or pages & (pages - 1):
            raise BPFError(f"perf buffer {name}: pages must be a power of two, not {pages}")
        self.cpu = cpu
        self.name = name
        self.on_lost = on_lost
        self._records = self._bytes = self._lost = 0
        ctx = f"perf buffer {name} cpu {cpu}"
        flags = PERF_ATTR_FLAG_WATERMARK if watermark else 0
        self._fd: Optional[FD] = _sys.perf_event_open(
            PerfType.SOFTWARE, PerfSwId.BPF_OUTPUT, pid=-1, cpu=cpu,
            sample_type=PerfSample.RAW, sample_period=1, attr_flags=flags,
            wakeup_events=watermark if watermark else max(wakeup_events, 1), context=ctx)
        page = _sys.PAGE_SIZE
        try:
            self._mm = _sys.mmap(self._fd.fileno(), (1 + pages) * page,
                                 _mmap.PROT_READ | _mmap.PROT_WRITE, context=ctx)
        except BaseException:
            self._fd.close()
            raise
        whole = memoryview(self._mm)
        self._meta = whole[:page].cast("Q")
        data_off = self._meta[_DATA_OFFSET] or page           # 0 before Linux 4.1
        self.data_size = self._meta[_DATA_SIZE] or pages * page
        self._data = whole[data_off:data_off + self.data_size]
        self._q = self._data.cast("Q")                         # u64 words, index = offset >> 3
        self._d = self._data.cast("I")                         # u32 words, index = offset >> 2
        self._pay = self._data[_SAMPLE_HDR:]                   # sample at offset o: payload at o
        self._scratch = bytearray(1 << 16)                     # records are < 64 KiB (u16 size)
        self._sview = memoryview(self._scratch)
        self._views = [self._pay, self._d, self._q, self._data, self._meta, self._sview, whole]
        self._mask = self.data_size - 1

    def enable(self) -> None:
        _sys.perf_event_enable(self.fileno(), context=f"perf buffer {self.name} cpu {self.cpu}")

    def fileno(self) -> int:
        if self._fd is None:
            raise BPFError(f"perf buffer {self.name} cpu {self.cpu} is closed")
        return self._fd.fileno()

    def consume(self, callback: Optional[Callback] = None, limit: Optional[int] = None) -> int:
        """Hand the waiting samples (at most ``limit``) to ``callback(buf, offset, size)``
        and count lost records; return the number of samples handled.

        A true return value from the callback stops after that sample; if it raises,
        that sample counts as consumed.  ``data_tail`` is published once per call.
        """
        cb = callback
        if cb is None:
            raise BPFError(f"perf buffer {self.name}: no callback (pass one, or iterate records())")
        meta, q, d, pay, mask, dsize = self._meta, self._q, self._d, self._pay, self._mask, self.data_size
        left = _FOREVER if limit is None else limit
        head = meta[_HEAD]
        tail = meta[_TAIL]
        n = nbytes = 0
        stop = left <= 0
        try:
            while tail < head and not stop:
                off = tail & mask
                h = q[off >> 3]
                size = h >> 48
                if size < 8:
                    raise BPFError(f"perf buffer {self.name} cpu {self.cpu}: corrupt record "
                                   f"header {h:#x} at position {tail}")
                if h & 0xFFFFFFFF != _SAMPLE:
                    if h & 0xFFFFFFFF == _LOST:
                        lost = q[((off + 16) & mask) >> 3]
                        self._lost += lost
                        if self.on_lost is not None:
                            self.on_lost(self.cpu, lost)
                    tail += size
                    continue
                rs = d[((off + 8) & mask) >> 2]
                if off + size > dsize:                  # wraps: copy in two pieces
                    first = dsize - off
                    self._scratch[:first] = self._data[off:]
                    self._scratch[first:size] = self._data[:size - first]
                    tail += size
                    n += 1
                    nbytes += rs
                    left -= 1
                    if cb(self._sview, _SAMPLE_HDR, rs) or not left:
                        stop = True
                    continue
                k = min((head - tail) // size, (dsize - off) // size, left)
                if k > 1 and q[(off + size) >> 3] == h:
                    heads = q[off >> 3:(off + k * size) >> 3:size >> 3].tolist()
                    if heads.count(h) != k:
                        k = next(compress(count(), map(h.__ne__, heads)))
                    o = off
                    try:
                        for o in range(off, off + k * size, size):
                            if cb(pay, o, rs):
                                stop = True
                                break
                    except BaseException:
                        stop = True
                        raise
                    finally:
                        if stop:
                            k = (o - off) // size + 1
                        tail += k * size
                        n += k
                        nbytes += k * rs
                        left -= k
                else:
                    tail += size
                    n += 1
                    nbytes += rs
                    left -= 1
                    if cb(pay, off, rs):
                        stop = True
                if not left:
                    stop = True
        finally:
            meta[_TAIL] = tail
            self._records += n
            self._bytes += nbytes
        return n

    def collect(self, out: List[Record], limit: Optional[int] = None) -> int:
        """Append the waiting samples to ``out`` as :class:`Record` copies."""
        name, cpu, append = self.name, self.cpu, out.append
        return self.consume(
            lambda buf, off, size: append(Record(name, buf[off:off + size].tobytes(), cpu)), limit)

    def available(self) -> int:
        """Bytes waiting in the ring."""
        return self._meta[_HEAD] - self._meta[_TAIL]

    @property
    def counters(self) -> tuple:
        """``(records, bytes, lost)`` so far."""
        return self._records, self._bytes, self._lost

    def close(self) -> None:
        """Unmap and close the event (the caller removes it from the map first)."""
        if self._fd is None:
            return
        for v in self._views:
            try:
                v.release()
            except BufferError:
                pass
        self._views = []
        try:
            self._mm.close()
        except BufferError:
            pass                     # a caller still holds a view: unmapped with it
        self._fd.close()
        self._fd = None
