"""Kernel feature probing and the start plan (``pybpf-agent --probe``).

Features come from :mod:`pybpf.features` (tiny programs and maps, cached per
boot) when it is importable; otherwise from what the filesystem shows (BTF
file, tracefs).  The plan is, per collector, the hook chain to try and, after
``start``, what actually happened: state, hook, reason.
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

__all__ = ["probe_features", "FEATURES", "format_table"]

#: features the agent's collectors care about, with what each enables
FEATURES = {
    "btf": "kernel BTF (CO-RE, tp_btf)",
    "ringbuf": "ring buffer for exec events (else perf buffer)",
    "perf_link": "tracepoint links through BPF_LINK_CREATE",
    "bpf_link": "bpf_link attachments",
    "tcx": "tcx attachment for the network collector (else tc netlink)",
    "fentry": "BPF trampolines (fentry/fexit); refused on some kernels",
    "lsm": "BPF LSM programs (trampoline based)",
    "kprobes": "kprobes (CONFIG_KPROBES)",
}


def probe_features() -> Dict[str, Tuple[bool, str]]:
    """feature -> (available, how we know / why not)."""
    out: Dict[str, Tuple[bool, str]] = {}
    try:
        from pybpf import features as pf
    except ImportError as e:
        pf = None
        why = f"pybpf.features not available ({e})"
    for name in FEATURES:
        if pf is not None:
            try:
                ok = bool(pf.have_feature(name))
                reason = ""
                if not ok:
                    try:
                        pf.require_feature(name)
                    except Exception as e:
                        reason = str(e).splitlines()[0]
                out[name] = (ok, reason)
                continue
            except Exception as e:   # permission problems etc.
                out[name] = (False, f"probe failed: {str(e).splitlines()[0]}")
                continue
        if name == "btf":
            ok = os.path.exists("/sys/kernel/btf/vmlinux")
            out[name] = (ok, "" if ok else "/sys/kernel/btf/vmlinux missing")
        else:
            out[name] = (False, f"unknown: {why}")
    return out


def format_table(rows: List[List[str]], header: List[str]) -> str:
    """Plain-text table with aligned columns."""
    widths = [len(h) for h in header]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    widths[-1] = min(widths[-1], 100)

    def line(cells: List[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i < len(cells) - 1 else c for i, c in enumerate(cells))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
