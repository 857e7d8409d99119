"""``pybpf feature [probe]``: what the running kernel supports, like ``bpftool feature probe``.

Prints program types, map types, attach types, BPF links, named features and
(unless ``--no-helpers``) the helpers each program type may call, grouped;
``--json`` prints one document (:meth:`pybpf.features.FeatureReport.to_dict`).
Answers come from the per-boot cache when present; ``--refresh`` probes
everything again.  ``pybpf feature probe KEY...`` answers single keys
(``prog_type:xdp``, ``helper:xdp:bpf_loop``, ``ringbuf`` ...); its exit status
is 0 when all are supported and 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .output import emit_json

__all__ = ["register"]


def run_feature(args: argparse.Namespace) -> int:
    from .. import features
    if args.refresh:
        features.clear_cache()
    keys = args.keys[1:] if args.keys[:1] == ["probe"] else args.keys
    if keys:
        answers = {key: _answer(features, key) for key in keys}
        if args.json:
            emit_json({k: {"supported": p.supported, "code": p.code.value, "reason": p.reason}
                       for k, p in answers.items()})
        else:
            width = max(len(k) for k in answers)
            for k, p in answers.items():
                note = f"  ({p.reason})" if p.reason else ""
                print(f"{k:<{width}}  {'yes' if p.supported else 'NO'}{note}")
        features.flush_cache()
        return 0 if all(p.supported for p in answers.values()) else 1
    report = features.probe_all(helpers=not args.no_helpers)
    if args.json:
        emit_json(report.to_dict())
    else:
        sys.stdout.write(report.format() + "\n")
    return 0


def _answer(features: Any, key: str) -> Any:
    try:
        return features.probe(key)
    except ValueError as e:
        from ..errors import BPFError
        raise BPFError(str(e)) from None


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "feature", parents=[common], help="probe what the running kernel supports",
        description="Probe the running kernel by loading tiny programs and creating tiny maps "
                    "(like 'bpftool feature probe'): program types, map types, attach types, "
                    "BPF links, named features and helpers per program type.",
        epilog="Answers are cached per boot (/run/pybpf or ~/.cache/pybpf, or "
               "$PYBPF_CACHE_DIR). Keys: prog_type:NAME, map_type:NAME, attach_type:NAME, "
               "link:NAME, helper:PROG_TYPE:HELPER, kfunc:PROG_TYPE:NAME, or a feature name "
               "(btf_enum64, ringbuf, fentry, kprobes, tcx ...).")
    p.add_argument("keys", nargs="*", metavar="KEY",
                   help="answer only these keys (a leading word 'probe' is ignored, as in "
                        "'pybpf feature probe')")
    p.add_argument("--no-helpers", action="store_true",
                   help="skip probing the helpers of every program type")
    p.add_argument("--refresh", action="store_true",
                   help="ignore cached answers and probe again")
    p.set_defaults(func=run_feature)
