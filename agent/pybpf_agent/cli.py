"""Command line: ``pybpf-agent [options]`` runs the exporter; ``pybpf-agent top`` is the live view.

Exit codes: 0 ok; 1 runtime failure (cannot listen, strict start failure);
2 bad configuration or usage (one line on stderr naming the problem).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional

from . import __version__
from .config import DEFAULT_CONFIG_YAML, DEFAULT_PORT, ENV_PREFIX, effective_yaml, load_config
from .schema import ConfigError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="pybpf-agent",
        description="Kernel metrics for Prometheus from eBPF programs loaded with pybpf.",
        epilog=f"Environment overrides: {ENV_PREFIX}KEY__SUBKEY=VALUE (e.g. "
               f"{ENV_PREFIX}COLLECTORS__SYSCALLS__ENABLED=false).  `pybpf-agent top --help` for "
               "the live terminal view.  Docs: docs/agent.md, docs/metrics.md.")
    ap.add_argument("--config", metavar="FILE", help="YAML config (merged over the embedded default)")
    ap.add_argument("--listen", metavar="ADDR:PORT", help=f"HTTP address (default 0.0.0.0:{DEFAULT_PORT})")
    ap.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    ap.add_argument("--log-format", choices=("text", "json"))
    ap.add_argument("--scope-cgroup", metavar="PATH", help="count only tasks of this cgroup v2 directory")
    ap.add_argument("--scope-pid", metavar="PID", type=int, help="count only this process")
    ap.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    ap.add_argument("--print-config", action="store_true", help="print the effective configuration")
    ap.add_argument("--print-default-config", action="store_true", help="print the embedded default")
    ap.add_argument("--probe", action="store_true",
                    help="probe kernel features, try every collector's hook chain, print the plan, exit")
    ap.add_argument("--version", action="version", version=f"pybpf-agent {__version__}")
    return ap


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if args.listen:
        out["listen"] = args.listen
    if args.log_level:
        out["log.level"] = args.log_level
    if args.log_format:
        out["log.format"] = args.log_format
    if args.scope_cgroup:
        out["scope.cgroup"] = args.scope_cgroup
    if args.scope_pid is not None:
        out["scope.pid"] = args.scope_pid
    return out


def _fail(msg: str, code: int = 2) -> int:
    print(f"pybpf-agent: {msg}", file=sys.stderr)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["top"]:
        from .top import main as top_main
        return top_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.print_default_config:
        sys.stdout.write(DEFAULT_CONFIG_YAML)
        return 0
    overrides = _overrides(args)
    try:
        cfg = load_config(args.config, overrides=overrides)
        from .agent import check_collectors
        check_collectors(cfg)
        if cfg["scope"]["cgroup"]:
            from .cgroups import cgroup_id
            cgroup_id(cfg["scope"]["cgroup"])
    except ConfigError as e:
        return _fail(f"config error: {e}")
    from .logs import setup_logging
    setup_logging(cfg["log"]["level"], cfg["log"]["format"])
    if args.print_config:
        sys.stdout.write(effective_yaml(cfg))
        return 0
    if args.check_config:
        print(f"pybpf-agent: configuration OK ({args.config or 'embedded default'})")
        return 0
    from .agent import Agent
    agent = Agent(cfg, config_path=args.config, reload_overrides=overrides)
    if args.probe:
        from .plan import print_plan
        return print_plan(agent)
    try:
        return agent.run()
    except KeyboardInterrupt:
        return 0
