"""``tools/vmtest suite``: the CI's guest test set on each kernel, with per-kernel summary lines.

In each guest one pytest process runs what the host cannot: the tests marked
``needs_trampoline`` or ``needs_kprobes`` (tests/conftest.py skips them on the host)
and the compatibility smoke test (tests/vm/, marker ``vmtest``).  Only the test
files that mention one of those markers are handed to pytest: importing every test
module under TCG would cost more than the tests.  Guests run one after the other
(the machine has 2 cores; each guest has 2 vCPUs).

At the end, one line per kernel says how many tests ran, passed, failed and were
skipped (with each skip reason), a table shows the feature probes that differ
between the kernels, and a last ``vmtest: N passed, N failed, N skipped`` line
sums up.  The exit status is 0 only when every guest's pytest exited 0.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from . import kernels, runner

MARKERS = ("needs_trampoline", "needs_kprobes", "needs_modules", "vmtest")
MARK_EXPR = " or ".join(MARKERS)
HANG_DUMP = 300   # seconds; a whole guest run takes 100-150 s under TCG


def guest_test_files(root: Path) -> List[str]:
    """Test files (relative to ROOT) that use one of MARKERS, found by a text search."""
    pattern = re.compile(r"\b(?:pytest\.)?mark\.(?:" + "|".join(MARKERS) + r")\b")
    files = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        try:
            if pattern.search(path.read_text(errors="replace")):
                files.append(str(path.relative_to(root)))
        except OSError:
            continue
    return files


def guest_command(root: Path) -> List[str]:
    venv = root / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else "python3"
    # A test still running after HANG_DUMP seconds gets every thread's traceback dumped
    # to the console (pytest's faulthandler): a guest that hangs then says where.
    return [python, "-m", "pytest", "-q", "-rfEs", "-o", f"faulthandler_timeout={HANG_DUMP}",
            "-m", MARK_EXPR, *guest_test_files(root)]


class KernelRun:
    """One kernel's result: the runner's, plus what the guest pytest plugin recorded."""

    def __init__(self, series: str, release: str, result: Optional[runner.Result], error: str = ""):
        self.series = series
        self.release = release
        self.result = result
        self.error = error
        self.pytest: Dict[str, Any] = {}
        self.features: Dict[str, Any] = {}
        if result is not None:
            for name, data in sorted(result.outputs.items()):
                try:
                    doc = json.loads(data)
                except ValueError:
                    continue
                if name.startswith("pytest-"):
                    self.pytest = _merge(self.pytest, doc)
                elif name == "features.json":
                    self.features = doc

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.status == 0 and bool(self.pytest) \
            and self.pytest.get("passed", 0) + self.pytest.get("failed", 0) > 0

    def summary_line(self) -> str:
        head = f"vmtest {self.series} ({self.release or 'not booted'}):"
        if self.result is None:
            return f"{head} FAILED before booting: {self.error}"
        timing = f"boot {self.result.boot_seconds:.0f} s, tests {self.result.run_seconds:.0f} s"
        if not self.pytest:
            what = {runner.STATUS_TIMEOUT: "timed out", runner.STATUS_NO_REPORT: "guest crashed or hung"}
            return (f"{head} FAILED: {what.get(self.result.status, 'pytest did not report')} "
                    f"(exit {self.result.status}; {timing})")
        p = self.pytest
        ran = p["passed"] + p["failed"]
        line = (f"{head} {ran} ran, {p['passed']} passed, {p['failed']} failed, "
                f"{p['skipped']} skipped; {timing}")
        if not self.ok:
            line += f"; FAILED (pytest exit {self.result.status})"
        return line

    def detail_lines(self) -> List[str]:
        lines = [f"    skipped {n}x: {why}" for why, n in self.pytest.get("skip_reasons", {}).items()]
        lines += [f"    failed: {nodeid}" for nodeid in self.pytest.get("failures", [])]
        return lines


def _merge(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    if not a:
        return b
    out = dict(a)
    for k in ("passed", "failed", "skipped"):
        out[k] = a.get(k, 0) + b.get(k, 0)
    reasons = dict(a.get("skip_reasons", {}))
    for why, n in b.get("skip_reasons", {}).items():
        reasons[why] = reasons.get(why, 0) + n
    out["skip_reasons"] = reasons
    out["failures"] = a.get("failures", []) + b.get("failures", [])
    return out


def feature_differences(runs: Sequence[KernelRun]) -> List[str]:
    """Lines of a table of the probe answers that differ between kernels (yes/NO per kernel)."""
    probed = [r for r in runs if r.features]
    if len(probed) < 2:
        return []
    keys: Dict[str, None] = {}
    for r in probed:
        for group in ("features", "prog_types", "map_types", "links"):
            for name in r.features.get(group, {}):
                keys[f"{group}.{name}"] = None
    rows = []
    for key in keys:
        group, name = key.split(".", 1)
        answers = [r.features.get(group, {}).get(name, {}).get("supported") for r in probed]
        if len(set(answers)) > 1:
            rows.append((key, ["?" if a is None else ("yes" if a else "NO") for a in answers]))
    helper_types = {pt for r in probed for pt in r.features.get("helpers", {})}
    for pt in sorted(helper_types):
        counts = [len(r.features.get("helpers", {}).get(pt, [])) for r in probed]
        if len(set(counts)) > 1:
            rows.append((f"helpers.{pt}", [str(c) for c in counts]))
    if not rows:
        return ["feature probes: identical on " + ", ".join(r.series for r in probed)]
    width = max(len(k) for k, _ in rows)
    head = f"  {'feature probe':<{width}}  " + "  ".join(f"{r.series:>6}" for r in probed)
    lines = ["feature probes that differ between kernels:", head]
    lines += [f"  {k:<{width}}  " + "  ".join(f"{a:>6}" for a in answers) for k, answers in rows]
    return lines


def run_suite(series_list: Sequence[str], *, root: Path, args: argparse.Namespace,
              env_for: Callable[[str], Mapping[str, str]]) -> int:
    """Run the guest test set on each kernel in turn; print the summary; 0 if all passed."""
    command = guest_command(root)
    runs: List[KernelRun] = []
    for series in series_list:
        print(f"\n===== vmtest {series}: {' '.join(command[1:])}", flush=True)
        t0 = time.monotonic()
        try:
            kernel = kernels.get_kernel(series, refresh=args.refresh)
            result = runner.run(kernel, command, cwd=root, env=env_for(series), timeout=args.timeout,
                                memory=args.memory, cpus=args.cpus, verbose=args.verbose)
            runs.append(KernelRun(series, kernel.release, result))
        except kernels.VmtestError as e:
            runs.append(KernelRun(series, "", None, str(e)))
        print(f"===== vmtest {series}: done in {time.monotonic() - t0:.0f} s", flush=True)
    lines = ["", "===== vmtest summary"]
    for r in runs:
        lines.append(r.summary_line())
        lines.extend(r.detail_lines())
    lines.extend(feature_differences(runs))
    totals = {k: sum(r.pytest.get(k, 0) for r in runs) for k in ("passed", "failed", "skipped")}
    failed = totals["failed"] + sum(1 for r in runs if not r.ok and not r.pytest.get("failed"))
    lines.append(f"vmtest: {totals['passed']} passed, {failed} failed, {totals['skipped']} skipped")
    text = "\n".join(lines)
    print(text, flush=True)
    if args.summary_file:
        with open(args.summary_file, "a") as f:
            f.write(text.lstrip("\n") + "\n")
    return 0 if runs and all(r.ok for r in runs) else 1
