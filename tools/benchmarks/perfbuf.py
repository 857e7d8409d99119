"""Perf buffer drain and concurrent producer/consumer (issue 5), beside libbpf.

Same object and protocol as ../shared/bench-anchors (build/perfbuf.bpf.o,
RESULTS.md "Re-running side by side with pybpf"): one PERF_COUNT_SW_BPF_OUTPUT
event per CPU with sample_type RAW, sample_period 1, wakeup_events 1 and 4096
data pages (16 MiB) per CPU.  Drain: ``produce_<size>`` (SEC("raw_tp"),
bpf_perf_event_output with BPF_F_CURRENT_CPU) run by test_run on CPU 0 writes
N = 0.97 x 16 MiB / roundup8(12 + size) records; only ``PerfReader.consume()`` is
timed (count, sum of the first u64 and zero losses checked).  Concurrent (64 B):
a producer process pinned to CPU 0 runs the program in batches of 1024 for 2 s
while this process, pinned to CPU 1, sits in ``PerfReader.poll(0.1)``.
libbpf's harness runs right before the pybpf figures it is compared with.
"""

from __future__ import annotations

import statistics
import struct
import sys
import time
from typing import Tuple

from tools.benchmarks.ringbuf import (BATCH, CONCURRENT_REPS, CONCURRENT_SECONDS, fork_producer,
                                      pinned, wait_producer)

ANCHOR_TARGETS = ["build/perfbuf.bpf.o", "build/perfbuf_bench"]

SIZES = (16, 64, 256, 1024)
PAGES = 4096
RING = PAGES * 4096


def records_for(size: int) -> int:
    return int(RING // ((12 + size + 7) & ~7) * 0.97)     # as perfbuf_bench.c computes it


def run(ctx) -> None:
    import pybpf
    from pybpf.consts import TestRunFlags
    from pybpf.maps import possible_cpus
    from pybpf.perf import PerfReader

    spec = pybpf.load_collection_spec(ctx.anchors / "build" / "perfbuf.bpf.o")
    if spec.maps["pb"].max_entries == 0:      # libbpf sizes it to the possible CPUs
        spec.maps["pb"].max_entries = possible_cpus()
    unpack = struct.Struct("<Q").unpack_from
    on_cpu0 = int(TestRunFlags.TEST_RUN_ON_CPU)
    total = 0

    def cb(buf: memoryview, off: int, size: int) -> None:
        nonlocal total
        total += unpack(buf, off)[0]

    with pybpf.load(spec) as coll, PerfReader(coll.maps["pb"], cb, pages=PAGES) as reader:
        v = coll.variables

        for size in SIZES:
            n = records_for(size)
            lib = ctx.libbpf("build/perfbuf_bench", "-n", str(ctx.reps), "--sizes", str(size),
                             "--no-concurrent")
            prog = coll.programs[f"produce_{size}"]
            rates, cpu = [], []
            with pinned(0):
                for rep in range(ctx.reps + 1):          # rep 0: warm-up
                    v["nr_records"].value = n
                    v["produced"].value = v["dropped"].value = 0
                    prog.test_run(flags=on_cpu0, cpu=0)
                    if v["produced"].value != n or v["dropped"].value:
                        raise SystemExit(f"perfbuf producer did not write {n} records ({size} B)")
                    total = 0
                    lost0 = reader.statistics().lost
                    c, t = time.thread_time(), time.perf_counter()
                    got = reader.consume()
                    dt, dc = time.perf_counter() - t, time.thread_time() - c
                    if got != n or total != n * (n - 1) // 2 or reader.statistics().lost != lost0:
                        raise SystemExit(f"perfbuf drain {size} B: got {got} of {n}, sum {total}")
                    if rep:
                        rates.append(n / dt / 1e6)
                        cpu.append(n / max(dc, 1e-9) / 1e6)
            label = f"perfbuf drain {size}B: callback, sum first u64 (struct.unpack_from)"
            ctx.row(label, "M events/s", statistics.median(rates),
                    lib.get(f"perfbuf:{size}B drain: perf_buffer__consume() of {n} records"),
                    rate=True)
            ctx.row(f"{label}, per CPU-second", "M events/s", statistics.median(cpu), None,
                    rate=True)

        def concurrent(size: int) -> Tuple[float, float, float, float]:
            reader.consume()
            start = reader.statistics()
            v["nr_records"].value = BATCH
            v["produced"].value = v["dropped"].value = 0
            prog_fd = coll.programs[f"produce_{size}"].fd
            with pinned(1):
                c0, t0 = time.thread_time(), time.perf_counter()
                pid = fork_producer(prog_fd, CONCURRENT_SECONDS, cpu=0, batch=BATCH,
                                    test_run_flags=on_cpu0)
                wait_producer(pid, lambda: reader.poll(0.1))
                t1 = time.perf_counter()
                reader.consume()
                c2, t2 = time.thread_time(), time.perf_counter()
            end = reader.statistics()
            consumed = end.records - start.records
            produced, dropped = v["produced"].value, v["dropped"].value
            offered = produced + dropped
            if consumed != produced:
                print(f"warning: perfbuf concurrent: consumed {consumed} != produced {produced}",
                      file=sys.stderr)
            return (consumed / (t2 - t0) / 1e6, offered / (t1 - t0) / 1e6,
                    100.0 * (offered - consumed) / offered if offered else 0.0,
                    100.0 * (c2 - c0) / (t2 - t0))

        lib = ctx.libbpf("build/perfbuf_bench", "-n", "1", "--sizes", "64", "--no-drain",
                         "-c", str(CONCURRENT_REPS), "-d", f"{CONCURRENT_SECONDS:g}")
        runs = [concurrent(64) for _ in range(CONCURRENT_REPS)]
        key = f"perfbuf:64B concurrent {CONCURRENT_SECONDS:.0f}s"
        ctx.row("perfbuf concurrent 64B 2s, PerfReader.poll(0.1): consumed", "M events/s",
                statistics.median(r[0] for r in runs),
                lib.get(f"{key}: consumed (perf_buffer__poll)"), rate=True)
        ctx.row("perfbuf concurrent 64B 2s, PerfReader.poll(0.1): offered by producer",
                "M events/s", statistics.median(r[1] for r in runs),
                lib.get(f"{key}: offered by producer"), rate=True)
        ctx.row("perfbuf concurrent 64B 2s, PerfReader.poll(0.1): lost (ring full)",
                "% of offered", statistics.median(r[2] for r in runs),
                lib.get(f"{key}: lost (ring full)") or None)
        ctx.row("perfbuf concurrent 64B 2s, PerfReader.poll(0.1): consumer CPU share",
                "% of 1 CPU", statistics.median(r[3] for r in runs), None)
