"""``python -m pybpf_agent``: until the exporter lands, a live demo of the syscall collector.

Loads the shipped ``syscalls.bpf.o``, attaches it to the ``sys_enter`` raw
tracepoint and prints the busiest system calls every ``--interval`` seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from importlib import resources
from typing import List, Optional

import pybpf


def _object_path(name: str) -> str:
    return str(resources.files("pybpf_agent") / "bpf" / name)


def _syscall_names() -> dict:
    """Syscall number -> name from the kernel's unistd header, when the headers are installed."""
    names = {}
    for path in (f"/usr/include/{os.uname().machine}-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h"):
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_"):
                        names[int(parts[2])] = parts[1][5:]
            break
        except (OSError, ValueError):
            continue
    return names


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="pybpf-agent", description=__doc__)
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between reports")
    ap.add_argument("--count", type=int, default=0, help="reports to print (0 = until interrupted)")
    ap.add_argument("--top", type=int, default=10, help="syscalls per report")
    ap.add_argument("--pid", type=int, default=0, help="count only this process (tgid)")
    args = ap.parse_args(argv)

    spec = pybpf.load_collection_spec(_object_path("syscalls.bpf.o"))
    spec.variables["filter_tgid"].value = args.pid
    names = _syscall_names()
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with pybpf.load(spec) as coll:
        coll.attach_all()
        counts = coll.maps["syscall_counts"]
        print(f"pybpf-agent demo: counting syscalls ({'pid ' + str(args.pid) if args.pid else 'all processes'}); "
              "Ctrl-C to stop", flush=True)
        prev: dict = {}
        n = 0
        while not stop and (args.count == 0 or n < args.count):
            time.sleep(args.interval)
            now = {k: sum(v) for k, v in counts.items() if sum(v)}
            delta = sorted(((now[k] - prev.get(k, 0), k) for k in now), reverse=True)[:args.top]
            prev = now
            n += 1
            print(f"--- {time.strftime('%H:%M:%S')} top syscalls in the last {args.interval:g}s")
            for d, k in delta:
                if d:
                    print(f"{names.get(k, str(k)):>20} {d:>10}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
