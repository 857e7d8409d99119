"""``python -m pybpf_agent`` / ``pybpf-agent``: see :mod:`pybpf_agent.cli`."""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from .cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
