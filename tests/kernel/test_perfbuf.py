"""Perf buffers on the real kernel, and the ring buffer -> perf buffer fallback.

Samples come from tests/progs/pb_events.bpf.c (SEC("raw_tp") + bpf_loop +
bpf_perf_event_output), run with BPF_PROG_TEST_RUN on a chosen CPU.  Rings of
one data page make 80-byte records wrap the end of the ring.
"""

from __future__ import annotations

import asyncio
import select
import struct
import time
from typing import List, Tuple

import pytest

import pybpf
from pybpf.consts import MapType
from pybpf.consts import TestRunFlags as RunFlags
from pybpf.perf import PerfReader, PerfStats, online_cpus
from pybpf.ringbuf import RingBufReader, copy, events, open_events, prepare_events
from tests.conftest import fd_count

pytestmark = pytest.mark.kernel

EV = struct.Struct("<QI")          # struct event: seq, cpu, then fill[48]
EV_SIZE = 60                       # meaningful bytes of the 64-byte struct
RAW = 68                           # 64 bytes padded to 8k + 4, as the kernel reports it
REC = 80                           # perf record: 8 header + 4 size + 68


def raw_size(n: int) -> int:
    return ((n + 4 + 7) & ~7) - 4


@pytest.fixture
def pbc(bpf_objects):
    spec = pybpf.load_collection_spec(bpf_objects["pb_events"])
    if spec.maps["pb"].max_entries == 0:     # one slot per possible CPU (as libbpf does)
        from pybpf.maps import possible_cpus
        spec.maps["pb"].max_entries = possible_cpus()
    with pybpf.load(spec) as coll:
        yield coll


def produce(coll, n: int, *, first: int = 0, cpu: int = 0, var: bool = False) -> Tuple[int, int]:
    v = coll.variables
    v["nr_records"].value = n
    v["first_seq"].value = first
    v["var_size"].value = int(var)
    v["produced"].value = v["dropped"].value = 0
    coll.programs["produce"].test_run(flags=RunFlags.TEST_RUN_ON_CPU, cpu=cpu)
    return v["produced"].value, v["dropped"].value


class Collector:
    def __init__(self) -> None:
        self.data: List[bytes] = []

    def __call__(self, buf: memoryview, off: int, size: int) -> None:
        self.data.append(copy(buf, off, size))

    def seqs(self) -> List[int]:
        return [EV.unpack_from(d)[0] for d in self.data]


def expected_event(seq: int, cpu: int) -> bytes:
    return EV.pack(seq, cpu) + bytes((seq + j) & 0xFF for j in range(48))


def test_mmap_page_layout_matches_the_kernel():
    from pybpf.perf import ring
    from pybpf.sys._ffi import ffi
    for name, idx in (("data_head", ring._HEAD), ("data_tail", ring._TAIL),
                      ("data_offset", ring._DATA_OFFSET), ("data_size", ring._DATA_SIZE)):
        assert ffi.offsetof("struct perf_event_mmap_page", name) == idx * 8


def test_samples_in_order_with_wraparound(pbc):
    got = Collector()
    with PerfReader(pbc.maps["pb"], got, pages=1, cpus=[0]) as reader:
        assert reader.rings[0].data_size == 4096
        for r in range(12):                          # 480 records = 38,400 bytes: wraps 9 times
            assert produce(pbc, 40, first=r * 40) == (40, 0)
            assert reader.poll(1.0) == 40
        stats = reader.statistics()
    assert got.seqs() == list(range(480))
    assert all(len(d) == RAW and d[:EV_SIZE] == expected_event(i, 0)
               for i, d in enumerate(got.data))
    assert stats == PerfStats(records=480, bytes=480 * RAW, lost=0, lost_by_cpu={0: 0})


def test_variable_sizes(pbc):
    got = Collector()
    with PerfReader(pbc.maps["pb"], got, pages=1, cpus=[0]) as reader:
        for r in range(8):
            produce(pbc, 50, first=r * 50, var=True)
            reader.consume()
    for seq, d in enumerate(got.data):
        n = 1 + (seq * 5) % 60
        assert len(d) == raw_size(n)
        assert d[:n] == bytes((seq + 3 * j) & 0xFF for j in range(n))
    assert len(got.data) == 400


def test_overflow_reports_lost_samples(pbc):
    got = Collector()
    lost: List[Tuple[int, int]] = []
    fits = 4096 // REC
    with PerfReader(pbc.maps["pb"], got, pages=1, cpus=[0],
                    on_lost=lambda cpu, n: lost.append((cpu, n)),
                    drops=pbc.variables["dropped"]) as reader:
        assert produce(pbc, 200) == (fits, 200 - fits)
        assert reader.consume() == fits
        # the kernel writes the LOST record with the next sample that fits
        assert produce(pbc, 1, first=1000) == (1, 0)
        assert reader.consume() == 1
        stats = reader.statistics()
    assert got.seqs() == list(range(fits)) + [1000]
    assert lost == [(0, 200 - fits)]
    assert stats.lost == 200 - fits and stats.lost_by_cpu == {0: 200 - fits}
    assert stats.dropped == 0                 # the counter of the last run only


@pytest.mark.skipif(len(online_cpus()) < 2, reason="needs two online CPUs")
def test_one_ring_per_cpu_on_one_epoll(pbc):
    with PerfReader(pbc.maps["pb"], pages=4) as reader:
        assert sorted(reader.rings) == online_cpus()[:pbc.maps["pb"].max_entries]
        produce(pbc, 30, cpu=0)
        produce(pbc, 20, first=100, cpu=1)
        recs = list(reader.records(timeout=0.5))
    by_cpu = {0: [], 1: []}
    for r in recs:
        seq, cpu = EV.unpack_from(r.data)
        assert r.cpu == cpu and r.source == "pb"
        by_cpu[cpu].append(seq)
    assert by_cpu == {0: list(range(30)), 1: list(range(100, 120))}


