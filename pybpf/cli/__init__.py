"""The ``pybpf`` command line (also ``python -m pybpf``).

Subcommands::

    pybpf inspect OBJ [--insns|--core] [--prog NAME] [--btf FILE]   what an object holds
    pybpf load OBJ [--pin DIR] [--pin-root DIR] [--btf FILE]        load (and pin) it
    pybpf btf dump FILE [--format raw|c|json]                        print BTF
    pybpf prog list | prog show PROG                                 loaded programs
    pybpf map list | map show MAP | map dump MAP                     maps
    pybpf feature [probe] [KEY...] [--no-helpers] [--refresh]        kernel features

Every listing takes ``--json`` and then prints exactly one JSON document.
Exit status: 0 on success, 1 when pybpf reports an error (any
:class:`pybpf.BPFError`, printed on stderr), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from .. import __version__
from ..errors import BPFError
from . import btf, feature, inspect, listing, load

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the whole command line."""
    parser = argparse.ArgumentParser(
        prog="pybpf", description="Inspect, load and list eBPF objects (pure Python, no libbpf).",
        epilog="Run 'pybpf COMMAND -h' for a command's options.")
    parser.add_argument("--version", action="version", version=f"pybpf {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    inspect.register(sub, common)
    load.register(sub, common)
    btf.register(sub, common)
    listing.register(sub, common)
    feature.register(sub, common)
    return parser


def _report(err: object) -> None:
    print(f"pybpf: error: {err}", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:          # -h/--version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        return int(args.func(args))
    except BPFError as e:
        _report(e)
        return EXIT_ERROR
    except BrokenPipeError:
        # Output piped into something that stopped reading (| head): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as e:             # file system work of the CLI itself (mkdir of pin dirs ...)
        _report(f"{e.filename}: {e.strerror}" if e.filename else e)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
