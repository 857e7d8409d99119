"""BPF ring buffers on the real kernel: reader, epoll, asyncio, batches, user ring buffers.

Records come from tests/progs/rb_events.bpf.c, run with BPF_PROG_TEST_RUN
(SEC("syscall") + bpf_loop) into a 4-page ring, so every test wraps it.
"""

from __future__ import annotations

import asyncio
import os
import select
import struct
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

import pytest

import pybpf
from pybpf.consts import BPF_RB_NO_WAKEUP
from pybpf.ringbuf import (Record, RingBuffer, RingBufReader, RingStats, UserRingBuffer, copy)
from tests.conftest import ROOT, fd_count

pytestmark = pytest.mark.kernel

RING = 4 * 4096
REC = 48                      # sizeof(struct event)
SLOT = 56                     # REC + 8-byte header
HEAD = struct.Struct("<QI")


def expected_fixed(seq: int, tag: int = 0) -> bytes:
    """The first 44 bytes of struct event for ``seq`` (the 4 tail bytes are padding)."""
    return HEAD.pack(seq, tag) + bytes((seq + j) & 0xFF for j in range(32))


def var_len(seq: int) -> int:
    return 1 + (seq * 13) % 100


def expected_var(seq: int) -> bytes:
    return bytes((seq + 7 * j) & 0xFF for j in range(var_len(seq)))


@pytest.fixture
def rbc(bpf_objects):
    with pybpf.load(bpf_objects["rb_events"]) as coll:
        yield coll


def produce(coll, prog: str = "produce_fixed", n: int = 1, *, first: int = 0,
            discard_every: int = 0, tag: int = 0, flags: int = 0) -> Tuple[int, int]:
    """Run a producer; returns (produced, dropped) as the BPF program counted them."""
    v = coll.variables
    v["nr_records"].value = n
    v["first_seq"].value = first
    v["discard_every"].value = discard_every
    v["tag"].value = tag
    v["submit_flags"].value = flags
    v["auto_seq"].value = 0
    for name in ("produced", "dropped", "discarded"):
        v[name].value = 0
    coll.programs[prog].test_run()
    return v["produced"].value, v["dropped"].value


class Collector:
    """A callback that keeps copies (and the payload offsets it was handed)."""

    def __init__(self) -> None:
        self.data: List[bytes] = []
        self.offsets: List[int] = []

    def __call__(self, buf: memoryview, off: int, size: int) -> None:
        self.data.append(copy(buf, off, size))
        self.offsets.append(off)

    def seqs(self) -> List[int]:
        return [HEAD.unpack_from(d)[0] for d in self.data]


def test_fixed_records_in_order_across_wraparound(rbc):
    got = Collector()
    with RingBuffer(rbc.maps["rb"], got) as ring:
        assert ring.size == RING
        for r in range(10):                    # 1000 records = 56,000 bytes: wraps 3 times
            assert produce(rbc, n=100, first=r * 100, tag=7) == (100, 0)
            assert ring.consume() == 100
        assert ring.consumer_pos == ring.producer_pos == 1000 * SLOT
        assert ring.available() == 0 and ring.consume() == 0
        stats = ring.statistics()
    assert got.seqs() == list(range(1000))
    assert all(len(d) == REC and d[:44] == expected_fixed(i, 7) for i, d in enumerate(got.data))
    # some records straddled the end of the ring: handed out whole, in one view
    assert any(off + REC > RING for off in got.offsets)
    assert stats == RingStats(records=1000, bytes=1000 * REC, discarded=0, dropped=None)


def test_variable_sizes_alignment_and_wrap(rbc):
    got = Collector()
    with RingBuffer(rbc.maps["rb"], got) as ring:
        total = 0
        for r in range(6):
            assert produce(rbc, "produce_var", n=150, first=r * 150) == (150, 0)
            assert ring.consume() == 150
        expect = [expected_var(s) for s in range(900)]
        total = sum(len(e) for e in expect)
        assert ring.statistics().bytes == total
        assert ring.consumer_pos == sum((len(e) + 15) & ~7 for e in expect)
    assert got.data == expect


def test_discarded_records_are_skipped(rbc):
    got = Collector()
    with RingBuffer(rbc.maps["rb"], got) as ring:
        for r in range(4):
            produce(rbc, n=200, first=r * 200, discard_every=3)
            ring.consume()
        stats = ring.statistics()
    want = [s for s in range(800) if s % 3]
    assert got.seqs() == want
    assert stats.records == len(want) and stats.discarded == 800 - len(want)


