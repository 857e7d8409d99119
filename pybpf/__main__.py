"""``python -m pybpf``: the pybpf command line (see :mod:`pybpf.cli`)."""

from .cli import main

raise SystemExit(main())
