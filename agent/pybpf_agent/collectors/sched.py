"""sched: run-queue latency histogram and context switches (programs/sched.bpf.c)."""

from __future__ import annotations

from typing import Any, List

from ..metrics import HIST_SLOTS, Metric, log2_histogram
from .base import Collector, Variant, read_percpu_array

__all__ = ["SchedCollector"]


class SchedCollector(Collector):
    name = "sched"
    object_name = "sched.bpf.o"
    help = "run-queue latency (wakeup to running)"
    variants = {
        "tp_btf": Variant("tp_btf", ("btf_switch", "btf_wakeup", "btf_wakeup_new")),
        "raw_tp": Variant("raw_tp", ("raw_switch", "raw_wakeup", "raw_wakeup_new")),
    }
    pin_maps = ("runq_latency",)

    def configure(self, spec: Any, variant: Variant) -> None:
        super().configure(spec, variant)
        self.size_map(spec, "runnable_since", self.env.cfg["performance"]["max_tracked"])

    def read(self, coll: Any) -> List[Metric]:
        slots = read_percpu_array(coll.maps["runq_latency"])
        hist = Metric("histogram", "sched_runqueue_latency_seconds",
                      "Time tasks spent runnable before running on a CPU (wakeup or preemption "
                      "to switch-in).", ())
        hist.samples[()] = log2_histogram(slots[:HIST_SLOTS], k_min=10, k_max=34)
        switches = Metric("counter", "sched_context_switches",
                          "Context switches into tasks that were waiting on a run queue.", ())
        switches.samples[()] = float(slots[HIST_SLOTS])
        return [hist, switches]