def test_wakeup_events_and_watermark(pbc):
    got = Collector()
    with PerfReader(pbc.maps["pb"], got, pages=4, cpus=[0], wakeup_events=10) as reader:
        produce(pbc, 5)
        assert reader.poll(0) == 0                    # 5 < 10 samples: nobody woken
        produce(pbc, 5, first=5)
        assert reader.poll(1.0) == 10
    with PerfReader(pbc.maps["pb"], got, pages=4, cpus=[0], watermark=10 * REC) as reader:
        produce(pbc, 5, first=10)
        assert reader.poll(0) == 0                    # 400 bytes < the 800-byte watermark
        assert reader.consume() == 5
        produce(pbc, 12, first=15)
        r, _, _ = select.select([reader.epoll_fd], [], [], 1.0)
        assert r and reader.consume() == 12      # after an outside poll: consume()
    assert got.seqs() == list(range(27))


def test_asyncio_perf_reader(pbc):
    async def main() -> List[int]:
        loop = asyncio.get_running_loop()
        seqs: List[int] = []
        with PerfReader(pbc.maps["pb"], cpus=[0]) as reader:
            async def take() -> None:
                async for rec in reader.arecords():
                    seqs.append(EV.unpack_from(rec.data)[0])
                    if len(seqs) == 50:
                        return
            task = asyncio.create_task(take())
            await asyncio.sleep(0.01)
            await loop.run_in_executor(None, lambda: produce(pbc, 50))
            await asyncio.wait_for(task, 5)
        return seqs

    assert asyncio.run(main()) == list(range(50))


def test_close_removes_the_events_and_fds(pbc):
    next(iter(pbc.variables.values())).value   # maps .bss now: that mapping lives with the collection
    before = fd_count()
    reader = PerfReader(pbc.maps["pb"], lambda b, o, s: None, pages=2)
    assert produce(pbc, 10) == (10, 0)
    reader.close()
    reader.close()
    assert fd_count() == before
    assert produce(pbc, 10) == (0, 10)        # map slots emptied: output fails (ENOENT)
    with pytest.raises(pybpf.BPFError, match="power of two"):
        PerfReader(pbc.maps["pb"], pages=3)
    with pytest.raises(pybpf.BPFError, match="PERF_EVENT_ARRAY"):
        PerfReader(pbc.maps[".bss"])
    assert fd_count() == before


# -- ring buffer first, perf buffer as the fallback -----------------------------------------

FB = struct.Struct("<QI")


def run_fallback(bpf_objects, **prepare) -> Tuple[bool, type, List[Tuple[int, int]], int]:
    spec = pybpf.load_collection_spec(bpf_objects["pb_fallback"])
    use_ring = prepare_events(spec, "events", "events_perf", **prepare)
    got: List[Tuple[int, int]] = []

    def on_event(buf: memoryview, off: int, size: int) -> None:   # one callback, both ways
        got.append(FB.unpack_from(buf, off))

    with pybpf.load(spec) as coll:
        assert (coll.maps["events"].type == MapType.RINGBUF) == use_ring
        with open_events(coll, "events", "events_perf", on_event,
                         drops=coll.variables["dropped"]) as reader:
            coll.variables["nr_records"].value = 25
            coll.programs["produce"].test_run(flags=RunFlags.TEST_RUN_ON_CPU, cpu=0)
            n = 0
            deadline = time.monotonic() + 5
            while n < 25 and time.monotonic() < deadline:
                n += reader.poll(1.0)
            dropped = reader.statistics()
            dropped = (dropped["events"] if isinstance(dropped, dict) else dropped).dropped
            return use_ring, type(reader), got, dropped


def test_fallback_ring_buffer_by_default(bpf_objects):
    use_ring, kind, got, dropped = run_fallback(bpf_objects)
    assert use_ring and kind is RingBufReader
    assert got == [(i, 0xFEEDBEEF) for i in range(25)] and dropped == 0


def test_fallback_to_perf_buffer_when_forced(bpf_objects, monkeypatch):
    use_ring, kind, got, dropped = run_fallback(bpf_objects, have_ringbuf=False)
    assert not use_ring and kind is PerfReader
    assert got == [(i, 0xFEEDBEEF) for i in range(25)] and dropped == 0
    # the same through the probe itself answering "no ring buffer"
    monkeypatch.setattr(events, "have_ringbuf", lambda: False)
    use_ring, kind, got, _ = run_fallback(bpf_objects)
    assert not use_ring and kind is PerfReader and len(got) == 25


def test_prepare_events_errors(bpf_objects):
    spec = pybpf.load_collection_spec(bpf_objects["pb_events"])
    with pytest.raises(pybpf.BPFError, match="no map named 'events'"):
        prepare_events(spec, "events", "pb")
    spec = pybpf.load_collection_spec(bpf_objects["rb_events"])
    with pytest.raises(pybpf.BPFError, match="not a BPF_MAP_TYPE_PERF_EVENT_ARRAY"):
        prepare_events(spec, "rb", "rb2", have_ringbuf=False)
    spec = pybpf.load_collection_spec(bpf_objects["pb_fallback"])
    spec.variables.pop("use_ringbuf")
    with pytest.raises(pybpf.BPFError, match="no variable 'use_ringbuf'"):
        prepare_events(spec, "events", "events_perf", have_ringbuf=False)
    assert events.have_ringbuf() is True          # this kernel has ring buffers
