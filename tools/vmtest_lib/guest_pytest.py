"""pytest plugin for runs inside a vmtest guest (``-p tools.vmtest_lib.guest_pytest``).

tools/vmtest puts it in ``PYTEST_ADDOPTS`` of the guest command, so any
``python -m pytest ...`` run in a guest gets it.  It does two things:

- **Host-built BPF objects.**  tests/conftest.py builds ``tests/progs/*.bpf.c``
  with ``tools.build_bpf.build``, which regenerates ``vmlinux.h`` whenever the
  running kernel's BTF differs from the one it was made from -- always, in a
  guest -- and then recompiles every object with clang: minutes under TCG, and
  not what a CO-RE object is for.  In the guest ``build`` is replaced by a lookup
  of the objects tools/vmtest built on the host before booting; a missing or stale
  object is an error saying how to build it.
- **Results for the host.**  Each test's outcome (and skip reason) is written to
  ``$PYBPF_VMTEST_OUT/pytest-<pid>.json`` so ``tools/vmtest suite`` can print its
  per-kernel summary line after the guest is gone.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List

import pytest

IN_GUEST = os.environ.get("PYBPF_VMTEST") == "1"


def prebuilt_objects(out_dir: Path, sources: Iterable[Path], extra_cflags: Iterable[str] = ()) -> List[Path]:
    """``tools.build_bpf.build`` for guests: the objects the host built, checked to be current."""
    objs, problems = [], []
    for src in map(Path, sources):
        obj = Path(out_dir) / (src.name[:-2] + ".o" if src.name.endswith(".c") else src.name + ".o")
        if not obj.exists():
            problems.append(f"{obj} is missing")
        elif obj.stat().st_mtime < src.stat().st_mtime:
            problems.append(f"{obj} is older than {src}")
        objs.append(obj)
    if problems:
        pytest.fail("BPF objects are built on the host before the guest boots (tools/vmtest does it "
                    "unless --no-build): " + "; ".join(problems), pytrace=False)
    return objs


if IN_GUEST:
    import tools.build_bpf as _build_bpf

    _build_bpf.build = prebuilt_objects


class _Recorder:
    """Collects one outcome per test (the worst of setup/call/teardown) and skip reasons."""

    def __init__(self) -> None:
        self.outcomes: Dict[str, str] = {}
        self.skips: Dict[str, str] = {}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        if report.failed:
            self.outcomes[nodeid] = "failed"
        elif report.skipped and self.outcomes.get(nodeid) != "failed":
            self.outcomes[nodeid] = "skipped"
            self.skips[nodeid] = _skip_reason(report)
        elif report.when == "call" and report.passed and nodeid not in self.outcomes:
            self.outcomes[nodeid] = "passed"

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        out = os.environ.get("PYBPF_VMTEST_OUT")
        if not out or not os.path.isdir(out):
            return
        counts = Counter(self.outcomes.values())
        doc = {
            "kernel": os.environ.get("PYBPF_VMTEST_KERNEL", ""),
            "release": os.uname().release,
            "exitstatus": int(exitstatus),
            "passed": counts["passed"], "failed": counts["failed"], "skipped": counts["skipped"],
            "skip_reasons": dict(Counter(self.skips.values()).most_common()),
            "failures": sorted(n for n, o in self.outcomes.items() if o == "failed"),
        }
        with open(os.path.join(out, f"pytest-{os.getpid()}.json"), "w") as f:
            json.dump(doc, f, indent=1)


def _skip_reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return f"xfail: {report.wasxfail}" if report.wasxfail else "xfail"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
    return str(longrepr)


def pytest_configure(config: pytest.Config) -> None:
    if IN_GUEST:
        config.pluginmanager.register(_Recorder(), "vmtest-recorder")
