"""Fixtures and the end-of-run report of the guest-kernel compatibility smoke test (tests/vm/).

The smoke test records, per program, how loading and attaching went, and the
feature probes of the kernel; ``pytest_terminal_summary`` prints both, so the CI
log shows, per guest kernel, what loads, what attaches and what the kernel lacks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

_REPORT = pytest.StashKey[Dict[str, Any]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vmtest: runs only inside a tools/vmtest guest kernel "
                                       "(compatibility smoke test)")


@pytest.fixture(scope="session")
def smoke_report(pytestconfig: pytest.Config) -> Dict[str, Any]:
    """Where the smoke tests leave their findings for the terminal summary."""
    return pytestconfig.stash.setdefault(_REPORT, {"programs": [], "features": None})


@pytest.fixture(scope="session")
def smoke_cgroup() -> Iterator[Path]:
    """A fresh cgroup v2 directory to attach cgroup programs to (removed afterwards)."""
    path = Path("/sys/fs/cgroup") / f"pybpf-smoke-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        path.rmdir()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT, None)
    if not report:
        return
    tr = terminalreporter
    release = os.uname().release
    if report["programs"]:
        tr.section(f"compatibility smoke test on {release}", sep="-")
        for line in _program_lines(report["programs"]):
            tr.write_line(line)
    if report["features"]:
        tr.section(f"feature probes on {release}", sep="-")
        for line in report["features"]:
            tr.write_line(line)


def _program_lines(outcomes: List[Any]) -> List[str]:
    by_object: Dict[str, List[Any]] = {}
    for o in outcomes:
        by_object.setdefault(o.obj, []).append(o)
    lines = []
    for obj, progs in by_object.items():
        counts: Dict[str, int] = {}
        for o in progs:
            for state in (o.load, o.attach):
                if state:
                    counts[state] = counts.get(state, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        lines.append(f"{obj}: {len(progs)} programs: {summary}")
        for o in progs:
            if o.detail:
                lines.append(f"    {o.program} ({o.kind}): {o.load}"
                             f"{'/' + o.attach if o.attach else ''}: {o.detail}")
    return lines
