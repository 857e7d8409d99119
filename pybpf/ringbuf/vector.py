"""Vectorised ring buffer consumption: every available record at once, as numpy.

For rings whose records all have one size ``S`` (one ``struct`` per
``bpf_ringbuf_reserve(&rb, sizeof(struct event), 0)``), records sit at a fixed
stride ``T = roundup(S + 8, 8)``.  :func:`take_batch` views the span between the
consumer and producer positions as a structured array ``{hdr: u32 @0, rec: dtype
@8, itemsize T}`` and checks all the headers in one vector operation:

* all headers equal ``S``: the records are ``view["rec"]``, a zero-copy view of
  the ring.  Wrap-around needs nothing special: the kernel maps the data area
  twice, so the span is contiguous even when it runs past the end of the ring;
* some headers are ``S | DISCARD``: those records are dropped with a boolean
  mask (the result is then a copy);
* a header with BUSY set ends the batch there (records are consumed in order);
* a record of another size breaks the stride: the batch takes the records before
  it, then walks that record in Python -- it goes to ``other(buf, offset, size)``
  if given -- and resumes vectorised after it.  Without ``other``, the batch stops
  before it; a batch that *starts* at such a record raises :class:`BPFError`
  (consume it with :meth:`RingBuffer.consume`).  If ``other`` raises, the batch
  consumes nothing (its records come again next time, the odd one included).

The ring space is handed back to the kernel (consumer position published) when
the :class:`RecordBatch` is released, so zero-copy views are never overwritten
while in use.  numpy is imported on first use only: ``pybpf.ringbuf`` works
without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from ..errors import BPFError, NotSupportedError
from .base import Callback

if TYPE_CHECKING:
    from .ring import RingBuffer

__all__ = ["RecordBatch", "take_batch", "iter_batches", "batch_dtype"]

_BUSY = 0x80000000
_DISCARD = 0x40000000
_LEN = _DISCARD - 1

_dtypes: Dict[Any, Tuple[Any, int, int]] = {}


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise NotSupportedError("vectorised ring buffer consumption",
                                "numpy is not installed (pip install pybpf[numpy])") from None
    return numpy


def batch_dtype(dtype: Any) -> Tuple[Any, int, int]:
    """``(ring_dtype, S, T)`` for records of ``dtype``: the dtype of one ring slot
    (header ``hdr`` at 0, record ``rec`` at 8, itemsize ``T``), the record size ``S``
    and the slot size ``T``."""
    np = _numpy()
    dt = np.dtype(dtype)
    hit = _dtypes.get(dt)
    if hit is None:
        size = dt.itemsize
        if size <= 0 or size > _LEN:
            raise BPFError(f"ring buffer batch: record dtype {dt} has unusable size {size}")
        stride = (size + 15) & -8
        slot = np.dtype({"names": ["hdr", "rec"], "formats": [np.uint32, dt],
                         "offsets": [0, 8], "itemsize": stride})
        hit = _dtypes[dt] = (slot, size, stride)
    return hit


class RecordBatch:
    """Records taken by :meth:`RingBuffer.batch`; release them to free the ring space.

    ``records`` is a numpy array of the record dtype, read-only.  When it is a view
    of the ring (``zero_copy``), it must not be used after :meth:`release` (the
    kernel reuses the memory); ``with`` releases on exit.
    """

    def __init__(self, ring: "RingBuffer", records: Any, end_pos: int, zero_copy: bool):
        self.records = records
        self.zero_copy = zero_copy
        self._ring: Optional["RingBuffer"] = ring
        self.end_pos = end_pos      # the consumer position release() publishes

    def release(self) -> None:
        """Hand the records' ring space back to the kernel.  Idempotent."""
        ring, self._ring = self._ring, None
        if ring is not None:
            ring._hand_back(self.end_pos)

    def __len__(self) -> int:
        return len(self.records)

    def __enter__(self) -> Any:
        return self.records

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:   # a forgotten batch must not wedge the ring
        self.release()


def _uniform(heads: Any, size: int) -> bool:
    """Every header (a u32 array, live ring memory) says "committed, ``size`` bytes": no
    BUSY, no DISCARD, no other size.  Two reductions and no temporary array.  Enough on
    live memory because a header in the span only ever changes by losing BUSY (or
    gaining DISCARD with it): once ``max`` has seen every header ``<= size``, none of
    them can change before ``min`` reads them."""
    return heads.max() == size and heads.min() == size


