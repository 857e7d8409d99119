"""Run the agent as a subprocess (``python -m pybpf_agent``) and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url: str, timeout: float = 5.0) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class AgentProcess:
    """``python -m pybpf_agent --listen 127.0.0.1:PORT [args]`` with helpers."""

    def __init__(self, *args: str, env: Optional[Dict[str, str]] = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        e = dict(os.environ)
        e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "agent"), str(ROOT), e.get("PYTHONPATH", "")])
        e.update(env or {})
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "pybpf_agent", "--listen",
                                      f"127.0.0.1:{self.port}", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=e, cwd=str(ROOT))

    def wait_ready(self, timeout: float = 20.0) -> float:
        """Seconds from spawn to /readyz 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.proc.stdout.read()}")
            try:
                code, _ = get(self.url + "/readyz", timeout=1)
                if code == 200:
                    return time.monotonic() - self.t0
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.02)
        raise AssertionError("agent not ready in time")

    def readyz(self) -> dict:
        return json.loads(get(self.url + "/readyz")[1])

    def metrics(self) -> str:
        code, text = get(self.url + "/metrics")
        assert code == 200, text
        return text

    def samples(self) -> Dict[str, float]:
        """'name{labels}' -> value, parsed with prometheus_client's parser."""
        from prometheus_client.parser import text_string_to_metric_families
        out: Dict[str, float] = {}
        for fam in text_string_to_metric_families(self.metrics()):
            for s in fam.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> Tuple[int, float, str]:
        t = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.proc.returncode, time.monotonic() - t, out

    def __enter__(self) -> "AgentProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()
