"""Pure pieces: log2 histograms, top-N bookkeeping, carry-over, label decoders, exposition."""

from __future__ import annotations

import pytest

from pybpf_agent.decoders import build_chain
from pybpf_agent.exporter import Carry, family
from pybpf_agent.metrics import HIST_OVERFLOW, HIST_SLOTS, HIST_SUM, Histogram, Metric, TopN, log2_histogram


def slots(**at):
    s = [0] * HIST_SLOTS
    for k, v in at.items():
        s[int(k[1:]) if k.startswith("b") else {"over": HIST_OVERFLOW, "sum": HIST_SUM}[k]] = v
    return s


def test_log2_histogram_buckets_are_ceil_log2():
    # BPF put 3 values in bucket 10 (512 < v <= 1024 ns), 1 in bucket 12, 2 above the range
    h = log2_histogram(slots(b10=3, b12=1, over=2, sum=9000), unit=1e-9, k_min=10, k_max=12)
    assert h.buckets == [(1024e-9, 3.0), (2048e-9, 3.0), (4096e-9, 4.0)]
    assert h.count == 6 and h.sum == pytest.approx(9e-6)


def test_log2_histogram_lowest_bucket_holds_everything_below():
    h = log2_histogram(slots(b0=1, b3=2, b10=1), k_min=10, k_max=11)
    assert h.buckets[0] == (1024e-9, 4.0)


def test_topn_counters_never_go_backwards():
    t = TopN(1)
    s, other = t.update({"a": 10, "b": 5})
    assert list(s) == ["a"] and s["a"] == 10 and other == 5
    s, other = t.update({"a": 12, "b": 50})          # b got busier, but selection is sticky
    assert s == {"a": 12} and other == 50
    s, other = t.update({"b": 60}, gone={"a": 13})    # a exits: its series goes, slot frees
    assert s == {"b": 10} and other == 50             # b's series starts at 0, other keeps its 50
    s, other = t.update({"b": 61, "c": 1})
    assert s == {"b": 11} and other == 51
    s, other = t.update({"b": 61}, gone={"c": 4})     # an unselected entity's count stays in other
    assert other == 54


def test_carry_keeps_counters_across_instances():
    c = Carry()
    c.absorb([Metric("counter", "x", "", ("k",), {("a",): 5.0}),
              Metric("histogram", "h", "", (), {(): Histogram([(1.0, 2.0)], 3.0, 2.0)})])
    out = {m.name: m for m in c.apply([Metric("counter", "x", "", ("k",), {("a",): 1.0, ("b",): 2.0}),
                                       Metric("histogram", "h", "", (), {(): Histogram([(1.0, 1.0)], 1.0, 1.0)})])}
    assert out["x"].samples == {("a",): 6.0, ("b",): 2.0}
    h = out["h"].samples[()]
    assert h.buckets == [(1.0, 3.0)] and h.count == 3.0 and h.sum == 4.0


def test_family_exposition():
    from prometheus_client import CollectorRegistry, generate_latest

    class One:
        def collect(self):
            yield family("pybpf", Metric("counter", "things", "Things.", ("kind",), {("a",): 3.0}))
            yield family("pybpf", Metric("histogram", "lat_seconds", "Lat.", (),
                                         {(): Histogram([(0.5, 1.0), (1.0, 2.0)], 1.2, 3.0)}))
    reg = CollectorRegistry()
    reg.register(One())
    text = generate_latest(reg).decode()
    assert 'pybpf_things_total{kind="a"} 3.0' in text
    assert 'pybpf_lat_seconds_bucket{le="0.5"} 1.0' in text
    assert 'pybpf_lat_seconds_bucket{le="+Inf"} 3.0' in text
    assert "pybpf_lat_seconds_count 3.0" in text and "pybpf_lat_seconds_sum 1.2" in text


@pytest.mark.parametrize("decoders, raw, want", [
    ([{"name": "uint"}], (7).to_bytes(4, "little"), "7"),
    ([{"name": "errno"}], (2).to_bytes(4, "little"), "ENOENT"),
    ([{"name": "syscall"}], (39).to_bytes(4, "little"), "getpid"),
    ([{"name": "string"}], b"bash\0\0\0\0", "bash"),
    ([{"name": "inet_ip"}], bytes([10, 0, 0, 1]), "10.0.0.1"),
    ([{"name": "hex"}], b"\x01\xab", "01ab"),
    ([{"name": "uint"}, {"name": "static_map", "static_map": {"1": "one"}}], b"\x01\0\0\0", "one"),
    ([{"name": "uint"}, {"name": "static_map", "static_map": {"1": "one"}}], b"\x02\0\0\0", "unknown:2"),
    ([{"name": "string"}, {"name": "regexp", "regexps": ["^py(thon)"]}], b"python3\0", "thon"),
    ([{"name": "string"}, {"name": "regexp", "regexps": ["^bash$"]}], b"zsh\0", None),
])
def test_decoders(decoders, raw, want):
    import os
    if decoders[0]["name"] == "syscall" and os.uname().machine != "x86_64":
        pytest.skip("x86_64 numbers")
    assert build_chain(decoders, "t")(raw) == want


def test_fast_text_exposition_matches_prometheus_client():
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from pybpf_agent.exposition import render
    metrics = [
        Metric("counter", "calls", "Calls.", ("syscall", "errno"),
               {("openat", "ENOENT"): 100.0, ('we"ird\\', "x\ny"): 1.5}),
        Metric("gauge", "agent_up", "Up.", (), {(): 1.0}),
        Metric("histogram", "lat_seconds", "Latency.", ("device",),
               {("vda",): Histogram([(1.024e-06, 1.0), (2.048e-06, 3.0)], 4.5e-06, 4.0)}),
    ]

    class C:
        def collect(self):
            for m in metrics:
                yield family("pybpf", m)
    reg = CollectorRegistry()
    reg.register(C())

    def parsed(text):
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                      for f in text_string_to_metric_families(text) for s in f.samples)
    assert parsed(render("pybpf", metrics).decode()) == parsed(generate_latest(reg).decode())
