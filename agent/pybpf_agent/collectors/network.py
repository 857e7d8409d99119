"""network: packets and bytes by interface, direction and protocol (programs/network.bpf.c).

With ``interfaces`` configured the chain is tcx (bpf_link, 6.6+) -> tc
(clsact + cls_bpf over netlink) -> tracepoints filtered to those interfaces;
with none, the tracepoint variants count every interface of the agent's
network namespace (tcx/tc are skipped: they attach per interface).
"""

from __future__ import annotations

import os
from typing import Any, List

from ..metrics import Metric
from ..names import ifname
from .base import Collector, Variant, dump_summed

__all__ = ["NetworkCollector"]

PROTOCOLS = {0: "other", 1: "tcp", 2: "udp", 3: "icmp", 4: "icmpv6", 5: "ipv4_other",
             6: "ipv6_other", 7: "arp"}
DIRECTIONS = {0: "ingress", 1: "egress"}


def _attach_tc(via: str):
    def attach(collector: "NetworkCollector", coll: Any, programs: List[str], target: str) -> List[Any]:
        import importlib
        try:
            tc = importlib.import_module("pybpf.link.tc")
        except ImportError as e:
            raise RuntimeError(f"pybpf.link.tc is not available ({e})") from None
        ifaces = [target] if target else list(collector.cfg.get("interfaces") or ())
        links: List[Any] = []
        try:
            for iface in ifaces:
                links.append(tc.attach_tcx(coll.programs["tc_ingress"], iface, "ingress", via=via))
                links.append(tc.attach_tcx(coll.programs["tc_egress"], iface, "egress", via=via))
        except BaseException:
            for l in links:
                l.close()
            raise
        return links
    return attach


class NetworkCollector(Collector):
    name = "network"
    object_name = "network.bpf.o"
    help = "packets and bytes by interface, direction and protocol"
    variants = {
        "tcx": Variant("tcx", ("tc_ingress", "tc_egress"), attach=_attach_tc("link"), needs="interfaces"),
        "tc": Variant("tc", ("tc_ingress", "tc_egress"), attach=_attach_tc("netlink"), needs="interfaces"),
        "tp_btf": Variant("tp_btf", ("btf_rx", "btf_tx")),
        "raw_tp": Variant("raw_tp", ("raw_rx", "raw_tx")),
    }
    pin_maps = ("net_stats",)

    def applicable(self, variant: Variant, target: str) -> bool:
        return variant.needs != "interfaces" or bool(target or self.cfg.get("interfaces"))

    def configure(self, spec: Any, variant: Variant) -> None:
        super().configure(spec, variant)
        self.set_var(spec, "netns_ino", os.stat("/proc/self/ns/net").st_ino)
        self.set_var(spec, "filter_ifindex", int(bool(self.cfg.get("interfaces"))))

    def after_load(self, coll: Any) -> None:
        import socket
        for name in self.cfg.get("interfaces") or ():
            try:
                idx = socket.if_nametoindex(name)
            except OSError:
                raise ValueError(f"no network interface named {name!r}") from None
            coll.maps["ifindex_filter"][idx] = 1

    def read(self, coll: Any) -> List[Metric]:
        labels = ("device", "direction", "protocol")
        pk = Metric("counter", "network_packets", "Packets seen, by interface, direction and "
                    "protocol.", labels)
        by = Metric("counter", "network_bytes", "Bytes seen (link layer), by interface, direction "
                    "and protocol.", labels)
        for key, st in dump_summed(coll.maps["net_stats"]).items():
            lv = (ifname(key.ifindex), DIRECTIONS.get(key.direction, str(key.direction)),
                  PROTOCOLS.get(key.proto, "other"))
            pk.add(lv, float(st["packets"]))
            by.add(lv, float(st["bytes"]))
        return [pk, by]
