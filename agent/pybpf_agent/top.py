"""``pybpf-agent top``: a live terminal view of the busiest syscalls and processes and of
latency histograms (log2 bars, like bcc's runqlat/biolatency), refreshed in place.

It runs the syscalls, sched and block collectors in this process (no HTTP) and
prints per-interval deltas.  Plain ANSI escapes (cursor home + clear), no curses.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .metrics import Histogram, Metric

__all__ = ["main", "log2_bars", "render"]

CLEAR = "\x1b[H\x1b[2J"


def _fmt_seconds(s: float) -> str:
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if s >= f:
            v = s / f
            return f"{v:.0f}{unit}" if v >= 10 or v.is_integer() else f"{v:.1f}{unit}"
    return "0"


def log2_bars(h: Histogram, width: int = 40, title: str = "") -> List[str]:
    """bcc-style rows ``     lo -> hi  : count |*****    |`` from a cumulative histogram."""
    rows: List[Tuple[float, float, float]] = []
    prev_le, prev_c = 0.0, 0.0
    for le, c in h.buckets:
        rows.append((prev_le, le, c - prev_c))
        prev_le, prev_c = le, c
    rows.append((prev_le, float("inf"), h.count - prev_c))
    while rows and rows[-1][2] == 0:
        rows.pop()
    first = next((i for i, r in enumerate(rows) if r[2]), len(rows))
    rows = rows[first:]
    peak = max((r[2] for r in rows), default=0)
    out = [f"{title}  (count {h.count:.0f}, mean {_fmt_seconds(h.sum / h.count) if h.count else '-'})"]
    out.append(f"{'range':>22} : {'count':<8} distribution")
    for lo, hi, n in rows:
        bar = "*" * (int(round(width * n / peak)) if peak else 0)
        rng = f"{_fmt_seconds(lo)} -> {_fmt_seconds(hi) if hi != float('inf') else 'inf'}"
        out.append(f"{rng:>22} : {n:<8.0f} |{bar:<{width}}|")
    return out


def _delta(now: Dict[Any, float], prev: Dict[Any, float]) -> Dict[Any, float]:
    return {k: v - prev.get(k, 0.0) for k, v in now.items()}


def _hist_delta(now: Histogram, prev: Optional[Histogram]) -> Histogram:
    if prev is None:
        return now
    p = dict(prev.buckets)
    return Histogram([(le, c - p.get(le, 0.0)) for le, c in now.buckets], now.sum - prev.sum,
                     now.count - prev.count)


def render(now: Dict[str, Metric], prev: Dict[str, Metric], interval: float, top: int,
           width: int = 100, color: bool = True) -> str:
    """One screen from two snapshots (name -> Metric) ``interval`` seconds apart."""
    BOLD, RESET = ("\x1b[1m", "\x1b[0m") if color else ("", "")
    lines = [f"{BOLD}pybpf-agent top{RESET}  {time.strftime('%H:%M:%S')}  interval {interval:g}s"]

    def samples(name: str, snap: Dict[str, Metric]) -> Dict[Any, Any]:
        m = snap.get(name)
        return dict(m.samples) if m is not None else {}

    sc = _delta(samples("syscalls", now), samples("syscalls", prev))
    busiest = sorted(((v, k[0]) for k, v in sc.items() if v > 0), reverse=True)[:top]
    total = sum(v for v in sc.values() if v > 0)
    lines += ["", f"{BOLD}{'SYSCALL':<24}{'CALLS/s':>12}{'%':>8}{RESET}"]
    for v, name in busiest:
        lines.append(f"{name:<24}{v / interval:>12,.0f}{100 * v / total if total else 0:>7.1f}%")
    pc = _delta(samples("process_syscalls", now), samples("process_syscalls", prev))
    procs = sorted(((v, k) for k, v in pc.items() if v > 0 and k[0] != "other"), reverse=True)[:top]
    lines += ["", f"{BOLD}{'PID':>8}  {'COMM':<18}{'SYSCALLS/s':>12}{RESET}"]
    for v, (comm, pid) in procs:
        lines.append(f"{pid:>8}  {comm:<18}{v / interval:>12,.0f}")
    for name, title in (("sched_runqueue_latency_seconds", "run-queue latency"),
                        ("block_io_latency_seconds", "block I/O latency")):
        m = now.get(name)
        if m is None:
            continue
        pm = prev.get(name)
        for labels, h in sorted(m.samples.items()):
            assert isinstance(h, Histogram)
            d = _hist_delta(h, pm.samples.get(labels) if pm is not None else None)   # type: ignore[arg-type]
            if d.count <= 0:
                continue
            label = " ".join(f"{k}={v}" for k, v in zip(m.labels, labels))
            lines += [""] + log2_bars(d, width=min(40, max(10, width - 40)),
                                      title=f"{BOLD}{title}{RESET} {label}".rstrip())
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="pybpf-agent top", description=__doc__.split("\n\n")[0])
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    ap.add_argument("--count", type=int, default=0, help="refreshes before exiting (0 = until ^C)")
    ap.add_argument("--top", type=int, default=10, help="rows per table")
    ap.add_argument("--scope-cgroup", metavar="PATH")
    ap.add_argument("--scope-pid", type=int)
    ap.add_argument("--no-clear", action="store_true", help="append screens instead of redrawing")
    args = ap.parse_args(argv)
    from .collectors import COLLECTORS
    from .collectors.base import CollectorError, Env
    from .config import load_config
    from .schema import ConfigError
    overrides: Dict[str, Any] = {"collectors.syscalls.top_processes": max(args.top, 1)}
    if args.scope_cgroup:
        overrides["scope.cgroup"] = args.scope_cgroup
    if args.scope_pid:
        overrides["scope.pid"] = args.scope_pid
    try:
        cfg = load_config(overrides=overrides)
    except ConfigError as e:
        print(f"pybpf-agent top: config error: {e}", file=sys.stderr)
        return 2
    env = Env(cfg)
    running = []
    for name in ("syscalls", "sched", "block"):
        c = COLLECTORS[name](cfg["collectors"][name], env)
        try:
            c.start()
            running.append(c)
        except CollectorError as e:
            print(f"pybpf-agent top: {e}", file=sys.stderr)
    if not running:
        return 1
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    def snapshot() -> Dict[str, Metric]:
        out: Dict[str, Metric] = {}
        for c in running:
            c._cache = None
            for m in c.metrics():
                out[m.name] = m
        return out
    try:
        prev = snapshot()
        n = 0
        while not stop and (args.count == 0 or n < args.count):
            time.sleep(args.interval)
            now = snapshot()
            width = shutil.get_terminal_size((100, 40)).columns
            tty = sys.stdout.isatty()
            screen = render(now, prev, args.interval, args.top, width, color=tty)
            sys.stdout.write(CLEAR + screen if tty and not args.no_clear else screen)
            sys.stdout.flush()
            prev = now
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        for c in running:
            c.stop()
    return 0
