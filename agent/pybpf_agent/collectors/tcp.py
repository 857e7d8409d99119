"""tcp: state transitions, connect latency, retransmits, resets (programs/tcp.bpf.c).

Scope is decided per socket, since most TCP events run in softirq context where
the current task is unrelated: a cgroup scope matches the socket's cgroup
(``sk_cgrp_data``; accepted sockets inherit their listener's); a pid scope
matches the sockets the process connect()s or listen()s on and those accepted
from its listeners (tracked in the ``scoped_socks`` map, sized by
``performance.max_tracked``).  Sockets opened before the agent started are not
in a pid scope.
"""

from __future__ import annotations

from typing import Any, List

from ..metrics import HIST_SLOTS, Metric, log2_histogram
from ..names import kernel_enum
from .base import Collector, Variant, read_percpu_array

__all__ = ["TCPCollector", "TCP_STATES"]

# TCP states are user-space ABI (include/net/tcp_states.h, /proc/net/tcp, inet_diag):
# stable numbers, not kernel-internal enums that drift.
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING", 12: "NEW_SYN_RECV", 13: "BOUND_INACTIVE"}
NSTATES = 16
SLOT_RETRANSMITS = NSTATES * NSTATES
SLOT_RESETS_RECEIVED = SLOT_RETRANSMITS + 1
SLOT_RESETS_SENT = SLOT_RESETS_RECEIVED + 1
SLOT_CONNECT_HIST = SLOT_RESETS_SENT + 128


def _state(n: int) -> str:
    return TCP_STATES.get(n, f"state_{n}")


class TCPCollector(Collector):
    name = "tcp"
    object_name = "tcp.bpf.o"
    help = "TCP state transitions, connect latency, retransmits, resets"
    variants = {
        "tp_btf": Variant("tp_btf", ("btf_set_state", "btf_retransmit", "btf_send_reset",
                                     "btf_receive_reset"),
                          optional=("btf_retransmit", "btf_send_reset", "btf_receive_reset")),
        "raw_tp": Variant("raw_tp", ("raw_set_state", "raw_retransmit", "raw_send_reset",
                                     "raw_receive_reset"),
                          optional=("raw_retransmit", "raw_send_reset", "raw_receive_reset")),
    }
    pin_maps = ("tcp_counts",)

    def configure(self, spec: Any, variant: Variant) -> None:
        super().configure(spec, variant)
        tracked = self.env.cfg["performance"]["max_tracked"]
        self.size_map(spec, "connect_start", tracked)
        self.size_map(spec, "scoped_socks", tracked)

    def read(self, coll: Any) -> List[Metric]:
        v = read_percpu_array(coll.maps["tcp_counts"])
        trans = Metric("counter", "tcp_state_transitions", "TCP socket state changes.",
                       ("old_state", "new_state"))
        for old in range(NSTATES):
            for new in range(NSTATES):
                n = v[old * NSTATES + new]
                if n:
                    trans.samples[(_state(old), _state(new))] = float(n)
        opened = Metric("counter", "tcp_connections_opened", "TCP connections established, "
                        "active (connect) or passive (accept).", ("direction",))
        opened.samples[("active",)] = float(v[2 * NSTATES + 1])    # SYN_SENT -> ESTABLISHED
        opened.samples[("passive",)] = float(v[3 * NSTATES + 1])   # SYN_RECV -> ESTABLISHED
        retr = Metric("counter", "tcp_retransmits", "TCP segments retransmitted.", ())
        retr.samples[()] = float(v[SLOT_RETRANSMITS])
        rrecv = Metric("counter", "tcp_resets_received", "TCP resets received.", ())
        rrecv.samples[()] = float(v[SLOT_RESETS_RECEIVED])
        reasons = kernel_enum("sk_rst_reason", "SK_RST_REASON_")
        rsent = Metric("counter", "tcp_resets_sent", "TCP resets sent, by kernel reason "
                       "(enum sk_rst_reason).", ("reason",))
        for r in range(128):
            n = v[SLOT_RESETS_SENT + r]
            if n:
                rsent.samples[(reasons.get(r, f"reason_{r}"),)] = float(n)
        lat = Metric("histogram", "tcp_connect_latency_seconds", "Time from connect() (SYN_SENT) "
                     "to ESTABLISHED.", ())
        lat.samples[()] = log2_histogram(v[SLOT_CONNECT_HIST:SLOT_CONNECT_HIST + HIST_SLOTS],
                                         k_min=10, k_max=34)
        return [trans, opened, retr, rrecv, rsent, lat]
