"""drops: packets the kernel dropped, by drop reason and protocol (programs/drops.bpf.c).

Reason names come from the running kernel's BTF (``enum skb_drop_reason``):
the numbers drift between kernel versions, so no static table.
"""

from __future__ import annotations

import socket
from typing import Any, List

from ..metrics import Metric
from ..names import kernel_enum
from .base import Collector, Variant, dump_summed, read_percpu_array

__all__ = ["DropsCollector", "ip_protocol_name"]

_IPPROTO = {getattr(socket, n): n[8:].lower() for n in dir(socket)
            if n.startswith("IPPROTO_") and n not in ("IPPROTO_IP", "IPPROTO_MAX", "IPPROTO_RAW")
            and isinstance(getattr(socket, n), int)}


def ip_protocol_name(proto: int) -> str:
    if proto == 0:
        return "none"
    return _IPPROTO.get(proto, f"ip_{proto}")


class DropsCollector(Collector):
    name = "drops"
    object_name = "drops.bpf.o"
    help = "packet drops by kernel drop reason; UDP receive buffer overflows"
    variants = {
        "tp_btf": Variant("tp_btf", ("btf_kfree_skb", "btf_udp_fail"), optional=("btf_udp_fail",)),
        "raw_tp": Variant("raw_tp", ("raw_kfree_skb", "raw_udp_fail"), optional=("raw_udp_fail",)),
    }
    pin_maps = ("drop_counts", "udp_counts")

    def configure(self, spec: Any, variant: Variant) -> None:
        super().configure(spec, variant)
        names = kernel_enum("skb_drop_reason", "SKB_DROP_REASON_")
        consumed = next((v for v, n in names.items() if n == "SKB_CONSUMED"), 0xFFFFFFFF)
        self.set_var(spec, "reason_consumed", consumed)

    def read(self, coll: Any) -> List[Metric]:
        names = kernel_enum("skb_drop_reason", "SKB_DROP_REASON_")
        drops = Metric("counter", "skb_drops", "Packets dropped by the kernel, by drop reason "
                       "(enum skb_drop_reason) and IP protocol.", ("reason", "protocol"))
        for key, n in dump_summed(coll.maps["drop_counts"]).items():
            drops.add((names.get(key.reason, f"reason_{key.reason}"), ip_protocol_name(key.proto)),
                      float(n))
        udp = Metric("counter", "udp_receive_buffer_errors", "UDP datagrams dropped because the "
                     "socket receive queue was full.", ())
        udp.samples[()] = float(read_percpu_array(coll.maps["udp_counts"])[0])
        return [drops, udp]
