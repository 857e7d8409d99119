"""user: the operator's own BPF objects, exported through a YAML description (ebpf_exporter's model).

Each entry of ``collectors.user.programs`` names a ``.bpf.o``; every program in
it attaches as its SEC() says (like a libbpf skeleton).  ``counters`` and
``histograms`` say which maps become which metrics and how key bytes decode
into labels::

    programs:
      - name: opens
        object: /etc/pybpf-agent/opens.bpf.o
        counters:
          - name: file_opens
            help: openat() calls by errno
            map: opens_by_errno
            labels:
              - {name: errno, size: 4, decoders: [{name: errno}]}
        histograms:
          - name: read_size_bytes
            help: read() sizes
            map: read_sizes
            bucket_type: exp2
            bucket_min: 0
            bucket_max: 20
            labels:
              - {name: bucket, size: 8}

Map values are u64 (per-CPU values are summed).  Histogram keys end with the
bucket index (the last label, named ``bucket``); bucket k is ``le =
bucket_multiplier × 2^k`` (exp2) or ``× k`` (linear).  The map holds no sum, so
``_sum`` is an upper-bound estimate (each observation counted at its bucket's
bound).  Labels without ``size`` take the map's BTF key struct members in order.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import pybpf

from ..decoders import build_chain
from ..metrics import Histogram, Metric
from ..schema import ConfigError
from .base import Collector, CollectorError, State, _one_line

__all__ = ["UserCollector"]


class _Layout:
    """How a metric's key bytes split into labels."""

    def __init__(self, labels: List[dict], path: str):
        self.names = [l["name"] for l in labels]
        self.sizes = [int(l.get("size") or 0) for l in labels]
        self.pads = [int(l.get("padding") or 0) for l in labels]
        self.chains = [build_chain(l.get("decoders") or [], f"{path}.labels[{i}].decoders")
                       for i, l in enumerate(labels)]
        self._cache: Dict[bytes, Optional[Tuple[str, ...]]] = {}

    def resolve_sizes(self, m: Any) -> None:
        """Fill sizes left at 0 from the map's BTF key struct (member offsets and sizes)."""
        if all(self.sizes) or not self.names:
            return
        spec = getattr(m, "spec", None)
        btf = getattr(spec, "btf", None) if spec is not None else None
        if btf is None or not spec.key_type_id:
            if len(self.names) == 1:
                self.sizes = [m.key_size]
                return
            raise ValueError(f"map {m.name}: labels need `size` (the map has no BTF key type)")
        t = btf.type(btf.skip_modifiers(spec.key_type_id))
        members = getattr(t, "members", None)
        if not members:
            self.sizes = [m.key_size] if len(self.names) == 1 else self.sizes
            return
        if len(members) < len(self.names):
            raise ValueError(f"map {m.name}: key struct has {len(members)} members, "
                             f"{len(self.names)} labels configured")
        offsets = [mem.offset // 8 for mem in members] + [m.key_size]
        for i in range(len(self.names)):
            if not self.sizes[i]:
                self.sizes[i] = btf.sizeof(members[i].type)
                self.pads[i] = offsets[i + 1] - offsets[i] - self.sizes[i] if i + 1 < len(offsets) else 0

    def decode(self, key: bytes) -> Optional[Tuple[str, ...]]:
        """Label values for a key (None: dropped by an allow-list); cached per key."""
        try:
            return self._cache[key]
        except KeyError:
            pass
        labels = self._decode(key)
        if len(self._cache) >= 100_000:
            self._cache.clear()
        self._cache[key] = labels
        return labels

    def _decode(self, key: bytes) -> Optional[Tuple[str, ...]]:
        out = []
        pos = 0
        for size, pad, chain in zip(self.sizes, self.pads, self.chains):
            v = chain(key[pos:pos + size])
            if v is None:
                return None
            out.append(v)
            pos += size + pad
        return tuple(out)


def _entries(m: Any) -> List[Tuple[bytes, int]]:
    """(key bytes, u64 value summed over CPUs) for every entry, read in batches."""
    try:
        kb, vb, n = m.dump_raw()
    except AttributeError:   # a pybpf without batch reads
        kb = b"".join(k for k, _ in m.items_raw())
        vb = b"".join(v for _, v in m.items_raw())
        n = len(kb) // m.key_size if m.key_size else 0
    if n == 0:
        return []
    vals = memoryview(bytes(vb)).cast("Q")
    stride = len(vals) // n
    keys = bytes(kb)
    ks = m.key_size
    if stride == 1:
        sums = vals.tolist()
    else:
        sums = [sum(vals[i * stride:(i + 1) * stride]) for i in range(n)]
    return [(keys[i * ks:(i + 1) * ks], sums[i]) for i in range(n)]


class _Program:
    def __init__(self, pcfg: dict, path: str):
        self.cfg = pcfg
        self.name = pcfg["name"] or os.path.basename(pcfg["object"]).split(".")[0]
        self.path = path
        self.counters = [(c, _Layout(c["labels"], f"{path}.counters[{i}]"))
                         for i, c in enumerate(pcfg["counters"])]
        self.hists = [(h, _Layout(h["labels"], f"{path}.histograms[{i}]"))
                      for i, h in enumerate(pcfg["histograms"])]
        self.coll: Any = None
        self.links: List[Any] = []


class UserCollector(Collector):
    name = "user"
    help = "operator-supplied BPF objects described in YAML"
    variants = {}

    @classmethod
    def check_config(cls, cfg: dict, path: str) -> None:
        for i, p in enumerate(cfg.get("programs") or ()):
            ppath = f"{path}.programs[{i}]"
            if not p["object"]:
                raise ConfigError(f"{ppath}.object", "'' is not allowed (path to a .bpf.o required)")
            for kind in ("counters", "histograms"):
                for j, m in enumerate(p[kind]):
                    if not m["name"]:
                        raise ConfigError(f"{ppath}.{kind}[{j}].name", "'' is not allowed "
                                          "(every metric needs a name)")
                    _Layout(m["labels"], f"{ppath}.{kind}[{j}]")   # compiles regexps
                    if kind == "histograms" and (not m["labels"] or m["labels"][-1]["name"] != "bucket"):
                        raise ConfigError(f"{ppath}.{kind}[{j}].labels", "the last label of a "
                                          "histogram must be `bucket` (the bucket index in the key)")

    def __init__(self, cfg: dict, env: Any):
        super().__init__(cfg, env)
        self.progs = [_Program(p, f"collectors.user.programs[{i}]")
                      for i, p in enumerate(cfg.get("programs") or ())]

    @property
    def running(self) -> bool:
        return any(p.coll is not None for p in self.progs)

    def start(self) -> None:
        failures = []
        for p in self.progs:
            try:
                spec = pybpf.load_collection_spec(p.cfg["object"])
                for k, v in (p.cfg.get("rodata") or {}).items():
                    if k not in spec.variables:
                        raise ValueError(f"no variable {k!r} in {p.cfg['object']}")
                    spec.variables[k].value = v
                coll = pybpf.load(spec)
                try:
                    links = coll.attach_all()
                    for m, layout in p.counters + p.hists:
                        mp = coll.maps.get(m["map"] or m["name"])
                        if mp is None:
                            raise ValueError(f"no map {m['map'] or m['name']!r} in {p.cfg['object']}")
                        layout.resolve_sizes(mp)
                except BaseException:
                    coll.close()
                    raise
                p.coll, p.links = coll, links
            except Exception as e:
                failures.append(f"{p.name}: {_one_line(e)}")
        self.hook = "sections"
        if failures and not self.running:
            self.state, self.reason = State.DOWN, "; ".join(failures)
            raise CollectorError(f"collector user: no program could be loaded ({self.reason})")
        self.state = State.DEGRADED if failures else State.UP
        self.reason = "; ".join(failures)
        self.coll = self   # marks "running" for the base class' read path

    def stop(self) -> None:
        for p in self.progs:
            coll, p.coll = p.coll, None
            if coll is not None:
                coll.close()   # closes its links too
        self.coll = None
        self._cache = None
        if self.state not in (State.DISABLED, State.DOWN):
            self.state = State.STOPPED

    def programs(self) -> List[Any]:
        return [prog for p in self.progs if p.coll is not None for prog in p.coll.programs.values()]

    def self_metrics(self) -> Dict[str, float]:
        return {}

    def map_fill(self) -> List[Tuple[str, int, int]]:
        return []

    def read(self, _coll: Any) -> List[Metric]:
        out: List[Metric] = []
        for p in self.progs:
            if p.coll is None:
                continue
            for m, layout in p.counters:
                metric = Metric("counter" if m["value_type"] == "counter" else "gauge",
                                m["name"], m["help"] or m["name"], layout.names)
                for key, v in _entries(p.coll.maps[m["map"] or m["name"]]):
                    labels = layout.decode(key)
                    if labels is not None:
                        metric.add(labels, float(v))
                out.append(metric)
            for h, layout in p.hists:
                out.append(self._histogram(p, h, layout))
        return out

    def _histogram(self, p: _Program, h: dict, layout: _Layout) -> Metric:
        lo, hi, mult = h["bucket_min"], h["bucket_max"], h["bucket_multiplier"]
        exp2 = h["bucket_type"] == "exp2"
        per: Dict[Tuple[str, ...], Dict[int, int]] = {}
        for key, v in _entries(p.coll.maps[h["map"] or h["name"]]):
            labels = layout.decode(key)
            if labels is None:
                continue
            try:
                b = int(labels[-1])
            except ValueError:
                continue
            per.setdefault(labels[:-1], {})
            per[labels[:-1]][b] = per[labels[:-1]].get(b, 0) + v
        metric = Metric("histogram", h["name"], h["help"] or h["name"], layout.names[:-1])
        for labels, counts in per.items():
            cum, total, est = 0, sum(counts.values()), 0.0
            buckets = []
            for k in range(0, hi + 1):
                le = mult * (2 ** k if exp2 else k)
                cum += counts.get(k, 0)
                est += counts.get(k, 0) * le
                if k >= lo:
                    buckets.append((float(le), float(cum)))
            est += sum(c * mult * (2 ** k if exp2 else k) for k, c in counts.items() if k > hi)
            metric.samples[labels] = Histogram(buckets, est, float(total))
        return metric
