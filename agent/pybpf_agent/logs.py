"""Logging setup: ``text`` (human) or ``json`` (one object per line, for log shippers)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Optional

__all__ = ["setup_logging", "JSONFormatter"]


class JSONFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., "event": {...}}`` per record."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            doc["event"] = event
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(level: str = "info", fmt: str = "text", stream: Optional[object] = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("pybpf_agent")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    pyb = logging.getLogger("pybpf")
    pyb.handlers[:] = [handler]
    pyb.setLevel(max(logging.WARNING, root.level))
    pyb.propagate = False
