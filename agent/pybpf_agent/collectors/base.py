"""Collector: one BPF object, a chain of hook variants, and maps read at scrape time.

A collector's object (``programs/<name>.bpf.c``, shipped compiled in
``pybpf_agent/bpf``) holds every hook variant of its programs, all declared
``SEC("?...")`` (not loaded unless chosen).  :meth:`Collector.start` walks the
hook chain (the config's ``hooks`` list, or the collector's default order):
for each variant it enables that variant's programs, sets the ``.rodata``
knobs and map sizes, loads and attaches; the first variant that works wins,
the failures are kept as the reason shown by ``--probe`` and ``/readyz``.

A chain entry is a variant name (``raw_tp``) or ``KIND/TARGET``
(``raw_tp/sys_enter_x``, ``tracepoint/cat/name``): the variant KIND with its
*primary* (first) program attached to TARGET instead -- how an operator
points a collector at another hook, and how the tests point one at a
tracepoint that does not exist.

Only pybpf's public API is used: ``pybpf.load_collection_spec``,
``pybpf.load``, ``Program.attach``, ``Map`` reads, ``pybpf.link``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pybpf

from ..metrics import Metric

__all__ = ["Collector", "Variant", "CollectorError", "Env", "object_path", "read_percpu_array",
           "dump_summed", "State", "tracepoint_exists"]

log = logging.getLogger("pybpf_agent")


class CollectorError(Exception):
    """A collector could not start (every variant failed) or failed while running."""


class State:
    """Collector states shown in ``--probe``, ``/readyz`` and ``pybpf_agent_collector_info``."""
    PLANNED = "planned"
    UP = "up"                 # attached with its first-choice hook
    DEGRADED = "degraded"     # attached through a fallback hook, or partly (optional programs out)
    DOWN = "down"             # every hook failed, or failed at run time (restart pending)
    DISABLED = "disabled"     # switched off in the config
    STOPPED = "stopped"


class Variant:
    """One way to hook a collector in: the programs to load and how to attach each.

    ``programs`` are program names in the object; the first is the primary one
    (retargeted by ``KIND/TARGET`` chain entries).  ``optional`` programs are
    left out, with a note, when their tracepoint does not exist on this kernel.
    ``attach`` (optional) replaces the default ``program.attach(...)``.
    """

    def __init__(self, name: str, programs: Sequence[str], *, optional: Sequence[str] = (),
                 attach: Optional[Callable[..., List[Any]]] = None, needs: str = ""):
        self.name = name
        self.programs = tuple(programs)
        self.optional = tuple(optional)
        self.attach = attach
        self.needs = needs


class Env:
    """What collectors share: the global config, the cgroup2 mount, cached object specs."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self._specs: Dict[str, Any] = {}
        self._lock = threading.Lock()

    def spec(self, object_name: str) -> Any:
        """A fresh copy of the parsed object (parsed once per object)."""
        with self._lock:
            spec = self._specs.get(object_name)
            if spec is None:
                spec = self._specs[object_name] = pybpf.load_collection_spec(object_path(object_name))
            return spec.copy()


def object_path(name: str) -> str:
    """Path of a shipped BPF object (``pybpf_agent/bpf/<name>``)."""
    override = os.environ.get("PYBPF_AGENT_BPF_DIR")
    if override:
        return os.path.join(override, name)
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bpf", name)
    if os.path.exists(here):      # the usual case, and no importlib.resources at start-up
        return here
    from importlib import resources   # a zipped install
    return str(resources.files("pybpf_agent") / "bpf" / name)


def tracepoint_exists(target: str) -> Optional[bool]:
    """Whether tracepoint ``target`` (``name`` or ``cat/name``) exists; None when unknown."""
    for root in ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"):
        if not os.path.isdir(root):
            continue
        if "/" in target:
            return os.path.isdir(os.path.join(root, target))
        try:
            return any(os.path.isdir(os.path.join(root, cat, target)) for cat in os.listdir(root))
        except OSError:
            return None
    return None


def _close_links(links: Sequence[Any]) -> None:
    """Close links in parallel: a classic tracepoint link costs ~75 ms to destroy in the
    kernel (perf event teardown waits for an RCU grace period)."""
    if len(links) <= 1:
        for l in links:
            l.close()
        return
    import concurrent.futures     # here, not at import: it is only needed to stop
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(links), 16)) as ex:
        for f in [ex.submit(l.close) for l in links]:
            try:
                f.result()
            except Exception as e:   # a detach failure must not stop the others
                log.warning("closing link: %s", e)


