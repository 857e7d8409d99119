"""``tools/vmtest``: command-line entry point.

::

    tools/vmtest [OPTIONS] KERNEL -- COMMAND...   run COMMAND in a guest (exit status = COMMAND's)
    tools/vmtest [OPTIONS] suite [KERNEL...]      the CI guest test set on each KERNEL (default: all)
    tools/vmtest fetch [KERNEL...]                fetch and cache kernels (and the host packages)

KERNEL is one of 5.10, 6.1, 6.12.  See docs/vmtest.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import host, kernels, runner, suite

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_TIMEOUT = 1200.0


def guest_env(series: str, extra: Sequence[str] = ()) -> Dict[str, str]:
    """The guest command's environment: the host's PATH (venv first), PYBPF_VMTEST=1 and pytest options."""
    venv = ROOT / ".venv"
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env = {
        "PATH": f"{venv / 'bin'}:{path}" if (venv / "bin" / "python").exists() else path,
        "HOME": os.environ.get("HOME", "/root"),
        "USER": "root",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PYBPF_VMTEST": "1",
        "PYBPF_VMTEST_KERNEL": series,
        "PYBPF_VMTEST_OUT": "/run/vmtest/out",
        "TMPDIR": "/run/tmp",      # a plain tmpfs (see initramfs.py): not the /tmp overlay
        "PYTHONUNBUFFERED": "1",   # output is a pipe to the console: stream it
        # The guest plugin uses the host-built BPF objects and records results;
        # the cache provider would write .pytest_cache into the tree for nothing.
        "PYTEST_ADDOPTS": " ".join(filter(None, [
            "-p no:cacheprovider -p tools.vmtest_lib.guest_pytest",
            os.environ.get("PYTEST_ADDOPTS", "")])),
    }
    if (venv / "bin" / "python").exists():
        env["VIRTUAL_ENV"] = str(venv)
    # The guest pytest plugin is imported by module name: make the tree importable for
    # any pytest entry point, not only `python -m pytest` run from the root.
    env["PYTHONPATH"] = ":".join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for name in ("CI", "PY_COLORS", "PYBPF_DEBUG"):
        if name in os.environ:
            env[name] = os.environ[name]
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise kernels.VmtestError(f"-e expects NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tools/vmtest",
        description="Run a command, or the guest test set, in a Debian guest kernel under QEMU (TCG) "
                    "with the host's filesystem; the exit status is the guest command's.",
        usage="tools/vmtest [OPTIONS] KERNEL -- COMMAND...\n"
              "       tools/vmtest [OPTIONS] suite [KERNEL...]\n"
              "       tools/vmtest fetch [KERNEL...]",
        epilog=f"kernels: {', '.join(kernels.SERIES)}; cache: {kernels.cache_dir()}; see docs/vmtest.md")
    p.add_argument("target", help="a kernel (5.10, 6.1, 6.12), 'suite' or 'fetch'")
    p.add_argument("kernels", nargs="*", help="suite/fetch: the kernels (default: all)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds before a guest is killed, exit 124 (default {DEFAULT_TIMEOUT:.0f})")
    p.add_argument("--memory", default="2G", help="guest RAM (default 2G)")
    p.add_argument("--cpus", type=int, default=2, help="guest vCPUs (default 2)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment variable for the guest command")
    p.add_argument("-v", "--verbose", action="store_true", help="show the boot log and QEMU command")
    p.add_argument("--refresh", action="store_true",
                   help="look up the current Debian package again instead of the cached kernel")
    p.add_argument("--no-build", action="store_true",
                   help="do not (re)build the BPF objects on the host before booting")
    p.add_argument("--summary-file", type=Path,
                   help="suite: also append the per-kernel summary lines to this file")
    return p


def _usage(message: str) -> int:
    print(f"vmtest: {message}", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    args = _parser().parse_args(argv)
    rest: List[str] = list(args.kernels)
    try:
        if args.target == "fetch":
            host.ensure_packages()
            for series in rest or list(kernels.SERIES):
                k = kernels.get_kernel(series, refresh=args.refresh)
                print(f"{series}: {k.package} {k.version} ({k.release}) in {k.root}")
            return 0
        if args.target == "suite":
            host.ensure_packages()
            if not args.no_build:
                host.build_objects(ROOT)
            return suite.run_suite(rest or list(kernels.SERIES), root=ROOT, args=args,
                                   env_for=lambda s: guest_env(s, args.env))
        if args.target not in kernels.SERIES:
            return _usage(f"unknown kernel or command {args.target!r}: "
                          f"choose one of {', '.join(kernels.SERIES)}, suite, fetch")
        if rest or not command:
            return _usage(f"usage: tools/vmtest [OPTIONS] {args.target} -- COMMAND...")
        host.ensure_packages()
        if not args.no_build:
            host.build_objects(ROOT)
        kernel = kernels.get_kernel(args.target, refresh=args.refresh)
        result = runner.run(kernel, command, cwd=ROOT, env=guest_env(args.target, args.env),
                            timeout=args.timeout, memory=args.memory, cpus=args.cpus,
                            verbose=args.verbose)
        print(f"vmtest: {args.target} ({kernel.release}): exit {result.status}, "
              f"boot {result.boot_seconds:.1f} s, command {result.run_seconds:.1f} s",
              file=sys.stderr, flush=True)
        return result.status
    except kernels.VmtestError as e:
        print(f"vmtest: {e}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        print("vmtest: interrupted", file=sys.stderr)
        return 130
