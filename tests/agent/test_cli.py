"""The command line: bad configurations exit non-zero with one line naming the problem;
--check-config, --version, --print-default-config, --probe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .agentproc import ROOT


def run(*args: str, env=None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "agent"), str(ROOT)])
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pybpf_agent", *args], capture_output=True,
                          text=True, env=e, cwd=str(ROOT), timeout=60)


@pytest.mark.parametrize("text, expect", [
    ("collectors:\n  sycalls: {}\n", "collectors.sycalls: unknown key"),
    ("collectors:\n  syscalls:\n    enabled: maybe\n", "collectors.syscalls.enabled: 'maybe' is not allowed"),
    ("listen: 127.0.0.1:99999\n", "listen: '127.0.0.1:99999' is not allowed (port 99999 is out of range"),
    ("collectors:\n  syscalls:\n    hooks: [kprobe]\n", "collectors.syscalls.hooks[0]: 'kprobe' is not allowed"),
])
def test_bad_config_file_exits_nonzero_with_one_line(tmp_path, text, expect):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    for args in (["--check-config"], []):   # the same failure when starting for real
        r = run("--config", str(cfg), *args)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and expect in lines[0], r.stderr


def test_missing_config_file():
    r = run("--config", "/nonexistent/agent.yaml")
    assert r.returncode == 2
    assert r.stderr.strip() == "pybpf-agent: config error: /nonexistent/agent.yaml: config file not found"


def test_bad_listen_flag_and_env():
    r = run("--listen", "localhost:0x10", "--check-config")
    assert r.returncode == 2 and "listen:" in r.stderr and "not a number" in r.stderr
    r = run("--check-config", env={"PYBPF_AGENT__COLLECTORS__TCP__SAMPLING": "-1"})
    assert r.returncode == 2 and "collectors.tcp.sampling: -1 is not allowed" in r.stderr


def test_check_config_ok_and_version(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("collectors:\n  syscalls:\n    sampling: 8\n")
    r = run("--config", str(cfg), "--check-config")
    assert r.returncode == 0 and "configuration OK" in r.stdout
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("pybpf-agent ")
    r = run("--print-default-config")
    assert r.returncode == 0 and "collectors:" in r.stdout


@pytest.mark.kernel
def test_probe_prints_plan(agent_objects):
    r = run("--probe", env={"PYBPF_AGENT__COLLECTORS__TCP__HOOKS": "[raw_tp/pybpf_nope]"})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Kernel features" in out and "ringbuf" in out
    lines = {l.split()[0]: l for l in out.splitlines() if l.strip()}
    assert "raw_tp" in lines["syscalls"] and " up " in lines["syscalls"]
    assert " down " in lines["tcp"] and "pybpf_nope" in lines["tcp"]


@pytest.mark.kernel
def test_top_prints_tables_and_histograms(agent_objects):
    r = run("top", "--interval", "0.5", "--count", "1", "--top", "3")
    assert r.returncode == 0, r.stderr
    assert "SYSCALL" in r.stdout and "CALLS/s" in r.stdout and "run-queue latency" in r.stdout
    assert "|" in r.stdout and "\x1b[" not in r.stdout   # bars; no escapes when not a terminal


def test_log2_bars():
    from pybpf_agent.metrics import Histogram
    from pybpf_agent.top import log2_bars
    rows = log2_bars(Histogram([(1e-6, 0.0), (2e-6, 4.0), (4e-6, 6.0)], 1e-5, 6.0), width=10)
    assert rows[2].strip().startswith("1us -> 2us : 4") and rows[2].endswith("|**********|")
    assert rows[3].strip().startswith("2us -> 4us : 2") and rows[3].endswith("|*****     |")
