"""Fixtures for the agent tests: the agent's BPF objects, throwaway cgroups, workloads
run inside them, and collectors started against the real kernel."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
AGENT_BPF = ROOT / "agent" / "pybpf_agent" / "bpf"
if str(ROOT / "agent") not in sys.path:   # importable without `pip install -e .` too
    sys.path.insert(0, str(ROOT / "agent"))

pytest.importorskip("prometheus_client")


@pytest.fixture(scope="session")
def agent_objects() -> List[Path]:
    """programs/*.bpf.c built into the package (only when out of date), as setup-env does."""
    from tools.build_bpf import build
    return build(AGENT_BPF, sorted((ROOT / "programs").glob("*.bpf.c")))


def cgroup2_root() -> str:
    from pybpf_agent.cgroups import cgroup2_mount
    mount = cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    return mount


@pytest.fixture
def cgroup() -> Iterator[str]:
    """A fresh cgroup v2 directory; processes left in it are killed, then it is removed."""
    path = os.path.join(cgroup2_root(), f"pybpf-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        for _ in range(50):
            try:
                with open(os.path.join(path, "cgroup.procs")) as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                pids = []
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.02)


def run_in_cgroup(cg: str, work: Callable[[], None], *, exit_code: int = 0) -> int:
    """Fork a child that joins cgroup ``cg``, runs ``work()`` and exits; returns its wait status.

    The child leaves through os._exit: no interpreter teardown noise in the counts.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child
        try:
            os.close(r)
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            os.close(w)
            work()
            os._exit(exit_code)
        except BaseException:
            os._exit(99)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status


LIBC = ctypes.CDLL(None, use_errno=True)


def syscall_loop(nr: int, n: int) -> Callable[[], None]:
    def work() -> None:
        sc = LIBC.syscall
        for _ in range(n):
            sc(nr)
    return work


def make_config(**overrides: Any) -> dict:
    from pybpf_agent.config import load_config
    return load_config(environ={}, overrides=overrides)


class Running:
    """A started collector plus helpers to read one value."""

    def __init__(self, collector: Any):
        self.c = collector

    def metrics(self) -> Dict[str, Any]:
        self.c._cache = None
        return {m.name: m for m in self.c.metrics()}

    def value(self, name: str, labels: tuple = ()) -> float:
        m = self.metrics().get(name)
        if m is None:
            return 0.0
        v = m.samples.get(labels, 0.0)
        return v.count if hasattr(v, "count") else float(v)


@pytest.fixture
def start_collector(agent_objects) -> Iterator[Callable[..., Running]]:
    """start_collector(name, **config overrides) -> Running; stopped after the test."""
    from pybpf_agent.collectors import COLLECTORS
    from pybpf_agent.collectors.base import Env
    started: List[Any] = []

    def start(name: str, **overrides: Any) -> Running:
        cfg = make_config(**{f"collectors.{name}.{k}" if "." not in k else k: v
                             for k, v in overrides.items()})
        from pybpf_agent.agent import check_collectors
        check_collectors(cfg)
        c = COLLECTORS[name](cfg["collectors"][name], Env(cfg))
        started.append(c)
        c.start()
        return Running(c)

    yield start
    for c in started:
        c.stop()


@pytest.fixture
def loop_device(tmp_path) -> Iterator[str]:
    """An 8 MiB loop device with direct I/O (name like ``loop3``), detached after the test."""
    import shutil
    import subprocess
    if shutil.which("losetup") is None:
        pytest.skip("losetup not installed")
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    r = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(img)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot set up a loop device: {r.stderr.strip()}")
    dev = r.stdout.strip()
    try:
        yield os.path.basename(dev)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def direct_writes(dev: str, n: int) -> None:
    """``n`` 4 KiB O_DIRECT writes to /dev/<dev>."""
    import mmap
    fd = os.open(f"/dev/{dev}", os.O_WRONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)
    try:
        for i in range(n):
            os.pwrite(fd, buf, i * 4096)
    finally:
        os.close(fd)