def take_batch(ring: "RingBuffer", dtype: Any, *, limit: Optional[int] = None,
               other: Optional[Callback] = None) -> RecordBatch:
    """Take every available record of ``dtype`` from ``ring`` (at most ``limit``);
    see the module docstring for the rules.  The caller releases the batch."""
    np = _numpy()
    ring._check_free()
    slot, size, stride = batch_dtype(dtype)
    rec_dt = slot.fields["rec"][0]
    cons = start = ring._cons[0]
    prod = ring._prod[0]
    mask, data, hdr = ring._mask, ring._data, ring._hdr
    left = limit if limit is not None else prod  # prod bounds the count anyway
    pieces: List[Any] = []
    copied = False
    n = ndisc = nother = other_bytes = 0
    while cons < prod and left > 0:
        k = min((prod - cons) // stride, left)
        if k:
            view = np.frombuffer(data, dtype=slot, count=k, offset=cons & mask)
            heads = view["hdr"]
            if _uniform(heads, size):                       # the fast path: one view
                pieces.append(view["rec"])
                n += k
                cons += k * stride
                left -= k
                continue
            # The headers are live memory: take one snapshot for every decision below
            # (a BUSY header may be committed between two reads).
            heads = heads.copy()
            ok = heads == size
            usable = (heads & ~np.uint32(_DISCARD)) == size  # submitted or discarded
            good = k if usable.all() else int(np.argmin(usable))
            if good:
                keep = ok[:good]
                kept = int(np.count_nonzero(keep))
                if kept == good:
                    pieces.append(view["rec"][:good])
                elif kept:
                    pieces.append(view["rec"][:good][keep])
                    copied = True
                n += kept
                ndisc += good - kept
                cons += good * stride
                left -= good
            if good == k:
                continue
        # The record at cons is not a submitted/discarded record of size S.
        h = hdr[(cons & mask) >> 2]
        if h & _BUSY:
            break
        rec_size = ((h & _LEN) + 15) & -8
        if h & _DISCARD:
            ndisc += 1
            cons += rec_size
            continue
        if h == size:
            continue            # it was BUSY when the vector check ran: committed since
        if other is None:
            if cons == start:
                raise BPFError(
                    f"ring buffer {ring.name}: record of {h & _LEN} bytes at position {cons}, "
                    f"the batch expects {size}-byte records (pass other= to handle mixed "
                    "sizes, or consume it with RingBuffer.consume)")
            break
        cons += rec_size
        nother += 1
        other_bytes += h & _LEN
        left -= 1
        if other(ring._pay, (cons - rec_size) & mask, h & _LEN):
            break
    if not pieces:
        records = np.empty(0, dtype=rec_dt)
    elif len(pieces) == 1:
        records = pieces[0]
    else:
        records = np.concatenate(pieces)
        copied = True
    ring._records += n + nother
    ring._bytes += n * size + other_bytes
    ring._discarded += ndisc
    ring._held = True
    return RecordBatch(ring, records, cons, zero_copy=bool(pieces) and not copied)


def iter_batches(ring: "RingBuffer", dtype: Any, chunk: int,
                 other: Optional[Callback] = None) -> Iterator[Any]:
    """The engine of :meth:`RingBuffer.batches`: chunks of at most ``chunk`` records
    until the ring is drained, each released when the next is requested (or when
    the generator is closed).

    The span between the consumer and producer positions is viewed once; each chunk
    is then a slice of that view whose headers pass :func:`_uniform`.  A chunk that
    fails the check goes through :func:`take_batch`, which sorts out discarded, busy
    and odd records.
    """
    np = _numpy()
    slot, size, stride = batch_dtype(dtype)
    cons_v, prod_v = ring._cons, ring._prod
    while True:
        ring._check_free()
        cons = cons_v[0]
        k = (prod_v[0] - cons) // stride
        i = 0
        if k:
            span = np.frombuffer(ring._data, dtype=slot, count=k, offset=cons & ring._mask)
            heads, recs = span["hdr"], span["rec"]
            while i < k:
                j = i + chunk if i + chunk < k else k
                if not _uniform(heads[i:j], size):
                    break
                ring._held = True
                try:
                    yield recs[i:j]
                finally:
                    ring._hand_back(cons + j * stride)
                    ring._records += j - i
                    ring._bytes += (j - i) * size
                i = j
                ring._check_open()          # closed by the caller while it held that chunk
            del span, heads, recs
            if i == k:
                if (prod_v[0] - cons_v[0]) // stride:
                    continue                        # more came while we read
                if prod_v[0] == cons_v[0]:
                    return
        # The general path: discarded, busy or odd-sized records, or a partial record.
        start = cons_v[0]
        b = take_batch(ring, dtype, limit=chunk, other=other)
        try:
            if not len(b.records):
                if b.end_pos == start:
                    return
                continue                            # only discarded/odd records
            yield b.records
        finally:
            b.release()