def test_full_ring_counts_drops_and_loses_nothing_else(rbc):
    got = Collector()
    fits = (RING - 1) // SLOT          # the kernel keeps producer - consumer <= size - 1
    with RingBuffer(rbc.maps["rb"], got, drops=rbc.variables["dropped"]) as ring:
        assert produce(rbc, n=1000) == (fits, 1000 - fits)
        assert ring.statistics().dropped == 1000 - fits
        assert ring.consume() == fits
        assert got.seqs() == list(range(fits))
        # the per-CPU map counter of the same drops reads the same (summed over CPUs)
        per_cpu = RingBuffer(rbc.maps["rb"], drops=rbc.maps["drops"])
        try:
            assert per_cpu.statistics().dropped == 1000 - fits
        finally:
            per_cpu.close()
        # after the drain there is room again
        assert produce(rbc, n=10, first=5000) == (10, 0)
        assert ring.consume() == 10
    assert got.seqs()[fits:] == list(range(5000, 5010))


def run_concurrently(rbc, consume_step, seconds: float = 0.5) -> Tuple[int, int]:
    """A producer process (forked: truly in parallel, GIL or not) numbering records across
    runs while ``consume_step`` runs here; returns the BPF program's (produced, discarded)."""
    v = rbc.variables
    for name, value in (("nr_records", 64), ("auto_seq", 1), ("next_seq", 0),
                        ("discard_every", 5), ("submit_flags", 0), ("produced", 0),
                        ("dropped", 0), ("discarded", 0)):
        v[name].value = value
    prog_fd = rbc.programs["produce_fixed"].fd
    pid = os.fork()
    if pid == 0:                                   # the producer
        code = 0
        try:
            from pybpf import sys as bpf_sys
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                bpf_sys.prog_test_run(prog_fd)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    try:
        while not os.waitpid(pid, os.WNOHANG)[0]:
            consume_step()
    except BaseException:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise
    for _ in range(3):
        consume_step()
    return v["produced"].value, v["discarded"].value


def test_concurrent_producer_callback_path(rbc):
    got = Collector()
    with RingBufReader([rbc.maps["rb"]], got) as reader:
        produced, discarded = run_concurrently(rbc, lambda: reader.poll(0.01))
        stats = reader.statistics()["rb"]
    seqs = got.seqs()
    assert produced > 1000 and len(seqs) == produced          # nothing lost but drops
    assert all(a < b for a, b in zip(seqs, seqs[1:])) and all(s % 5 for s in seqs)
    assert stats.discarded == discarded and stats.records == produced


def test_concurrent_producer_vectorised_path(rbc):
    np = pytest.importorskip("numpy")
    seqs: List[Any] = []
    with RingBuffer(rbc.maps["rb"]) as ring:
        def step() -> None:
            for recs in ring.batches(event_dtype(np), max_records=100):
                seqs.append(recs["seq"].copy())
        produced, discarded = run_concurrently(rbc, step)
        stats = ring.statistics()
    allseq = np.concatenate(seqs)
    assert produced > 1000 and len(allseq) == produced
    assert (np.diff(allseq.astype(np.int64)) > 0).all() and (allseq % 5 != 0).all()
    assert stats.discarded == discarded


def test_limit_stop_and_callback_errors(rbc):
    with RingBuffer(rbc.maps["rb"]) as ring:
        produce(rbc, n=50)
        got = Collector()
        assert ring.consume(got, limit=10) == 10
        assert ring.consume(got, limit=0) == 0

        def stop_at_20(buf, off, size):
            got(buf, off, size)
            return HEAD.unpack_from(buf, off)[0] == 20
        assert ring.consume(stop_at_20) == 11
        assert got.seqs() == list(range(21))

        class Boom(Exception):
            pass

        def boom_at_25(buf, off, size):
            got(buf, off, size)
            if HEAD.unpack_from(buf, off)[0] == 25:
                raise Boom
        with pytest.raises(Boom):
            ring.consume(boom_at_25)
        assert ring.consume(got) == 24              # 26..49: the raising record was consumed
        assert got.seqs() == list(range(50))
        assert ring.statistics().records == 50
        with pytest.raises(pybpf.BPFError, match="no callback"):
            ring.consume()


def test_records_copies_and_iteration(rbc):
    with RingBufReader([rbc.maps["rb"]]) as reader:
        produce(rbc, n=30, tag=3)
        recs = list(reader.records(timeout=1))
        assert [r.source for r in recs] == ["rb"] * 30
        assert all(isinstance(r, Record) and r.cpu is None for r in recs)
        assert [HEAD.unpack_from(r.data)[0] for r in recs] == list(range(30))
        assert recs[5].data[:44] == expected_fixed(5, 3)
        assert list(reader.records(timeout=0)) == []
        produce(rbc, n=5)
        assert [len(b) for b in reader.rings["rb"].records()] == [REC] * 5


