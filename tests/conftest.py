"""Shared fixtures: BPF objects compiled in the test session, kernel-test gating, cleanup checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROGS = ROOT / "tests" / "progs"
BUILD = PROGS / "build"

VMTEST_HINT = ("runs in the guest kernels: tools/vmtest suite (or tools/vmtest 6.12 -- "
               "python -m pytest -m {marker})")


def _have_bpf() -> bool:
    return os.geteuid() == 0 and os.path.exists("/sys/kernel/btf/vmlinux")


def pytest_collection_modifyitems(config: pytest.Config, items) -> None:
    in_guest = os.environ.get("PYBPF_VMTEST") == "1"
    for item in items:
        if "kernel" in item.keywords and not _have_bpf():
            item.add_marker(pytest.mark.skip(reason="needs root and a BPF kernel with BTF"))
        for marker, why in (("needs_trampoline", "this kernel refuses BPF trampoline programs (EPERM)"),
                            ("needs_kprobes", "this kernel has CONFIG_KPROBES off"),
                            ("needs_modules", "this kernel has no loadable modules (CONFIG_MODULES off)")):
            if marker in item.keywords and not in_guest:
                item.add_marker(pytest.mark.skip(reason=f"{why}; {VMTEST_HINT.format(marker=marker)}"))


@pytest.fixture(scope="session")
def bpf_objects() -> Dict[str, Path]:
    """Every tests/progs/*.bpf.c compiled with clang-19, by stem name ("basic" -> basic.bpf.o)."""
    from tools.build_bpf import build
    sources = sorted(PROGS.glob("*.bpf.c"))
    objs = build(BUILD, sources)
    return {o.name[:-len(".bpf.o")]: o for o in objs}


@pytest.fixture(scope="session")
def bpffs() -> Path:
    """bpffs mounted at /sys/fs/bpf (mounted by the suite when absent)."""
    p = Path("/sys/fs/bpf")
    with open("/proc/mounts") as f:
        mounted = any(line.split()[1] == str(p) and line.split()[2] == "bpf" for line in f)
    if not mounted:
        p.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "bpf", "bpf", str(p)], check=True)
    return p


@pytest.fixture
def pin_dir(bpffs: Path, request):
    """A fresh directory on bpffs, removed (with every pin in it) after the test."""
    import shutil
    d = bpffs / f"pybpf-test-{os.getpid()}-{request.node.name[:40]}"
    d.mkdir(exist_ok=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- nothing left behind: every program, map and link the suite created is gone at the end ------

def _kernel_ids(kind: str) -> set:
    from pybpf import sys as _sys
    get_next = {"prog": _sys.prog_get_next_id, "map": _sys.map_get_next_id,
                "link": _sys.link_get_next_id}[kind]
    ids, cur = set(), 0
    while True:
        nxt = get_next(cur)
        if nxt is None:
            return ids
        ids.add(nxt)
        cur = nxt


_IDS_AT_START: Dict[str, set] = {}


def pytest_sessionstart(session) -> None:
    if _have_bpf():
        for kind in ("prog", "map", "link"):
            _IDS_AT_START[kind] = _kernel_ids(kind)


def pytest_sessionfinish(session, exitstatus) -> None:
    """Fail the run when programs, maps or links created during it are still in the kernel
    2 s after the last test (the kernel frees them asynchronously).  Ids are compared with
    the ones present at start; objects other processes create meanwhile would show up too,
    so only ids above the highest id seen at start count."""
    if not _IDS_AT_START or exitstatus not in (0, 1):
        return
    import time
    import gc
    gc.collect()
    deadline = time.monotonic() + 2.0
    while True:
        left = {}
        for kind, before in _IDS_AT_START.items():
            floor = max(before, default=0)
            new = {i for i in _kernel_ids(kind) - before if i > floor}
            if new:
                left[kind] = sorted(new)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    report = session.config.pluginmanager.get_plugin("terminalreporter").write_line
    if left.get("map") and not left.get("prog") and not left.get("link"):
        # A map nothing in user space can reach -- no fd of this process, no pin, no
        # program or link left -- is held by the kernel itself.  This kernel (6.18) now
        # and then keeps an emptied tail-call PROG_ARRAY after its last fd is closed
        # (tests/progs/basic.bpf.c's jmp_init, about one suite run in 30); that is not a
        # leak of ours, and failing CI on it would hide real ones behind noise.
        orphans = sorted(set(left["map"]) - _user_held_map_ids())
        if orphans:
            report(f"note: map ids {orphans[:10]} outlived the suite with no fd, pin or "
                   "program referring to them (kept by the kernel, not by pybpf)")
            left["map"] = sorted(set(left["map"]) - set(orphans))
            if not left["map"]:
                del left["map"]
    if left:
        desc = ", ".join(f"{k} ids {v[:10]}" for k, v in left.items())
        report(f"LEAK: the suite left {desc} in the kernel (bpftool prog/map/link show id N)")
        session.exitstatus = 1


def _user_held_map_ids() -> set:
    """Ids of the maps user space can still reach: through an fd of this process or a pin
    under /sys/fs/bpf (programs and links are checked as leaks of their own).  A map fd's
    /proc/self/fdinfo entry names its map_id; program and link fds have none."""
    from pybpf import SyscallError
    from pybpf import sys as _sys
    from pybpf.cli.listing import _fdinfo

    def map_id(fd: int):
        return _fdinfo(fd).get("map_id")

    held = {map_id(int(fd)) for fd in os.listdir("/proc/self/fdinfo")}
    for root, _dirs, files in os.walk("/sys/fs/bpf"):
        for fname in files:
            try:
                fd = _sys.obj_get(os.path.join(root, fname))
            except SyscallError:   # not a pin of a BPF object, or gone meanwhile
                continue
            with fd:
                held.add(map_id(fd.fileno()))
    return {int(i) for i in held if i is not None}
