"""The agent's own metrics (``pybpf_agent_*``): collector states, events, drops,
map fill, scrape cost, its CPU and memory, and opt-in BPF run stats."""

from __future__ import annotations

import logging
import os
import resource
from typing import Any, List

import pybpf

from . import __version__
from .collectors.base import State
from .metrics import Metric

log = logging.getLogger("pybpf_agent")

__all__ = ["agent_metrics", "rss_bytes"]


def rss_bytes() -> int:
    """Resident set size of this process (from /proc/self/statm)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _g(name: str, help: str, labels=()) -> Metric:
    return Metric("gauge", name, help, labels, scalable=False)


def _c(name: str, help: str, labels=()) -> Metric:
    return Metric("counter", name, help, labels, scalable=False)


def agent_metrics(agent: Any, exporter: Any) -> List[Metric]:
    up = _g("agent_collector_up", "1 when the collector is attached and read successfully.",
            ("collector", "hook"))
    info = _g("agent_collector_info", "Collector state (up, degraded, down, disabled) and the "
              "reason when not up; value 1.", ("collector", "state", "hook", "reason"))
    events = _c("agent_events_processed", "Events read from ring/perf buffers.", ("collector",))
    produced = _c("agent_events_produced", "Events the BPF programs submitted.", ("collector",))
    dropped = _c("agent_events_dropped", "Events the BPF programs could not submit (buffer full).",
                 ("collector",))
    upd = _c("agent_map_update_errors", "Failed BPF map updates (map full).", ("collector",))
    entries = _g("agent_map_entries", "Entries in the collector's hash maps.", ("collector", "map"))
    max_entries = _g("agent_map_max_entries", "Capacity of the collector's hash maps.",
                     ("collector", "map"))
    fill = _g("agent_map_fill_ratio", "entries / max_entries of the collector's hash maps.",
              ("collector", "map"))
    scrape = _g("agent_scrape_duration_seconds", "Time the last scrape spent reading the "
                "collector's maps.", ("collector",))
    restarts = _c("agent_collector_restarts", "Restarts after run-time failures.", ("collector",))
    for c in agent.collectors.values():
        running = c.running
        up.samples[(c.name, c.hook)] = 1.0 if running and c.state in (State.UP, State.DEGRADED) else 0.0
        info.samples[(c.name, c.state, c.hook, c.reason[:300])] = 1.0
        restarts.samples[(c.name,)] = float(agent.restarts.get(c.name, 0))
        if c.name in exporter.scrape_seconds:
            scrape.samples[(c.name,)] = exporter.scrape_seconds[c.name]
        if not running:
            continue
        try:
            sm = c.self_metrics()
            fills = c.map_fill()
        except pybpf.BPFError as e:     # a collector being restarted: skip it this scrape
            log.debug("self metrics of %s: %s", c.name, e)
            continue
        upd.samples[(c.name,)] = sm.get("map_update_errors", 0.0)
        if getattr(c, "transport", "off") != "off":
            events.samples[(c.name,)] = sm.get("events_consumed", 0.0)
            produced.samples[(c.name,)] = sm.get("ringbuf_produced", 0.0)
            dropped.samples[(c.name,)] = sm.get("ringbuf_dropped", 0.0)
        for mname, n, cap in fills:
            entries.samples[(c.name, mname)] = float(n)
            max_entries.samples[(c.name, mname)] = float(cap)
            fill.samples[(c.name, mname)] = n / cap if cap else 0.0
    feats = _g("agent_feature_available", "Kernel features the agent probed (1 available).", ("feature",))
    for name, (ok, _) in agent.features.items():
        feats.samples[(name,)] = 1.0 if ok else 0.0
    series = _c("agent_series_dropped", "Series cut by a collector's series budget.", ("metric",))
    for name, n in exporter.series_dropped.items():
        series.samples[(name,)] = float(n)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = _c("agent_cpu_seconds", "CPU time the agent process used.", ("mode",))
    cpu.samples[("user",)] = ru.ru_utime
    cpu.samples[("system",)] = ru.ru_stime
    rss = _g("agent_resident_memory_bytes", "Resident memory of the agent process.")
    rss.samples[()] = float(rss_bytes())
    reloads = _c("agent_config_reloads", "SIGHUP config reloads.", ("result",))
    for k, v in agent.reloads.items():
        reloads.samples[(k,)] = float(v)
    build = _g("agent_build_info", "Agent version and kernel release; value 1.", ("version", "kernel"))
    build.samples[(__version__, os.uname().release)] = 1.0
    ready = _g("agent_start_to_ready_seconds", "Seconds from process start to ready.")
    if agent.ready_seconds is not None:
        ready.samples[()] = agent.ready_seconds
    out = [up, info, events, produced, dropped, upd, entries, max_entries, fill, scrape, restarts,
           feats, series, cpu, rss, reloads, build, ready]
    if agent.cfg["performance"]["bpf_run_stats"]:
        out.extend(_run_stats(agent))
    return out


def _run_stats(agent: Any) -> List[Metric]:
    secs = _c("agent_bpf_program_run_seconds", "Time BPF programs ran (BPF run stats).",
              ("collector", "program"))
    runs = _c("agent_bpf_program_runs", "Times BPF programs ran (BPF run stats).",
              ("collector", "program"))
    for c in agent.active_collectors():
        for p in c.programs():
            try:
                i = p.info()
            except pybpf.BPFError as e:   # program closed by a concurrent restart
                log.debug("run stats of %s/%s: %s", c.name, p.name, e)
                continue
            secs.samples[(c.name, p.name)] = i.run_time_ns / 1e9
            runs.samples[(c.name, p.name)] = float(i.run_cnt)
    return [secs, runs]
