"""Syscall-tracing cost of the same program loaded by pybpf and by libbpf (issue 5).

As src/systrace_bench.c: a syscall(SYS_getpid) loop pinned to CPU 0 (256 calls per
clock read) runs for 1 s with nothing attached and with build/systrace.bpf.o's
``count_enter`` on tracepoint/raw_syscalls/sys_enter (a per-CPU counter, every
process's syscalls, no filter); "added" is the median over reps of the per-rep
difference.  pybpf loads and attaches the program itself; the loop is a tiny C
program (the cost of the traced syscall is what is compared, not the loop).  Each
rep runs libbpf's harness (``-n 1``) and then pybpf's pair of loops, so both see the
same machine load.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess

ANCHOR_TARGETS = ["build/systrace.bpf.o", "build/systrace_bench"]

SECONDS = 1.0
REPS = 15       # the added cost is ~45-85 ns on a ~100 ns syscall: single reps swing by 50 %
LOOP_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static double now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2.0, t0, t1, end;
	unsigned long long iters = 0;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
	t0 = now_ns();
	end = t0 + secs * 1e9;
	do {
		for (int i = 0; i < 256; i++)
			syscall(SYS_getpid);
		iters += 256;
		t1 = now_ns();
	} while (t1 < end);
	printf("%.6f %llu\n", (t1 - t0) / iters, iters);
	return 0;
}
"""


def _loop_binary(ctx):
    exe = ctx.work / "getpid_loop"
    if not exe.exists():
        src = ctx.work / "getpid_loop.c"
        src.write_text(LOOP_C)
        cc = shutil.which("gcc") or shutil.which("cc")
        subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def _loop(exe, seconds: float = SECONDS) -> tuple:
    """(ns per getpid, calls) of one run of the loop."""
    out = subprocess.run([str(exe), str(seconds)], capture_output=True, text=True, check=True)
    ns, iters = out.stdout.split()
    return float(ns), int(iters)


def run(ctx) -> None:
    import pybpf
    from pybpf.link.tracepoint import attach_tracepoint

    exe = _loop_binary(ctx)
    reps = max(REPS, ctx.reps)  # cheap (~5 s per rep) and noisy: the median of many
    coll = pybpf.load(ctx.anchors / "build" / "systrace.bpf.o")
    prog, counts = coll.programs["count_enter"], coll.maps["counts"]
    ours_none, ours_count, ours_added, lib_added, lib_none, lib_count = [], [], [], [], [], []
    key = f"getpid loop {SECONDS:.0f}s"
    try:
        for r in range(reps):
            lib = ctx.libbpf("build/systrace_bench", "-n", "1", "-d", str(SECONDS), "-rep", str(r))
            lib_added.append(lib[f"systrace:{key}, count: added vs none (per-rep diff)"])
            lib_none.append(lib[f"systrace:{key}, none: time per syscall"])
            lib_count.append(lib[f"systrace:{key}, count: time per syscall"])
            ns = {}
            for variant in (("none", "count") if r % 2 == 0 else ("count", "none")):
                if variant == "none":
                    ns["none"], _ = _loop(exe)
                    continue
                before = counts.lookup_sum(0)
                with attach_tracepoint(prog, "raw_syscalls", "sys_enter"):
                    ns["count"], iters = _loop(exe)
                if counts.lookup_sum(0) - before < iters:
                    raise SystemExit("systrace: count_enter did not see every getpid call")
            ours_none.append(ns["none"])
            ours_count.append(ns["count"])
            ours_added.append(ns["count"] - ns["none"])
    finally:
        coll.close()
    med = statistics.median
    ctx.row(f"{key}, nothing attached: time per syscall", "ns/syscall", med(ours_none), med(lib_none))
    ctx.row(f"{key}, count_enter attached: time per syscall", "ns/syscall", med(ours_count),
            med(lib_count))
    ctx.row(f"{key}, count_enter: added cost per syscall (per-rep diff)", "ns/syscall",
            med(ours_added), med(lib_added))
