"""memory: OOM kills and user-space page faults (programs/memory.bpf.c)."""

from __future__ import annotations

from typing import Any, List

from ..metrics import Metric
from .base import Collector, Variant, read_percpu_array

__all__ = ["MemoryCollector"]


class MemoryCollector(Collector):
    name = "memory"
    object_name = "memory.bpf.o"
    help = "OOM kills, page faults"
    variants = {
        "tp_btf": Variant("tp_btf", ("btf_oom", "btf_fault"), optional=("btf_fault",)),
        "raw_tp": Variant("raw_tp", ("raw_oom", "raw_fault"), optional=("raw_fault",)),
    }
    pin_maps = ("memory_counts",)

    def read(self, coll: Any) -> List[Metric]:
        vals = read_percpu_array(coll.maps["memory_counts"])
        oom = Metric("counter", "oom_kills", "Processes chosen as OOM-killer victims.", ())
        oom.samples[()] = float(vals[0])
        out = [oom]
        if any(p.startswith(("btf_fault", "raw_fault")) for p in coll.programs):
            faults = Metric("counter", "page_faults", "User-space page faults.", ())
            faults.samples[()] = float(vals[1])
            out.append(faults)
        return out
