"""End to end: the agent as a subprocess, scraped by a real Prometheus, queried with PromQL.

The agent is started as ``python -m pybpf_agent`` -- what the README's
``bash tools/run-agent`` execs after its setup step (setup is skipped here: it
is what this test session already ran) -- with a loopback ``--listen`` and
``--scope-cgroup`` passed through.  Prometheus is Debian's ``prometheus``
package (tools/setup-env installs it), started on a loopback port with a
generated config (scrape interval 1 s) and a throwaway storage directory.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import socket
import subprocess
import time
import urllib.parse

import pytest

from .agentproc import AgentProcess, free_port, get
from .conftest import direct_writes, run_in_cgroup, syscall_loop

pytestmark = pytest.mark.kernel

SYS_getpid = 39 if os.uname().machine == "x86_64" else 172
PROMETHEUS = shutil.which("prometheus")


@pytest.fixture
def prometheus(tmp_path):
    """start(target) -> query(promql) function; Prometheus is stopped after the test."""
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus; tools/setup-env does)")
    procs = []

    def start(target: str):
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                       "scrape_configs:\n  - job_name: pybpf\n    scrape_interval: 1s\n"
                       f"    static_configs:\n      - targets: ['{target}']\n")
        p = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                              f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if get(base + "/-/ready", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if p.poll() is not None:
                raise AssertionError(f"prometheus exited: {p.stderr.read()}")
            time.sleep(0.1)

        def query(q: str) -> dict:
            code, body = get(f"{base}/api/v1/query?query={urllib.parse.quote(q)}")
            doc = json.loads(body)
            assert code == 200 and doc["status"] == "success", body
            return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1])
                    for r in doc["data"]["result"]}
        return query

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_value(query, q: str, check, timeout: float = 15.0) -> float:
    """Poll PromQL ``q`` (a single-series result) until ``check(value)``; return the value."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        res = query(q)
        if len(res) == 1:
            last = next(iter(res.values()))
            if check(last):
                return last
        time.sleep(0.25)
    raise AssertionError(f"{q}: last value {last!r}")


def test_prometheus_scrapes_every_collector(agent_objects, prometheus, cgroup, loop_device):
    env = {"PYBPF_AGENT__COLLECTORS__NETWORK__INTERFACES": "[lo]",
           "PYBPF_AGENT__COLLECTORS__BLOCK__DEVICES": f"[{loop_device}]"}
    with AgentProcess("--scope-cgroup", cgroup, env=env) as agent:
        agent.wait_ready()
        query = prometheus(f"127.0.0.1:{agent.port}")
        wait_value(query, 'count(pybpf_agent_collector_up == 1)', lambda v: v == 8)
        n = 2000

        def work():
            syscall_loop(SYS_getpid, n)()
            for _ in range(3):                         # process: 3 execs
                pid = os.fork()
                if pid == 0:
                    os.execv("/bin/true", ["true"])
                os.waitpid(pid, 0)
            srv = socket.socket()                      # tcp: 4 connections over lo
            srv.bind(("127.0.0.1", 0))
            srv.listen(8)
            for _ in range(4):
                c = socket.create_connection(srv.getsockname())
                a, _ = srv.accept()
                a.sendall(b"hello")
                c.recv(5)
                c.close()
                a.close()
            srv.close()
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # drops: 7 to a closed port
            for _ in range(7):
                u.sendto(b"x", ("127.0.0.1", 9))
            u.close()
            m = mmap.mmap(-1, 1024 * 4096)             # memory: >= 1024 page faults
            for i in range(0, 1024 * 4096, 4096):
                m[i] = 1
            m.close()
            for _ in range(20):                        # sched: wakeups
                time.sleep(0.001)

        run_in_cgroup(cgroup, work)
        direct_writes(loop_device, 10)                 # block: not scoped by cgroup, by device
        wait_value(query, 'pybpf_syscalls_total{syscall="getpid"}', lambda v: v == n)
        wait_value(query, 'pybpf_process_execs_total', lambda v: v == 3)
        wait_value(query, 'pybpf_tcp_connections_opened_total{direction="active"}', lambda v: v == 4)
        wait_value(query, 'pybpf_tcp_state_transitions_total{old_state="SYN_RECV",new_state="ESTABLISHED"}',
                   lambda v: v == 4)
        wait_value(query, 'pybpf_tcp_connect_latency_seconds_count', lambda v: v == 4)
        wait_value(query, 'pybpf_skb_drops_total{reason="NO_SOCKET",protocol="udp"}', lambda v: v == 7)
        wait_value(query, 'pybpf_page_faults_total', lambda v: v >= 1024)
        wait_value(query, 'pybpf_sched_runqueue_latency_seconds_count', lambda v: v >= 20)
        wait_value(query, 'histogram_quantile(0.5, pybpf_sched_runqueue_latency_seconds_bucket)',
                   lambda v: 0 < v < 1)
        # network (interface lo; packets are not scoped by cgroup): the TCP traffic above
        wait_value(query, 'sum(pybpf_network_packets_total{device="lo",protocol="tcp"})', lambda v: v >= 40)
        wait_value(query, f'pybpf_block_io_requests_total{{device="{loop_device}",operation="write"}}',
                   lambda v: v == 10)
        wait_value(query, f'pybpf_block_io_latency_seconds_count{{device="{loop_device}",operation="write"}}',
                   lambda v: v == 10)
        wait_value(query, 'pybpf_agent_start_to_ready_seconds', lambda v: 0 < v < 30)
        assert agent.stop()[0] == 0
