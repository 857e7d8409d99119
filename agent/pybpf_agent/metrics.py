"""The agent's metric model, between BPF maps and Prometheus.

Collectors turn map contents into :class:`Metric` objects (name without the
namespace prefix, type, label names and one value per label-value tuple);
the exporter (:mod:`.exporter`) adds the prefix, the ``sampled`` label,
carried-over values from earlier instances, the series budget, and converts
them to ``prometheus_client`` metric families.  ``pybpf-agent top`` reads the
same objects.

Histograms come from log2 slots filled in BPF with ceil semantics: slot k
counts values v with 2^(k-1) < v <= 2^k (programs/agent.h), so slot k is the
Prometheus bucket ``le = 2^k × unit``.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["Metric", "Histogram", "log2_histogram", "TopN", "HIST_MAX_BUCKET", "HIST_SLOTS",
           "HIST_OVERFLOW", "HIST_SUM"]

# Mirrors programs/agent.h.
HIST_MAX_BUCKET = 40
HIST_OVERFLOW = HIST_MAX_BUCKET + 1
HIST_SUM = HIST_MAX_BUCKET + 2
HIST_SLOTS = HIST_MAX_BUCKET + 3

Labels = Tuple[str, ...]


class Histogram:
    """One histogram series: cumulative ``buckets`` [(le, count)], ``sum`` and ``count``
    (``count`` is the +Inf bucket)."""

    __slots__ = ("buckets", "sum", "count")

    def __init__(self, buckets: List[Tuple[float, float]], sum: float, count: float):
        self.buckets = buckets
        self.sum = sum
        self.count = count

    def scaled(self, factor: float) -> "Histogram":
        return Histogram([(le, c * factor) for le, c in self.buckets], self.sum * factor,
                         self.count * factor)

    def plus(self, other: "Histogram") -> "Histogram":
        """Element-wise sum (same bucket bounds), for carrying values across restarts."""
        theirs = dict(other.buckets)
        return Histogram([(le, c + theirs.get(le, 0.0)) for le, c in self.buckets],
                         self.sum + other.sum, self.count + other.count)

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, sum={self.sum})"


class Metric:
    """A metric family: ``kind`` is ``counter``, ``gauge`` or ``histogram``;
    ``samples`` maps label values (in ``labels`` order) to a float or a Histogram.

    ``name`` is without the namespace prefix and, for counters, without
    ``_total`` (added on export, as prometheus_client expects).
    """

    __slots__ = ("kind", "name", "help", "labels", "samples", "unit", "scalable")

    def __init__(self, kind: str, name: str, help: str, labels: Sequence[str] = (),
                 samples: Optional[Dict[Labels, object]] = None, *, scalable: bool = True):
        self.kind = kind
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self.samples: Dict[Labels, object] = samples if samples is not None else {}
        self.scalable = scalable   # multiplied by the sampling rate (event counts); not gauges

    def add(self, labels: Labels, value: float) -> None:
        self.samples[labels] = self.samples.get(labels, 0.0) + value   # type: ignore[operator]

    def __repr__(self) -> str:
        return f"Metric({self.kind} {self.name}, {len(self.samples)} series)"


def log2_histogram(slots: Sequence[int], *, unit: float = 1e-9, k_min: int = 0,
                   k_max: int = HIST_MAX_BUCKET) -> Histogram:
    """A Prometheus histogram from BPF log2 slots (``HIST_SLOTS`` values: buckets
    0..HIST_MAX_BUCKET, overflow, sum).

    Buckets ``le = 2^k × unit`` for k in [k_min, k_max]; the first one also holds
    everything below it, values above 2^k_max are only in +Inf.
    """
    cumulative = 0
    buckets: List[Tuple[float, float]] = []
    for k in range(0, min(k_max, HIST_MAX_BUCKET) + 1):
        cumulative += slots[k]
        if k >= k_min:
            buckets.append((float(2 ** k) * unit, float(cumulative)))
    count = sum(slots[:HIST_MAX_BUCKET + 1]) + slots[HIST_OVERFLOW]
    return Histogram(buckets, float(slots[HIST_SUM]) * unit, float(count))


class TopN:
    """Bounded per-entity counters that stay monotonic.

    At most ``n`` entities (e.g. processes) get their own series; everything else
    is summed into ``other``.  Selection is sticky: an entity keeps its series
    until it disappears; a free slot goes to the busiest unselected entity since
    the previous update.  Counters never go backwards:

    * a promoted entity starts its series at 0 (what it counted before stays in ``other``);
    * an unselected entity that vanishes leaves its count in ``other``;
    * a selected entity that vanishes takes its series with it.
    """

    def __init__(self, n: int):
        self.n = n
        self._base: Dict[object, float] = {}      # value already attributed to other
        self._last: Dict[object, float] = {}      # value seen at the previous update
        self._selected: Dict[object, None] = {}   # insertion-ordered set
        self._retired = 0.0                       # other's share of vanished entities

    def update(self, current: Dict[object, float],
               gone: Optional[Dict[object, float]] = None) -> Tuple[Dict[object, float], float]:
        """Feed the current totals of live entities, and the final totals of entities
        that just vanished (``gone``); returns ({entity: series value}, other value)."""
        final = dict(gone or {})
        for key in list(self._last):
            if key not in current and key not in final:
                final[key] = self._last[key]
        for key, value in final.items():
            if key not in self._selected:
                self._retired += value - self._base.get(key, 0.0)
            self._selected.pop(key, None)
            self._base.pop(key, None)
            self._last.pop(key, None)
        free = self.n - len(self._selected)
        if free > 0:
            candidates = sorted((k for k in current if k not in self._selected),
                                key=lambda k: current[k] - self._last.get(k, 0.0), reverse=True)
            for key in candidates[:free]:
                if current[key] - self._last.get(key, 0.0) <= 0 and key in self._last:
                    continue   # idle since the last update: not worth a series yet
                # its count so far stays in other
                self._retired += self._last.get(key, 0.0) - self._base.get(key, 0.0)
                self._base[key] = self._last.get(key, 0.0)
                self._selected[key] = None
        out: Dict[object, float] = {}
        other = self._retired
        for key, value in current.items():
            base = self._base.get(key, 0.0)
            if key in self._selected:
                out[key] = value - base
            else:
                other += value - base
        self._last = dict(current)
        return out, other

    def selected(self) -> Iterable[object]:
        return list(self._selected)
