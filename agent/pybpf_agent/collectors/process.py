"""process: exec/fork/exit counts and exec events (programs/process.bpf.c).

Exec events (pid, ppid, uid, cgroup, comm, filename) arrive on a BPF ring
buffer, or a perf buffer on kernels without one (``pybpf.ringbuf.open_events``
picks); a thread polls them.  Without ``pybpf.ringbuf`` the events are off and
the collector says why (counts still work).  The BPF program counts what it
produced and what it could not reserve, so drops are exact:
produced - consumed is what is still in flight.
"""

from __future__ import annotations

import collections
import json
import logging
import struct
import threading
from typing import Any, Deque, Dict, List, Optional

from ..metrics import Metric
from .base import Collector, Variant, read_percpu_array

__all__ = ["ProcessCollector", "ExecEvent"]

log = logging.getLogger("pybpf_agent.events")

_EVENT = struct.Struct("=QQIIII16s256s")
CNT_EXEC, CNT_FORK, CNT_THREAD, CNT_EXIT, CNT_EXIT_SIGNALED = range(5)


class ExecEvent(dict):
    """One exec: ts_ns, cgroup_id, pid, ppid, uid, comm, filename."""

    @classmethod
    def decode(cls, buf: memoryview, offset: int, size: int) -> "ExecEvent":
        ts, cg, pid, ppid, uid, _pad, comm, filename = _EVENT.unpack_from(buf, offset)
        return cls(ts_ns=ts, cgroup_id=cg, pid=pid, ppid=ppid, uid=uid,
                   comm=comm.split(b"\0", 1)[0].decode(errors="replace"),
                   filename=filename.split(b"\0", 1)[0].decode(errors="replace"))


class ProcessCollector(Collector):
    name = "process"
    object_name = "process.bpf.o"
    help = "exec/fork/exit counts and exec events"
    variants = {
        "tp_btf": Variant("tp_btf", ("btf_exec", "btf_fork", "btf_exit")),
        "raw_tp": Variant("raw_tp", ("raw_exec", "raw_fork", "raw_exit")),
    }
    pin_maps = ("process_counts",)

    def __init__(self, cfg: dict, env: Any):
        super().__init__(cfg, env)
        self.transport = "off"
        self.events_note = ""
        self.consumed = 0
        self.recent: Deque[ExecEvent] = collections.deque(maxlen=max(int(cfg.get("keep_events", 64)), 1))
        self._reader: Any = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._batch = 0
        self._batch_limit = 4096

    def configure(self, spec: Any, variant: Variant) -> None:
        super().configure(spec, variant)
        want = self.cfg.get("events", "auto")
        self.transport, self.events_note = "off", ""
        if want == "off":
            self.set_var(spec, "emit_events", 0)
            self.events_note = "exec events off (config)"
        else:
            try:
                from pybpf import ringbuf
            except ImportError as e:
                ringbuf = None
                self.events_note = f"exec events disabled: pybpf.ringbuf is not available ({e})"
            if ringbuf is not None:
                perf = self.env.cfg["performance"]
                spec.maps["events"].max_entries = perf["ringbuf_size"]
                force = {"ringbuf": True, "perf": False}.get(want)
                use_ring = ringbuf.prepare_events(spec, "events", "events_perf", have_ringbuf=force,
                                                  flag="use_ringbuf")
                self.transport = "ringbuf" if use_ring else "perf"
                self.set_var(spec, "emit_events", 1)
            else:
                self.set_var(spec, "emit_events", 0)
        if spec.maps["events_perf"].max_entries == 0:
            spec.maps["events_perf"].max_entries = 1   # unused placeholder (perf path sized per CPU)

    def after_load(self, coll: Any) -> None:
        if self.transport == "off":
            return
        from pybpf import ringbuf
        self._reader = ringbuf.open_events(coll, "events", "events_perf", self._on_event,
                                           have_ringbuf=self.transport == "ringbuf")
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="pybpf-agent-process-events",
                                        daemon=True)
        self._thread.start()

    def _on_event(self, buf: memoryview, offset: int, size: int) -> bool:
        """Ring/perf buffer callback; returning True ends this poll's batch
        (performance.max_events_per_poll), the rest is read on the next poll."""
        if size < _EVENT.size:
            return False
        ev = ExecEvent.decode(buf, offset, size)
        self.consumed += 1
        self._batch += 1
        self.recent.append(ev)
        if self.cfg.get("log_events"):
            log.info("exec %s", json.dumps(ev, sort_keys=True), extra={"event": dict(ev)})
        return self._batch >= self._batch_limit

    def _poll(self) -> None:
        perf = self.env.cfg["performance"]
        timeout = float(perf["poll_timeout"])
        self._batch_limit = int(perf["max_events_per_poll"])
        reader = self._reader
        while not self._stop.is_set():
            self._batch = 0
            try:
                reader.poll(timeout)
            except Exception as e:   # reader closed under us, or a kernel error
                if not self._stop.is_set():
                    log.warning("process collector: event poll failed: %s", e)
                return

    def stop(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout=2)
        r, self._reader = self._reader, None
        if r is not None:
            r.close()
        super().stop()

    def read(self, coll: Any) -> List[Metric]:
        v = read_percpu_array(coll.maps["process_counts"], 5)
        execs = Metric("counter", "process_execs", "Successful execve/execveat calls.", ())
        execs.samples[()] = float(v[CNT_EXEC])
        forks = Metric("counter", "process_forks", "New processes (fork/clone without CLONE_THREAD).", ())
        forks.samples[()] = float(v[CNT_FORK])
        threads = Metric("counter", "process_threads_created", "New threads (clone with CLONE_THREAD).", ())
        threads.samples[()] = float(v[CNT_THREAD])
        exits = Metric("counter", "process_exits", "Process exits, by whether a signal ended it.",
                       ("signaled",))
        exits.samples[("true",)] = float(v[CNT_EXIT_SIGNALED])
        exits.samples[("false",)] = float(v[CNT_EXIT] - v[CNT_EXIT_SIGNALED])
        return [execs, forks, threads, exits]

    def self_metrics(self) -> Dict[str, float]:
        out = super().self_metrics()
        if self.transport != "off":
            out["events_consumed"] = float(self.consumed)
        return out