def test_poll_timeout_and_no_wakeup(rbc):
    got = Collector()
    with RingBufReader([rbc.maps["rb"]], got) as reader:
        t = time.monotonic()
        assert reader.poll(0.05) == 0
        assert time.monotonic() - t >= 0.04
        assert reader.wait(0.01) is False
        # BPF_RB_NO_WAKEUP: the records are there, but nobody is woken
        produce(rbc, n=20, flags=BPF_RB_NO_WAKEUP)
        assert reader.poll(0) == 0
        assert reader.wait(0) is True                 # wait() looks at the rings too
        assert reader.consume() == 20
        # default (adaptive) wake-up: the epoll fd becomes readable
        produce(rbc, n=20, first=20)
        r, _, _ = select.select([reader.epoll_fd], [], [], 1.0)
        assert r == [reader.epoll_fd] and reader.fileno() == reader.epoll_fd
        assert reader.poll(1.0) == 20
    assert got.seqs() == list(range(40))


def test_several_rings_on_one_epoll(rbc):
    a, b = Collector(), Collector()
    with RingBufReader() as reader:
        reader.add(rbc.maps["rb"], a)
        reader.add(rbc.maps["rb2"], b, drops=rbc.variables["dropped"])
        with pytest.raises(pybpf.BPFError, match="already added"):
            reader.add(rbc.maps["rb"], a)
        produce(rbc, n=40, tag=1)
        produce(rbc, "produce_rb2", n=30, first=100, tag=2)
        n = 0
        deadline = time.monotonic() + 5
        while n < 70 and time.monotonic() < deadline:
            n += reader.poll(1.0)
        assert n == 70
        stats = reader.statistics()
    assert a.seqs() == list(range(40)) and all(d[8] == 1 for d in a.data)
    assert b.seqs() == list(range(100, 130)) and all(d[8] == 2 for d in b.data)
    assert stats["rb"].records == 40 and stats["rb2"].records == 30
    assert stats["rb"].dropped is None and stats["rb2"].dropped == 0


def test_asyncio_reader_under_a_running_loop(rbc):
    async def main() -> Dict[str, List[int]]:
        loop = asyncio.get_running_loop()
        out: Dict[str, List[int]] = {}
        with RingBufReader([rbc.maps["rb"]]) as reader:
            # 1. async iteration, records produced by another thread while we wait
            async def take(k: int) -> List[int]:
                seqs = []
                async for rec in reader.arecords():
                    seqs.append(HEAD.unpack_from(rec.data)[0])
                    if len(seqs) == k:
                        return seqs
                return seqs
            task = asyncio.create_task(take(60))
            await asyncio.sleep(0.01)
            assert not task.done()
            await loop.run_in_executor(None, lambda: produce(rbc, n=60))
            out["arecords"] = await asyncio.wait_for(task, 5)

        # 2. poll_async: times out without data, then hands records to the callback
        got = Collector()
        with RingBufReader([rbc.maps["rb"]], got) as reader:
            assert await reader.poll_async(0.05) == 0
            fut = loop.run_in_executor(None, lambda: (time.sleep(0.05),
                                                      produce(rbc, n=10, first=60)))
            n = 0
            while n < 10:
                n += await reader.poll_async(5)
            await fut
            out["poll_async"] = got.seqs()

            # 3. the loop drives the callbacks by itself
            reader.add_to_loop()
            with pytest.raises(pybpf.BPFError, match="already"):
                reader.add_to_loop()
            await loop.run_in_executor(None, lambda: produce(rbc, n=25, first=70))
            for _ in range(500):
                if len(got.data) >= 35:
                    break
                await asyncio.sleep(0.01)
            reader.remove_from_loop()
            out["loop"] = got.seqs()[10:]
        return out

    out = asyncio.run(main())
    assert out["arecords"] == list(range(60))
    assert out["poll_async"] == list(range(60, 70))
    assert out["loop"] == list(range(70, 95))