class Collector:
    """Base class; subclasses set ``name``, ``object_name``, ``variants`` and implement
    :meth:`configure` (knobs and map sizes) and :meth:`read` (maps -> metrics)."""

    name = ""
    object_name = ""
    help = ""
    #: variant name -> Variant, in default chain order
    variants: Dict[str, Variant] = {}
    #: aggregation maps pinned under pin_root/<collector> when pinning is on
    pin_maps: Tuple[str, ...] = ()

    def __init__(self, cfg: dict, env: Env):
        self.cfg = cfg
        self.env = env
        self.state = State.PLANNED
        self.hook = ""             # the variant that attached
        self.reason = ""           # why down/degraded/disabled
        self.attempts: List[Tuple[str, str]] = []   # (chain entry, failure)
        self.coll: Any = None
        self.links: List[Any] = []
        self.reads = 0
        self.read_errors = 0
        self.last_read_seconds = 0.0
        self.started_at = 0.0
        self._cache: Optional[Tuple[float, List[Metric]]] = None
        self._lock = threading.RLock()

    # -- configuration ----------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: dict, path: str) -> None:
        """Reject chain entries naming unknown variants (raises ConfigError)."""
        from ..schema import ConfigError
        for i, entry in enumerate(cfg.get("hooks") or ()):
            kind = entry.split("/", 1)[0]
            if kind not in cls.variants:
                import difflib
                close = difflib.get_close_matches(kind, list(cls.variants), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{path}.hooks[{i}]", f"{entry!r} is not allowed (expected one of "
                                  f"{', '.join(cls.variants)}, optionally followed by /TARGET){hint}")

    def chain(self) -> List[str]:
        return list(self.cfg.get("hooks") or self.variants)

    @property
    def sampling(self) -> int:
        return int(self.cfg.get("sampling", 1))

    def scope(self) -> Tuple[int, int]:
        """(cgroup id, tgid) of the effective scope (collector's, else the global one)."""
        from ..cgroups import cgroup_id
        local = self.cfg.get("scope") or {}
        glob = self.env.cfg.get("scope") or {}
        path = local.get("cgroup") or glob.get("cgroup") or ""
        pid = local.get("pid") or glob.get("pid") or 0
        return (cgroup_id(path) if path else 0), int(pid)

    def configure(self, spec: Any, variant: Variant) -> None:
        """Set knobs and map sizes on ``spec`` (a fresh copy) before load."""
        cg, pid = self.scope()
        self.set_var(spec, "scope_cgroup_id", cg)
        self.set_var(spec, "scope_tgid", pid)
        self.set_var(spec, "sample_rate", self.sampling)

    @staticmethod
    def set_var(spec: Any, name: str, value: Any) -> None:
        var = spec.variables.get(name)
        if var is not None:
            var.value = value

    def size_map(self, spec: Any, name: str, entries: int) -> None:
        if name in spec.maps:
            spec.maps[name].max_entries = int(entries)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Try the hook chain; sets state/hook/reason.  Raises CollectorError if nothing works."""
        self.attempts = []
        chain = self.chain()
        for i, entry in enumerate(chain):
            kind, _, target = entry.partition("/")
            variant = self.variants[kind]
            if not self.applicable(variant, target):
                log.debug("collector %s: hook %s does not apply (needs %s)", self.name, entry,
                          variant.needs)
                continue
            try:
                notes = self._start_variant(variant, target)
            except Exception as e:   # pybpf errors, OSError from attach helpers ...
                reason = _one_line(e)
                self.attempts.append((entry, reason))
                log.debug("collector %s: hook %s failed: %s", self.name, entry, reason)
                continue
            self.hook = entry
            self.started_at = time.monotonic()
            degraded = [f"{e}: {r}" for e, r in self.attempts] + notes
            self.state = State.UP if not degraded else State.DEGRADED
            self.reason = "; ".join(degraded)
            return
        self.state = State.DOWN
        self.hook = ""
        self.reason = "; ".join(f"{e}: {r}" for e, r in self.attempts) or "empty hook chain"
        raise CollectorError(f"collector {self.name}: no hook could be attached ({self.reason})")

    def applicable(self, variant: Variant, target: str) -> bool:
        """Whether ``variant`` applies to this configuration at all (skipped, not failed)."""
        return True

    def _start_variant(self, variant: Variant, target: str) -> List[str]:
        spec = self.env.spec(self.object_name)
        notes: List[str] = []
        enabled: List[str] = []
        for ps in spec.programs.values():
            ps.autoload = False   # exactly the variant's programs, whatever the SEC() prefix says
        for prog in variant.programs:
            if prog in variant.optional:
                tp = spec.programs[prog].attach_to
                if tracepoint_exists(tp) is False:
                    notes.append(f"{prog} left out: no tracepoint {tp} on this kernel")
                    continue
            spec.programs[prog].autoload = True
            enabled.append(prog)
        primary = variant.programs[0]
        if target and spec.programs[primary].attach_kind == "tp_btf":
            spec.programs[primary].attach_to = target
        self.configure(spec, variant)
        pin_root = self.env.cfg.get("pin_root") or ""
        if pin_root:
            from pybpf import Pinning
            for m in self.pin_maps:
                if m in spec.maps:
                    spec.maps[m].pinning = Pinning.BY_NAME
            pin_root = os.path.join(pin_root, self.name)
            os.makedirs(pin_root, exist_ok=True)
        coll = pybpf.load(spec, pin_root=pin_root or None)
        links: List[Any] = []
        try:
            self.after_load(coll)
            if variant.attach is not None:
                links = variant.attach(self, coll, enabled, target)
            else:
                for prog in enabled:
                    p = coll.programs[prog]
                    if prog == primary and target and p.spec.attach_kind != "tp_btf":
                        links.append(p.attach(target=target))
                    else:
                        links.append(p.attach())
        except BaseException:
            _close_links(links)
            coll.close()
            raise
        with self._lock:
            self.coll, self.links = coll, links
            self._cache = None
        return notes

    def after_load(self, coll: Any) -> None:
        """Fill control maps (filters) after load, before attach."""

    def stop(self) -> None:
        """Detach (links closed in parallel) and release every fd."""
        with self._lock:
            links, coll = self.links, self.coll
            self.links, self.coll = [], None
            self._cache = None
        _close_links(links)
        if coll is not None:
            coll.close()
        if self.state not in (State.DISABLED, State.DOWN):
            self.state = State.STOPPED

    @property
    def running(self) -> bool:
        return self.coll is not None

    # -- reading ------------------------------------------------------------------------------
    def metrics(self) -> List[Metric]:
        """Current metrics (maps read now, or the cached read within min_read_interval)."""
        with self._lock:
            if self.coll is None:
                return []
            ttl = float(self.cfg.get("min_read_interval", 0.0) or 0.0)
            now = time.monotonic()
            if self._cache is not None and now - self._cache[0] < ttl:
                return self._cache[1]
            t0 = time.perf_counter()
            try:
                out = self.read(self.coll)
            except Exception:
                self.read_errors += 1
                raise
            self.last_read_seconds = time.perf_counter() - t0
            self.reads += 1
            self._cache = (now, out)
            return out

    def read(self, coll: Any) -> List[Metric]:
        raise NotImplementedError

    def self_metrics(self) -> Dict[str, float]:
        """Per-collector BPF-side counters: map update errors, ring buffer produced/dropped."""
        coll = self.coll
        if coll is None or "agent_errors" not in coll.maps:
            return {}
        vals = read_percpu_array(coll.maps["agent_errors"], 3)
        return {"map_update_errors": vals[0], "ringbuf_dropped": vals[1], "ringbuf_produced": vals[2]}

    def map_fill(self) -> List[Tuple[str, int, int]]:
        """(map, entries, max_entries) for hash maps (array maps are always full)."""
        coll = self.coll
        out = []
        if coll is None:
            return out
        for name, m in coll.maps.items():
            t = getattr(m.type, "name", str(m.type))
            if "HASH" not in t:
                continue
            try:
                n = len(m)
            except (TypeError, pybpf.BPFError):   # no cheap length: count the keys
                n = sum(1 for _ in m.keys_raw())
            out.append((name, n, m.max_entries))
        return out

    def programs(self) -> List[Any]:
        coll = self.coll
        return list(coll.programs.values()) if coll is not None else []


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    return f"{type(e).__name__}: {first}" if not first.startswith(type(e).__name__) else first


# -- map reading helpers ----------------------------------------------------------------------

def read_percpu_array(m: Any, n: Optional[int] = None) -> List[int]:
    """Values of a per-CPU (or plain) u64 array, summed over CPUs, as a list."""
    n = m.max_entries if n is None else min(n, m.max_entries)
    try:
        d = m.dump(sum_cpus=True)   # one BPF_MAP_LOOKUP_BATCH pass where supported
        return [int(d.get(i, 0)) for i in range(n)]
    except (AttributeError, TypeError):
        pass
    out = []
    for i in range(n):
        v = m.lookup(i)
        out.append(int(sum(v)) if isinstance(v, list) else int(v))
    return out



def dump_summed(m: Any) -> Dict[Any, Any]:
    """Every entry of a (per-CPU) hash map, per-CPU values summed.  Struct values are
    summed field by field into dicts."""
    try:
        raw = m.dump()
    except AttributeError:
        raw = dict(m.items())
    if not m.percpu:
        return raw
    out: Dict[Any, Any] = {}
    for k, vals in raw.items():
        first = vals[0]
        if isinstance(first, int):
            out[k] = sum(vals)
        else:
            fields = first._asdict() if hasattr(first, "_asdict") else dict(first)
            acc = {f: 0 for f in fields}
            for v in vals:
                d = v._asdict() if hasattr(v, "_asdict") else dict(v)
                for f in acc:
                    acc[f] += d[f]
            out[k] = acc
    return out
