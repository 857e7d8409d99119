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
                            ("needs_kprobes", "this kernel has CONFIG_KPROBES off")):
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