def test_user_ring_buffer_producer(bpf_objects):
    hdr = struct.Struct("<QII")

    def record(seq: int, size: int) -> bytes:
        body = hdr.pack(seq, size, 0) + bytes(size - hdr.size)
        return body[:-1] + bytes([seq & 0xFF])

    with pybpf.load(bpf_objects["rb_user"]) as coll, UserRingBuffer(coll.maps["urb"]) as urb:
        v = coll.variables
        drain = coll.programs["drain"]
        sizes = [16 + (i * 37) % 300 for i in range(20)]
        for i, size in enumerate(sizes):
            assert urb.write(record(i, size))
        # reserve/discard in the middle: never seen by BPF
        r = urb.reserve(64)
        r.data[:] = record(999, 64)
        r.discard()
        with urb.reserve(40) as data:                        # submit on exit
            data[:] = record(20, 40)
        with pytest.raises(RuntimeError):
            with urb.reserve(40) as data:                    # discarded: the block raised
                raise RuntimeError
        drain.test_run()
        assert (v["drain_ret"].value, v["seen"].value, v["bad"].value) == (21, 21, 0)
        assert v["total_len"].value == sum(sizes) + 40

        # fill the ring: reserve fails (None) rather than overwrite; the kernel frees space
        seq, used = 21, 0
        while urb.write(record(seq, 200)):
            seq, used = seq + 1, used + 208
        assert 4096 - 208 < used <= 4096 and urb.free() < 208
        assert urb.reserve_blocking(200, timeout=0.05) is None
        drain.test_run()
        assert v["seen"].value == seq and v["bad"].value == 0
        assert urb.reserve_blocking(200, timeout=1) is not None   # pending: never submitted
        with pytest.raises(pybpf.BPFError, match="cannot reserve"):
            urb.reserve(4096)
        with pytest.raises(pybpf.BPFError, match="already submitted"):
            r.submit()
        with pytest.raises(pybpf.BPFError, match="USER_RINGBUF"):
            UserRingBuffer(coll.maps[".bss"])


def test_not_a_ring_buffer_and_cleanup(rbc):
    with pytest.raises(pybpf.BPFError, match="not a BPF_MAP_TYPE_RINGBUF"):
        RingBuffer(rbc.maps["drops"])
    next(iter(rbc.variables.values())).value   # maps .bss now: that mapping lives with the collection
    before = fd_count()
    reader = RingBufReader([rbc.maps["rb"], rbc.maps["rb2"]], lambda b, o, s: None)
    produce(rbc, n=5)
    reader.poll(1)
    reader.close()
    reader.close()
    assert reader.closed and fd_count() == before
    with pytest.raises(pybpf.BPFError, match="closed"):
        reader.poll(0)


# -- vectorised path -------------------------------------------------------------------------

@pytest.fixture
def np():
    return pytest.importorskip("numpy")


def event_dtype(np):
    return np.dtype([("seq", "<u8"), ("tag", "<u4"), ("fill", "u1", (32,)), ("_pad", "V4")])


def check_fill(np, recs):
    seq = recs["seq"].astype(np.uint64)
    want = (seq[:, None] + np.arange(32, dtype=np.uint64)[None, :]) & 0xFF
    assert (recs["fill"] == want).all()


def test_batch_zero_copy_across_wraparound(rbc, np):
    dt = event_dtype(np)
    with RingBuffer(rbc.maps["rb"]) as ring:
        produce(rbc, n=200)
        ring.consume(lambda b, o, s: None)
        produce(rbc, n=250, first=200, tag=9)           # 11,200 .. 25,200: wraps at 16,384
        batch = ring.batch(dt)
        assert batch.zero_copy and len(batch) == 250
        with batch as recs:
            assert recs["seq"].tolist() == list(range(200, 450))
            assert (recs["tag"] == 9).all()
            check_fill(np, recs)
            assert not recs.flags.writeable
            with pytest.raises(pybpf.BPFError, match="batch is still held"):
                ring.consume(lambda b, o, s: None)
        assert ring.consumer_pos == ring.producer_pos == 450 * SLOT
        assert len(ring.read_batch(dt)) == 0
        assert ring.statistics().records == 450 and ring.statistics().bytes == 450 * REC


def test_batch_discards_and_chunks(rbc, np):
    dt = event_dtype(np)
    with RingBuffer(rbc.maps["rb"]) as ring:
        produce(rbc, n=250, discard_every=4)
        recs = ring.read_batch(dt)
        assert recs["seq"].tolist() == [s for s in range(250) if s % 4]
        check_fill(np, recs)
        assert ring.statistics().discarded == 63
        produce(rbc, n=250, first=1000)
        chunks = [c["seq"].tolist() for c in ring.batches(dt, max_records=64)]
        assert [len(c) for c in chunks] == [64, 64, 64, 58]
        assert sum(chunks, []) == list(range(1000, 1250))
        assert ring.available() == 0


