"""The agent: builds collectors from the config, starts them, serves them, keeps them alive.

Life cycle (``run``):

1. probe kernel features, build one collector object per configured collector;
2. start each enabled collector (it walks its hook chain); one that cannot
   start is reported down with the reason and skipped, the others run
   (``strict: true`` makes that fatal);
3. read each running collector once, serve HTTP: ``/readyz`` turns 200;
4. supervise: a collector whose read fails at run time is stopped and
   restarted with exponential backoff (initial_backoff .. max_backoff); its
   counts so far are carried over so counters never go backwards;
5. SIGHUP: reload the config; collectors whose settings changed are restarted
   (counts carried over), the others keep running untouched;
6. SIGTERM/SIGINT: stop the HTTP server, detach every collector (in parallel
   threads; links inside a collector are closed in parallel too), exit 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .collectors import COLLECTORS
from .collectors.base import Collector, CollectorError, Env, State
from .config import load_config
from .exporter import AgentCollector, Carry
from .metrics import Metric
from .probe import probe_features
from .schema import ConfigError

__all__ = ["Agent", "check_collectors"]

log = logging.getLogger("pybpf_agent")


def check_collectors(cfg: dict) -> None:
    """Collector-specific validation the schema cannot express (hook names, user programs)."""
    for name, ccfg in cfg["collectors"].items():
        cls = COLLECTORS.get(name)
        if cls is not None and hasattr(cls, "check_config"):
            cls.check_config(ccfg, f"collectors.{name}")


class Agent:
    """Everything one agent process runs."""

    def __init__(self, cfg: dict, *, config_path: Optional[str] = None,
                 reload_overrides: Optional[Dict[str, Any]] = None):
        check_collectors(cfg)
        self.cfg = cfg
        self.config_path = config_path
        self.reload_overrides = reload_overrides or {}
        self.namespace = cfg["namespace"]
        self.env = Env(cfg)
        self.collectors: Dict[str, Collector] = {}
        self.carry: Dict[str, Carry] = {}
        self.restarts: Dict[str, int] = {}
        self._retry: Dict[str, Tuple[float, float]] = {}   # name -> (when, backoff)
        self.reloads = {"success": 0, "failure": 0}
        self.features: Dict[str, Tuple[bool, str]] = {}
        self.started = time.monotonic()
        self.ready_seconds: Optional[float] = None
        self.exporter = AgentCollector(self)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._hup = threading.Event()
        self.server: Any = None
        self.registry: Any = None
        self._stats_fd: Any = None

    # -- plan -------------------------------------------------------------------------------
    def build(self) -> None:
        """Create the collector objects (nothing touches the kernel yet)."""
        for name, ccfg in self.cfg["collectors"].items():
            cls = COLLECTORS[name]
            c = cls(ccfg, self.env)
            if not ccfg.get("enabled", True) or (name == "user" and not ccfg.get("programs")):
                c.state = State.DISABLED
                c.reason = "disabled in the config" if not ccfg.get("enabled", True) else \
                    "no user programs configured"
            self.collectors[name] = c

    def probe(self) -> Dict[str, Tuple[bool, str]]:
        self.features = probe_features()
        return self.features

    def start_collectors(self) -> List[str]:
        """Start every planned collector; returns the names that failed."""
        failed = []
        for c in self.collectors.values():
            if c.state == State.DISABLED:
                continue
            if not self._start_one(c):
                failed.append(c.name)
        return failed

    def _start_one(self, c: Collector) -> bool:
        try:
            c.start()
        except CollectorError as e:
            log.warning("%s", e)
            return False
        except Exception as e:   # a bug or unexpected kernel answer: report, keep the others
            c.state, c.reason = State.DOWN, f"{type(e).__name__}: {e}"
            log.exception("collector %s failed to start", c.name)
            return False
        log.info("collector %s: %s via %s%s", c.name, c.state, c.hook,
                 f" ({c.reason})" if c.reason else "")
        try:
            c.metrics()   # the first read: readiness needs one
        except Exception as e:
            self.collector_failed(c, e)
            return False
        return True

    def active_collectors(self) -> List[Collector]:
        return [c for c in self.collectors.values() if c.running]

    # -- run-time failures ------------------------------------------------------------------
    def collector_failed(self, c: Collector, err: BaseException) -> None:
        """A running collector failed: stop it, keep its counts, schedule a restart."""
        log.error("collector %s failed at run time: %s", c.name, err)
        cached = c._cache[1] if c._cache else []
        self._absorb(c.name, cached)
        try:
            c.stop()
        except Exception as e:
            log.warning("collector %s: stop after failure: %s", c.name, e)
        c.state, c.reason = State.DOWN, f"failed at run time: {err}"
        backoff = self.cfg["restart"]["initial_backoff"]
        prev = self._retry.get(c.name)
        if prev is not None:
            backoff = min(prev[1] * 2, self.cfg["restart"]["max_backoff"])
        self._retry[c.name] = (time.monotonic() + backoff, backoff)

    def _absorb(self, name: str, metrics: List[Metric]) -> None:
        """Keep a stopping instance's counts for its successor -- unless aggregation maps
        are pinned (pin_root): the successor then reopens the same maps, counts included."""
        if not self.cfg.get("pin_root"):
            self.carry.setdefault(name, Carry()).absorb(metrics)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for name, (when, backoff) in list(self._retry.items()):
            if now < when:
                continue
            c = self.collectors.get(name)
            if c is None or c.state == State.DISABLED:
                del self._retry[name]
                continue
            self.restarts[name] = self.restarts.get(name, 0) + 1
            log.info("collector %s: restarting (attempt %d)", name, self.restarts[name])
            if self._start_one(c):
                del self._retry[name]
            elif name in self._retry and self._retry[name][0] <= now:
                nb = min(backoff * 2, self.cfg["restart"]["max_backoff"])
                self._retry[name] = (now + nb, nb)

    # -- readiness ----------------------------------------------------------------------------
    def ready(self) -> Tuple[bool, dict]:
        detail = {"collectors": {}}
        ok = self.ready_seconds is not None   # the start phase is over
        for c in self.collectors.values():
            info = {"state": c.state, "hook": c.hook, "reason": c.reason, "reads": c.reads}
            detail["collectors"][c.name] = info
            if c.running and c.reads == 0:
                ok = False
        detail["ready"] = ok
        return ok, detail

    # -- reload ---------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the config; restart only the collectors whose settings changed."""
        try:
            cfg = load_config(self.config_path, overrides=self.reload_overrides)
            check_collectors(cfg)
        except ConfigError as e:
            self.reloads["failure"] += 1
            log.error("reload failed, keeping the running config: %s", e)
            return False
        with self._lock:
            global_keys = ("scope", "performance", "pin_root")
            global_changed = any(cfg[k] != self.cfg[k] for k in global_keys)
            old = self.cfg
            self.cfg = cfg
            self.env.cfg = cfg
            self.namespace = cfg["namespace"]
            for name, ccfg in cfg["collectors"].items():
                c = self.collectors[name]
                if ccfg == old["collectors"][name] and not global_changed:
                    continue
                log.info("reload: collector %s changed", name)
                if c.running:
                    try:
                        self._absorb(name, c.metrics())
                    except Exception as e:   # its last good read is lost, not the reload
                        log.warning("reload: final read of %s failed: %s", name, e)
                    c.stop()
                new = COLLECTORS[name](ccfg, self.env)
                self.collectors[name] = new
                self._retry.pop(name, None)
                if not ccfg.get("enabled", True) or (name == "user" and not ccfg.get("programs")):
                    new.state, new.reason = State.DISABLED, "disabled in the config"
                    continue
                self._start_one(new)
        self.reloads["success"] += 1
        log.info("config reloaded")
        return True

    # -- self metrics ---------------------------------------------------------------------------
    def self_metrics(self, exporter: AgentCollector) -> List[Metric]:
        from .selfmetrics import agent_metrics
        return agent_metrics(self, exporter)

    def enable_run_stats(self) -> str:
        """Turn on BPF run-time stats (opt-in); returns "" or why not."""
        import pybpf
        fn = getattr(pybpf, "enable_stats", None)
        if fn is None:
            progs = getattr(pybpf, "progs", None)
            fn = getattr(progs, "enable_stats", None) if progs is not None else None
        if fn is None:
            try:
                with open("/proc/sys/kernel/bpf_stats_enabled") as f:
                    if f.read().strip() == "1":
                        return ""
            except OSError:
                pass
            return ("pybpf has no public run-stats API yet; set sysctl kernel.bpf_stats_enabled=1 "
                    "to get per-program run counts")
        try:
            self._stats_fd = fn()
        except Exception as e:
            return f"enabling run stats failed: {e}"
        return ""

    # -- main loop ------------------------------------------------------------------------------
    def serve(self) -> None:
        from prometheus_client import CollectorRegistry
        from .config import parse_listen
        from .server import MetricsServer
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.exporter)
        password = self.cfg["basic_auth"]["password"]
        if self.cfg["basic_auth"]["password_file"]:
            with open(self.cfg["basic_auth"]["password_file"]) as f:
                password = f.readline().rstrip("\n")
        self.server = MetricsServer(parse_listen(self.cfg["listen"]), self.registry, self.ready,
                                    cert_file=self.cfg["tls"]["cert_file"],
                                    key_file=self.cfg["tls"]["key_file"],
                                    username=self.cfg["basic_auth"]["username"], password=password,
                                    text=self.exporter.render_text)
        self.server.start()
        host, port = self.server.address
        log.info("serving %s://%s:%d/metrics", "https" if self.server.tls else "http", host, port)

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def request_reload(self, *_: Any) -> None:
        self._hup.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    def run(self, *, on_ready: Optional[Callable[["Agent"], None]] = None) -> int:
        """Start, serve and supervise until SIGTERM/SIGINT; returns the exit code."""
        self.install_signals()
        self.probe()
        self.build()
        if self.cfg["performance"]["bpf_run_stats"]:
            why = self.enable_run_stats()
            if why:
                log.warning("bpf_run_stats: %s", why)
        try:
            self.serve()
        except OSError as e:
            log.error("cannot listen on %s: %s", self.cfg["listen"], e.strerror or e)
            return 1
        try:
            failed = self.start_collectors()
            if failed and self.cfg["strict"]:
                log.error("strict: collectors failed to start: %s", ", ".join(failed))
                return 1
            self.ready_seconds = time.monotonic() - self.started
            log.info("ready in %.3f s (%d collectors running)", self.ready_seconds,
                     len(self.active_collectors()))
            if on_ready is not None:
                on_ready(self)
            while not self._stop.is_set():
                self._stop.wait(0.2)
                if self._hup.is_set():
                    self._hup.clear()
                    self.reload()
                self._restart_due()
                self._check_threads()
        finally:
            self.shutdown()
        return 0

    def _check_threads(self) -> None:
        for c in self.active_collectors():
            t = getattr(c, "_thread", None)
            if t is not None and not t.is_alive() and not getattr(c, "_stop").is_set():
                self.collector_failed(c, RuntimeError("event thread died"))

    def shutdown(self) -> None:
        """Stop serving and detach everything (collectors stopped in parallel)."""
        t0 = time.monotonic()
        if self.server is not None:
            self.server.stop()
            self.server = None
        running = [c for c in self.collectors.values() if c.running]
        if running:
            import concurrent.futures     # (not at import: start-up time)
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(running)) as ex:
                for f in [ex.submit(c.stop) for c in running]:
                    try:
                        f.result()
                    except Exception as e:
                        log.warning("stopping a collector: %s", e)
        if self._stats_fd is not None:
            try:
                self._stats_fd.close()
            except OSError as e:
                log.warning("closing BPF run stats: %s", e)
            self._stats_fd = None
        log.info("stopped in %.3f s", time.monotonic() - t0)
