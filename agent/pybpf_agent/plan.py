"""``pybpf-agent --probe``: kernel features and, per collector, the hook it gets.

Every enabled collector's chain is actually tried (load + attach, then
detach): the table shows what the agent would run on this kernel, not a guess.
"""

from __future__ import annotations

import sys
from typing import Any

from .collectors.base import CollectorError, State
from .probe import FEATURES, format_table

__all__ = ["print_plan"]


def print_plan(agent: Any, out: Any = None) -> int:
    out = out or sys.stdout
    feats = agent.probe()
    rows = [[name, "yes" if ok else "no", FEATURES[name] if ok else (why or FEATURES[name])]
            for name, (ok, why) in feats.items()]
    print("Kernel features", file=out)
    print(format_table(rows, ["feature", "available", "note"]), file=out)
    agent.build()
    rows = []
    for c in agent.collectors.values():
        chain = ",".join(c.chain()) if c.variants else "-"
        if c.state != State.DISABLED:
            try:
                c.start()
            except CollectorError:
                pass
            except Exception as e:
                c.state, c.reason = State.DOWN, f"{type(e).__name__}: {e}"
            finally:
                c.stop()
                if c.state == State.STOPPED:
                    c.state = State.DEGRADED if c.reason else State.UP
        rows.append([c.name, c.state, c.hook or "-", chain, c.reason or ""])
    print("\nCollectors", file=out)
    print(format_table(rows, ["collector", "plan", "hook", "chain", "reason"]), file=out)
    return 0
