"""The agent process: ready, endpoints, a broken collector beside working ones, SIGTERM,
SIGHUP reload without losing counters, pinned maps across a restart."""

from __future__ import annotations

import os
import signal
import time

import pytest

from .agentproc import AgentProcess, get
from .conftest import run_in_cgroup, syscall_loop

pytestmark = pytest.mark.kernel

SYS_getpid = 39 if os.uname().machine == "x86_64" else 172


def test_default_config_serves_and_stops_within_a_second(agent_objects):
    with AgentProcess() as a:
        ready = a.wait_ready()
        assert ready < 10
        assert get(a.url + "/healthz")[0] == 200
        s = a.samples()
        for c in ("syscalls", "process", "sched", "block", "tcp", "network", "drops", "memory"):
            assert any(k.startswith("pybpf_agent_collector_up{") and f'collector="{c}"' in k and v == 1
                       for k, v in s.items()), c
        assert s['pybpf_agent_collector_info{collector="user",hook="",reason="no user programs configured",state="disabled"}'] == 1
        assert s["pybpf_agent_resident_memory_bytes{}"] > 0
        code, took, out = a.stop(signal.SIGTERM)
        assert code == 0, out
        assert took < 1.0, f"shutdown took {took:.2f}s"


def test_broken_collector_leaves_others_running(agent_objects, tmp_path, cgroup):
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("collectors:\n"
                   "  tcp:\n    hooks: [raw_tp/pybpf_no_such_tracepoint]\n"
                   "  process: {enabled: false}\n  sched: {enabled: false}\n  block: {enabled: false}\n"
                   "  network: {enabled: false}\n  drops: {enabled: false}\n  memory: {enabled: false}\n")
    with AgentProcess("--config", str(cfg), "--scope-cgroup", cgroup) as a:
        a.wait_ready()
        r = a.readyz()
        assert r["ready"] is True
        assert r["collectors"]["tcp"]["state"] == "down"
        assert "pybpf_no_such_tracepoint" in r["collectors"]["tcp"]["reason"]
        assert r["collectors"]["syscalls"]["state"] == "up"
        run_in_cgroup(cgroup, syscall_loop(SYS_getpid, 1000))
        s = a.samples()
        assert s['pybpf_syscalls_total{syscall="getpid"}'] == 1000
        assert s['pybpf_agent_collector_up{collector="tcp",hook=""}'] == 0
        info = [k for k in s if k.startswith("pybpf_agent_collector_info{") and 'collector="tcp"' in k]
        assert len(info) == 1 and "pybpf_no_such_tracepoint" in info[0] and 'state="down"' in info[0]
        assert a.stop()[0] == 0


def test_sighup_reload_keeps_counters(agent_objects, tmp_path, cgroup):
    cfg = tmp_path / "agent.yaml"
    only_syscalls = ("collectors:\n  process: {enabled: false}\n  sched: {enabled: false}\n"
                     "  block: {enabled: false}\n  tcp: {enabled: false}\n  network: {enabled: false}\n"
                     "  drops: {enabled: false}\n  memory: {enabled: false}\n")
    cfg.write_text(only_syscalls + "  syscalls:\n    top_processes: 5\n")
    with AgentProcess("--config", str(cfg), "--scope-cgroup", cgroup) as a:
        a.wait_ready()
        run_in_cgroup(cgroup, syscall_loop(SYS_getpid, 300))
        assert a.samples()['pybpf_syscalls_total{syscall="getpid"}'] == 300
        # change the syscalls collector (it is restarted) and enable memory
        cfg.write_text(only_syscalls.replace("memory: {enabled: false}", "memory: {enabled: true}")
                       + "  syscalls:\n    top_processes: 3\n")
        a.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline:
            s = a.samples()
            if s.get('pybpf_agent_config_reloads_total{result="success"}') == 1 and \
                    s.get('pybpf_agent_collector_up{collector="memory",hook="tp_btf"}') == 1:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("reload not seen")
        assert s['pybpf_syscalls_total{syscall="getpid"}'] == 300     # carried over
        run_in_cgroup(cgroup, syscall_loop(SYS_getpid, 200))
        assert a.samples()['pybpf_syscalls_total{syscall="getpid"}'] == 500
        # a broken config is refused and the running one kept
        cfg.write_text("collectors: {syscalls: {sampling: 0}}\n")
        a.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and \
                a.samples().get('pybpf_agent_config_reloads_total{result="failure"}') != 1:
            time.sleep(0.1)
        assert a.samples()['pybpf_syscalls_total{syscall="getpid"}'] == 500
        assert a.stop()[0] == 0


def test_pinned_counters_survive_restart(agent_objects, tmp_path, cgroup, bpffs):
    import shutil
    pin = bpffs / f"pybpf-agent-test-{os.getpid()}"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"pin_root: {pin}\ncollectors:\n  process: {{enabled: false}}\n  sched: {{enabled: false}}\n"
                   "  block: {enabled: false}\n  tcp: {enabled: false}\n  network: {enabled: false}\n"
                   "  drops: {enabled: false}\n  memory: {enabled: false}\n")
    try:
        for round_ in (1, 2):
            with AgentProcess("--config", str(cfg), "--scope-cgroup", cgroup) as a:
                a.wait_ready()
                run_in_cgroup(cgroup, syscall_loop(SYS_getpid, 100))
                assert a.samples()['pybpf_syscalls_total{syscall="getpid"}'] == 100 * round_
                assert a.stop()[0] == 0
        assert (pin / "syscalls" / "syscall_counts").exists()
    finally:
        shutil.rmtree(pin, ignore_errors=True)


def test_runtime_failure_restarts_with_backoff_and_keeps_counts(agent_objects, cgroup):
    from pybpf_agent.agent import Agent
    from .conftest import make_config
    overrides = {f"collectors.{n}.enabled": False for n in
                 ("process", "sched", "block", "tcp", "network", "drops", "memory")}
    overrides.update({"scope.cgroup": cgroup, "restart.initial_backoff": 0.05,
                      "restart.max_backoff": 0.2})
    agent = Agent(make_config(**overrides))
    agent.build()
    agent.start_collectors()
    agent.ready_seconds = 0.0
    try:
        run_in_cgroup(cgroup, syscall_loop(SYS_getpid, 70))

        def getpid_total():
            for m in agent.exporter.collector_metrics(agent.collectors["syscalls"]):
                if m.name == "syscalls":
                    return m.samples.get(("getpid",), 0.0)
            return None
        assert getpid_total() == 70
        agent.collectors["syscalls"].coll.maps["syscall_counts"].close()   # reads now fail
        assert getpid_total() is None
        c = agent.collectors["syscalls"]
        assert c.state == "down" and "failed at run time" in c.reason
        assert agent.ready()[0] is True          # a down collector does not block readiness
        time.sleep(0.1)
        agent._restart_due()
        assert agent.collectors["syscalls"].state == "up" and agent.restarts["syscalls"] == 1
        run_in_cgroup(cgroup, syscall_loop(SYS_getpid, 30))
        assert getpid_total() == 100             # 70 carried over + 30 counted by the new instance
    finally:
        agent.shutdown()
