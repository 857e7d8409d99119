"""syscalls: calls by syscall name, failures by (syscall, errno), calls of the busiest processes.

BPF side: programs/syscalls.bpf.c (per-CPU array by number; per-CPU hash by
(number, errno); LRU per-CPU hash by tgid).  Names come from the generated
per-architecture table (:mod:`pybpf_agent.names`).
"""

from __future__ import annotations

import os
from typing import Any, List

import pybpf

from ..metrics import Metric, TopN
from ..names import errno_name, syscall_name
from .base import Collector, Variant, dump_summed, read_percpu_array

__all__ = ["SyscallsCollector"]


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class SyscallsCollector(Collector):
    name = "syscalls"
    object_name = "syscalls.bpf.o"
    help = "system calls by name, failures by errno, busiest processes"
    variants = {
        "raw_tp": Variant("raw_tp", ("count_sys_enter", "raw_sys_exit")),
        "tp_btf": Variant("tp_btf", ("btf_sys_enter", "btf_sys_exit")),
        "tracepoint": Variant("tracepoint", ("tp_sys_enter", "tp_sys_exit")),
    }
    pin_maps = ("syscall_counts", "syscall_errors")

    def __init__(self, cfg: dict, env: Any):
        super().__init__(cfg, env)
        self._top = TopN(int(cfg.get("top_processes", 10)))

    def configure(self, spec: Any, variant: Variant) -> None:
        super().configure(spec, variant)
        by_process = bool(self.cfg.get("by_process", True)) and int(self.cfg.get("top_processes", 10)) > 0
        self.set_var(spec, "track_processes", int(by_process))
        self.set_var(spec, "track_errors", int(bool(self.cfg.get("errors", True))))
        self.size_map(spec, "process_counts", self.env.cfg["performance"]["max_tracked"])

    def read(self, coll: Any) -> List[Metric]:
        calls = Metric("counter", "syscalls", "System calls entered, by syscall name.", ("syscall",))
        for nr, n in enumerate(read_percpu_array(coll.maps["syscall_counts"])):
            if n:
                calls.samples[(syscall_name(nr),)] = float(n)
        out = [calls]
        if self.cfg.get("errors", True):
            errs = Metric("counter", "syscall_errors", "System calls that returned an error, by "
                          "syscall name and errno.", ("syscall", "errno"))
            for key, n in dump_summed(coll.maps["syscall_errors"]).items():
                errs.add((syscall_name(key.nr), errno_name(key.err)), float(n))
            out.append(errs)
        if self.cfg.get("by_process", True) and self._top.n > 0:
            out.append(self._processes(coll.maps["process_counts"]))
        return out

    def _processes(self, m: Any) -> Metric:
        counts = dump_summed(m)
        current, gone = {}, {}
        for tgid, n in counts.items():
            if not os.path.exists(f"/proc/{tgid}"):
                gone[int(tgid)] = float(n)
                try:
                    m.delete(tgid)   # exited: its series goes away (its count stays in "other")
                except pybpf.KeyNotFoundError:
                    pass             # already gone (LRU eviction or a concurrent delete)
                continue
            current[int(tgid)] = float(n)
        series, other = self._top.update(current, gone)
        metric = Metric("counter", "process_syscalls", "System calls of the busiest processes "
                        "(top-N by recent rate, sticky); the rest are summed as comm=\"other\".",
                        ("comm", "pid"))
        for pid, n in series.items():
            metric.samples[(_comm(pid) or "?", str(pid))] = n
        metric.samples[("other", "")] = other
        return metric
