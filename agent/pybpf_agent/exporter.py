"""Prometheus side: a custom prometheus_client collector over the agent's collectors.

Maps are read at scrape time (``Collector.collect``), never on a timer.  On the
way out each :class:`~pybpf_agent.metrics.Metric` gets the namespace prefix,
is scaled by the collector's sampling rate (with ``sampled="true"``), gets the
values an earlier instance of the collector had counted added back (so a
restart or a SIGHUP reload never makes a counter go backwards), and is cut
to the collector's series budget.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from .metrics import Histogram, Metric

__all__ = ["AgentCollector", "family", "Carry"]

log = logging.getLogger("pybpf_agent")


class Carry:
    """Values counted by earlier instances of a collector, keyed by (metric, labels).

    When a collector instance stops (runtime failure, reload), its last read is
    added here; later reads add it back.  Counters and histograms only: gauges
    are current values.
    """

    def __init__(self) -> None:
        self.values: Dict[Tuple[str, Tuple[str, ...]], Any] = {}

    def absorb(self, metrics: Iterable[Metric]) -> None:
        for m in metrics:
            if m.kind == "gauge":
                continue
            for labels, v in m.samples.items():
                key = (m.name, labels)
                prev = self.values.get(key)
                if isinstance(v, Histogram):
                    self.values[key] = v if prev is None else v.plus(prev)
                else:
                    self.values[key] = float(v) + (prev or 0.0)

    def apply(self, metrics: List[Metric]) -> List[Metric]:
        if not self.values:
            return metrics
        out = []
        seen = set()
        for m in metrics:
            if m.kind == "gauge":
                out.append(m)
                continue
            samples = dict(m.samples)
            for labels, v in samples.items():
                prev = self.values.get((m.name, labels))
                if prev is not None:
                    seen.add((m.name, labels))
                    samples[labels] = v.plus(prev) if isinstance(v, Histogram) else v + prev
            out.append(Metric(m.kind, m.name, m.help, m.labels, samples, scalable=m.scalable))
        # series the new instance has not produced (yet) keep their carried value
        for (name, labels), prev in self.values.items():
            if (name, labels) in seen:
                continue
            target = next((m for m in out if m.name == name), None)
            if target is not None and labels not in target.samples:
                target.samples[labels] = prev
        return out


def family(namespace: str, m: Metric, extra: Optional[Dict[str, str]] = None) -> Any:
    """A prometheus_client metric family for ``m`` (``extra`` labels appended)."""
    from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                        HistogramMetricFamily)
    name = f"{namespace}_{m.name}" if namespace else m.name
    extra = extra or {}
    labels = list(m.labels) + list(extra)
    tail = list(extra.values())
    if m.kind == "counter":
        fam = CounterMetricFamily(name, m.help, labels=labels)
        for lv, v in m.samples.items():
            fam.add_metric(list(lv) + tail, float(v))   # type: ignore[arg-type]
    elif m.kind == "gauge":
        fam = GaugeMetricFamily(name, m.help, labels=labels)
        for lv, v in m.samples.items():
            fam.add_metric(list(lv) + tail, float(v))   # type: ignore[arg-type]
    else:
        fam = HistogramMetricFamily(name, m.help, labels=labels)
        for lv, h in m.samples.items():
            assert isinstance(h, Histogram)
            buckets = [(_le(le), c) for le, c in h.buckets] + [("+Inf", h.count)]
            fam.add_metric(list(lv) + tail, buckets, h.sum)
    return fam


def _le(v: float) -> str:
    from prometheus_client.utils import floatToGoString
    return floatToGoString(v)


class AgentCollector:
    """The registry's single custom collector: every BPF collector, plus self-metrics."""

    def __init__(self, agent: Any):
        self.agent = agent
        self.lock = threading.Lock()
        self.series_dropped: Dict[str, int] = {}
        self.scrape_seconds: Dict[str, float] = {}
        self.scrape_errors: Dict[str, int] = {}

    def describe(self) -> List[Any]:
        return []   # no map reads at registration time

    def collect(self) -> Iterator[Any]:
        with self.lock:   # concurrent scrapes would race on TopN state and map deletions
            yield from self._collect()

    def collector_metrics(self, c: Any) -> List[Metric]:
        """A collector's metrics with carry, sampling and budget applied (no prefix)."""
        t0 = time.perf_counter()
        try:
            metrics = c.metrics()
        except Exception as e:
            self.scrape_errors[c.name] = self.scrape_errors.get(c.name, 0) + 1
            self.agent.collector_failed(c, e)
            metrics = []
        self.scrape_seconds[c.name] = time.perf_counter() - t0
        carry = self.agent.carry.get(c.name)
        if carry is not None:
            metrics = carry.apply(metrics)
        rate = int(getattr(c, "sampling", 1) or 1)
        budget = int(c.cfg.get("series_budget", 5000) or 5000)
        out = []
        for m in metrics:
            if rate > 1 and m.scalable and m.kind != "gauge":
                samples = {k: (v.scaled(rate) if isinstance(v, Histogram) else v * rate)
                           for k, v in m.samples.items()}
                m = Metric(m.kind, m.name, m.help, m.labels + ("sampled",),
                           {k + ("true",): v for k, v in samples.items()}, scalable=False)
            if len(m.samples) > budget:
                keep = sorted(m.samples.items(), key=lambda kv: _weight(kv[1]), reverse=True)[:budget]
                self.series_dropped[m.name] = self.series_dropped.get(m.name, 0) + \
                    len(m.samples) - budget
                m = Metric(m.kind, m.name, m.help, m.labels, dict(keep), scalable=m.scalable)
            out.append(m)
        return out

    def render_text(self) -> bytes:
        """The whole scrape in the text format, without building MetricFamily objects."""
        from .exposition import render
        with self.lock:
            metrics: List[Metric] = []
            for c in self.agent.active_collectors():
                metrics.extend(self.collector_metrics(c))
            metrics.extend(self.agent.self_metrics(self))
            return render(self.agent.namespace, metrics)

    def _collect(self) -> Iterator[Any]:
        ns = self.agent.namespace
        for c in self.agent.active_collectors():
            for m in self.collector_metrics(c):
                yield family(ns, m)
        for m in self.agent.self_metrics(self):
            yield family(ns, m)


def _weight(v: Any) -> float:
    return v.count if isinstance(v, Histogram) else float(v)
