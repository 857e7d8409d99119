"""block: request latency histogram, requests and bytes by device and operation
(programs/block.bpf.c).  ``devices`` restricts to named devices (e.g. loop0)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Tuple

from ..metrics import HIST_SLOTS, Metric, log2_histogram
from ..names import device_name, device_number, kernel_enum
from .base import Collector, Variant, dump_summed

__all__ = ["BlockCollector"]


def op_name(op: int) -> str:
    names = kernel_enum("req_op", "REQ_OP_")
    return names.get(op, f"op_{op}").lower()


class BlockCollector(Collector):
    name = "block"
    object_name = "block.bpf.o"
    help = "block I/O latency, requests and bytes by device and operation"
    variants = {
        "tp_btf": Variant("tp_btf", ("btf_issue", "btf_complete")),
        "raw_tp": Variant("raw_tp", ("raw_issue", "raw_complete")),
    }
    pin_maps = ("io_latency", "io_stats")

    def configure(self, spec: Any, variant: Variant) -> None:
        super().configure(spec, variant)
        self.set_var(spec, "filter_devices", int(bool(self.cfg.get("devices"))))
        self.size_map(spec, "inflight", self.env.cfg["performance"]["max_tracked"])

    def after_load(self, coll: Any) -> None:
        for name in self.cfg.get("devices") or ():
            dev = device_number(name)
            if dev is None:
                raise ValueError(f"no block device named {name!r} (/sys/class/block/{name})")
            coll.maps["dev_filter"][dev] = 1

    def read(self, coll: Any) -> List[Metric]:
        reqs = Metric("counter", "block_io_requests", "Block I/O requests completed.",
                      ("device", "operation"))
        byts = Metric("counter", "block_io_bytes", "Bytes of completed block I/O requests.",
                      ("device", "operation"))
        for key, st in dump_summed(coll.maps["io_stats"]).items():
            labels = (device_name(key.dev), op_name(key.op))
            reqs.add(labels, float(st["requests"]))
            byts.add(labels, float(st["bytes"]))
        slots: Dict[Tuple[int, int], List[int]] = defaultdict(lambda: [0] * HIST_SLOTS)
        for key, n in dump_summed(coll.maps["io_latency"]).items():
            if key.bucket < HIST_SLOTS:
                slots[(key.dev, key.op)][key.bucket] += n
        lat = Metric("histogram", "block_io_latency_seconds", "Block I/O request latency, issue "
                     "to completion.", ("device", "operation"))
        for (dev, op), s in slots.items():
            lat.samples[(device_name(dev), op_name(op))] = log2_histogram(s, k_min=10, k_max=34)
        return [reqs, byts, lat]