def test_batch_mixed_sizes(rbc, np):
    dt = event_dtype(np)
    with RingBuffer(rbc.maps["rb"]) as ring:
        produce(rbc, n=10)
        produce(rbc, "produce_var", n=5, first=1000)     # 1000..1004: none is 48 bytes long
        produce(rbc, n=10, first=10)
        # without `other`: the batch stops before the odd record ...
        assert ring.read_batch(dt)["seq"].tolist() == list(range(10))
        # ... and a batch starting at one says so
        with pytest.raises(pybpf.BPFError, match="expects 48-byte records"):
            ring.batch(dt)
        odd = Collector()
        recs = ring.read_batch(dt, other=odd)
        assert recs["seq"].tolist() == list(range(10, 20))
        assert odd.data == [expected_var(s) for s in range(1000, 1005)]
        assert ring.statistics().records == 25


def test_batches_mixes_fast_chunks_discards_and_odd_records(rbc, np):
    """batches() views clean stretches as slices and hands the rest to the general path."""
    dt = event_dtype(np)
    with RingBuffer(rbc.maps["rb"]) as ring:
        produce(rbc, n=40)                                   # 0..39 clean
        produce(rbc, n=40, first=40, discard_every=4)        # 40..79, every 4th discarded
        produce(rbc, "produce_var", n=3, first=1000)         # three odd-sized records
        produce(rbc, n=30, first=80)                         # 80..109 clean
        odd = Collector()
        chunks = [c["seq"].tolist() for c in ring.batches(dt, max_records=16, other=odd)]
        got = sum(chunks, [])
        assert got == list(range(40)) + [s for s in range(40, 80) if s % 4] + list(range(80, 110))
        assert all(0 < len(c) <= 16 for c in chunks)
        assert odd.data == [expected_var(s) for s in range(1000, 1003)]
        st = ring.statistics()
        assert st.records == len(got) + 3 and st.discarded == 10
        assert ring.available() == 0

        # Leaving the loop early consumes the chunk in hand, and only that one.
        produce(rbc, n=100, first=200)
        it = ring.batches(dt, max_records=32)
        first = next(it)["seq"].tolist()
        it.close()
        assert first == list(range(200, 232))
        assert ring.consumer_pos == ring.producer_pos - 68 * SLOT
        assert ring.read_batch(dt)["seq"].tolist() == list(range(232, 300))
        with pytest.raises(pybpf.BPFError, match="max_records"):
            ring.batches(dt, max_records=0)


def test_batches_after_the_ring_is_closed(rbc, np):
    """Closing the ring under a running batches() loop: the chunk in hand stays readable
    (its memory is never unmapped under it) and the next step says the ring is closed."""
    dt = event_dtype(np)
    ring = RingBuffer(rbc.maps["rb"])
    try:
        produce(rbc, n=100)
        it = ring.batches(dt, max_records=40)
        first = next(it)
        ring.close()
        assert first["seq"].tolist() == list(range(40))
        with pytest.raises(pybpf.BPFError, match="closed"):
            next(it)
    finally:
        ring.close()
    # The same with one batch (and with the general path: a discarded record in it).
    # Nothing was handed back after the close: a new reader starts at record 0.
    ring = RingBuffer(rbc.maps["rb"])
    try:
        assert ring.read_batch(dt)["seq"].tolist() == list(range(100))
        produce(rbc, n=10, first=100, discard_every=3)
        batch = ring.batch(dt)
        ring.close()
        with batch as recs:
            assert recs["seq"].tolist() == [s for s in range(100, 110) if s % 3]
        batch.release()                             # idempotent, closed ring or not
        with pytest.raises(pybpf.BPFError, match="closed"):
            ring.batch(dt)
        # Every other entry point says so too (no raw ValueError of a released view).
        for call in (lambda: ring.consume(lambda b, o, s: None), ring.available, ring.records,
                     lambda: ring.consumer_pos, lambda: ring.producer_pos,
                     lambda: ring.words[0], ring.fileno):
            with pytest.raises(pybpf.BPFError, match="closed"):
                call()
    finally:
        ring.close()


def test_ringbuf_works_without_numpy(rbc):
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "import pybpf, pybpf.ringbuf, pybpf.perf\n"
        "from pybpf.consts import MapType\n"
        "from pybpf.maps.map import Map\n"
        "m = Map.create(pybpf.MapSpec('r', MapType.RINGBUF, 0, 0, 4096))\n"
        "ring = pybpf.ringbuf.RingBuffer(m, lambda b, o, s: None)\n"
        "assert ring.consume() == 0\n"
        "try:\n"
        "    ring.batch('u8')\n"
        "except pybpf.NotSupportedError as e:\n"
        "    print('OK', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK") and "numpy" in out.stdout
