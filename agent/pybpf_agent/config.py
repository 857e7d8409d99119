"""The agent's configuration: embedded defaults, YAML file, environment overrides.

Precedence, lowest first: the schema defaults, the embedded default config
(:data:`DEFAULT_CONFIG_YAML`), ``--config FILE`` (deep-merged over it),
environment variables, then command-line flags (``--listen``, ``--log-level``,
``--log-format``).

Environment overrides: ``PYBPF_AGENT__<KEY>__<SUBKEY>...=VALUE``, the key path
in upper or lower case with ``__`` between levels; the value is parsed as a YAML
scalar (``true``, ``10``, ``[a, b]``) and validated like the file, e.g.::

    PYBPF_AGENT__COLLECTORS__SYSCALLS__ENABLED=false
    PYBPF_AGENT__LISTEN=127.0.0.1:10435
    PYBPF_AGENT__SCOPE__CGROUP=/sys/fs/cgroup/unified/myservice
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple

from .schema import ConfigError, Field, ListOf, MapOf, Section, lookup, validate

__all__ = ["ConfigError", "SCHEMA", "DEFAULT_CONFIG_YAML", "DEFAULT_PORT", "load_config",
           "parse_listen", "ENV_PREFIX", "COLLECTOR_NAMES"]

#: Default port.  9100-9999 of Prometheus' default-port allocations (the wiki
#: page "Default port allocations") are all taken, 9435 by ebpf_exporter, and
#: allocations continue at 10000 upward one by one; 10435 ("ebpf_exporter's port
#: + 1000") is far from that sequence.  Register it on the wiki at release.
DEFAULT_PORT = 10435
ENV_PREFIX = "PYBPF_AGENT__"

COLLECTOR_NAMES = ("syscalls", "process", "sched", "block", "tcp", "network", "drops", "memory", "user")


def _check_listen(v: str) -> Optional[str]:
    try:
        parse_listen(v)
    except ValueError as e:
        return str(e)
    return None


def parse_listen(text: str) -> Tuple[str, int]:
    """``"ADDR:PORT"`` / ``"[v6]:PORT"`` / ``":PORT"`` -> (host, port); ValueError says why."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("expected ADDR:PORT, e.g. 0.0.0.0:10435 or [::1]:10435")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"port {port!r} is not a number (expected ADDR:PORT with PORT 1-65535)") from None
    if not 0 < p < 65536:
        raise ValueError(f"port {p} is out of range (expected 1-65535)")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost" and not all(c.isalnum() or c in "-." for c in host):
                raise ValueError(f"address {host!r} is not an IP address or host name") from None
    return host or "0.0.0.0", p


def _scope() -> Section:
    return Section({
        "cgroup": Field("str", "", "cgroup v2 directory (absolute, or relative to the cgroup2 mount) "
                        "whose tasks alone are counted; empty = all"),
        "pid": Field("int", 0, "process (thread group) id alone counted; 0 = all", minimum=0),
    }, "restrict collection (decided in BPF through .rodata knobs)")


def _common(hooks_help: str, **extra: Any) -> Dict[str, Any]:
    fields: Dict[str, Any] = {
        "enabled": Field("bool", True, "load and attach this collector"),
        "hooks": ListOf(Field("str", "", allowed="a hook variant name or KIND/TARGET"), [],
                        "hook chain to try, in order (default: the collector's own chain). "
                        + hooks_help),
        "sampling": Field("int", 1, "count 1 event in N (decided in BPF); counts are scaled back by N "
                          "and labelled sampled=\"true\"", minimum=1, maximum=1 << 20),
        "scope": _scope(),
        "series_budget": Field("int", 5000, "most series this collector exports per metric; "
                               "the rest are dropped and counted in pybpf_agent_series_dropped_total",
                               minimum=1),
        "min_read_interval": Field("float", 0.0, "seconds a map read is reused across scrapes",
                                   minimum=0.0),
    }
    fields.update(extra)
    return fields


def _user_label() -> Section:
    return Section({
        "name": Field("str", "", "label name"),
        "size": Field("int", 0, "bytes of the key this label takes (0 = from the map's BTF key "
                      "struct, member by member)", minimum=0),
        "padding": Field("int", 0, "bytes to skip after the field", minimum=0),
        "decoders": ListOf(Section({
            "name": Field("str", "uint", choices=("uint", "hex", "string", "ksym", "cgroup", "inet_ip",
                                                  "errno", "syscall", "static_map", "regexp",
                                                  "majorminor", "ifname", "signal")),
            "static_map": MapOf(Field("str", ""), {}, "value -> label for static_map"),
            "allow_unknown": Field("bool", False, "static_map: pass unknown values through"),
            "regexps": ListOf(Field("str", ""), [], "regexp allow-list; other keys are dropped"),
        }), [], "decoders applied in order"),
    })


def _user_metric(histogram: bool) -> Section:
    fields: Dict[str, Any] = {
        "name": Field("str", "", "metric name without the namespace prefix"),
        "help": Field("str", "", "help text"),
        "map": Field("str", "", "map name in the object (default: the metric name)"),
        "labels": ListOf(_user_label(), [], "labels, in key order"),
        "value_type": Field("str", "counter", choices=("counter", "gauge")),
    }
    if histogram:
        fields.pop("value_type")
        fields.update({
            "bucket_type": Field("str", "exp2", choices=("exp2", "linear")),
            "bucket_min": Field("int", 0, minimum=0),
            "bucket_max": Field("int", 26, minimum=0, maximum=63),
            "bucket_multiplier": Field("float", 1.0, "bucket upper bound = multiplier × 2^k "
                                       "(exp2) or × k (linear), in the metric's base unit"),
        })
    return Section(fields)


SCHEMA = Section({
    "listen": Field("str", f"0.0.0.0:{DEFAULT_PORT}", "address:port of the HTTP endpoint",
                    check=_check_listen, allowed="ADDR:PORT with PORT 1-65535"),
    "namespace": Field("str", "pybpf", "metric name prefix"),
    "tls": Section({
        "cert_file": Field("str", "", "PEM certificate; TLS is on when set"),
        "key_file": Field("str", "", "PEM private key"),
    }),
    "basic_auth": Section({
        "username": Field("str", ""),
        "password": Field("str", "", "password (prefer password_file)"),
        "password_file": Field("str", "", "file whose first line is the password"),
    }),
    "log": Section({
        "level": Field("str", "info", choices=("debug", "info", "warning", "error")),
        "format": Field("str", "text", choices=("text", "json")),
    }),
    "scope": _scope(),
    "performance": Section({
        "ringbuf_size": Field("int", 256 * 1024, "ring buffer bytes (power of two, >= 4096)",
                              check=lambda v: None if v >= 4096 and v & (v - 1) == 0
                              else "a power of two >= 4096"),
        "poll_timeout": Field("float", 0.1, "seconds an event poll waits", minimum=0.001, maximum=10),
        "max_events_per_poll": Field("int", 4096, "events consumed per poll", minimum=1),
        "max_tracked": Field("int", 10240, "entries of the maps tracking tasks, sockets and "
                             "in-flight requests (LRU/hash max_entries)", minimum=64, maximum=1 << 22),
        "bpf_run_stats": Field("bool", False, "enable BPF run-time stats (costs tens of ns per "
                               "event; needs CAP_SYS_ADMIN)"),
    }),
    "pin_root": Field("str", "", "bpffs directory where aggregation maps are pinned so counters "
                      "survive a restart; empty = no pinning"),
    "restart": Section({
        "initial_backoff": Field("float", 1.0, minimum=0.01),
        "max_backoff": Field("float", 60.0, minimum=0.01),
    }),
    "strict": Field("bool", False, "exit non-zero if any enabled collector cannot start"),
    "collectors": Section({
        "syscalls": Section(_common(
            "Variants: raw_tp, tp_btf, tracepoint.",
            errors=Field("bool", True, "count failures by syscall and errno"),
            by_process=Field("bool", True, "count calls per process (top-N exported)"),
            top_processes=Field("int", 10, "processes exported by name; the rest are 'other'",
                                minimum=0, maximum=1000))),
        "process": Section(_common(
            "Variants: tp_btf, raw_tp.",
            events=Field("str", "auto", "exec event transport", choices=("auto", "ringbuf", "perf", "off")),
            log_events=Field("bool", False, "log each exec event (JSON with --log-format json)"),
            keep_events=Field("int", 64, "recent exec events kept for `pybpf-agent top`", minimum=0))),
        "sched": Section(_common("Variants: tp_btf, raw_tp.")),
        "block": Section(_common(
            "Variants: tp_btf, raw_tp.",
            devices=ListOf(Field("str", ""), [], "device names (e.g. loop0, vda) to count; empty = all"))),
        "tcp": Section(_common("Variants: tp_btf, raw_tp.")),
        "network": Section(_common(
            "Variants: tcx, tc (netlink), tp_btf, raw_tp.  tcx/tc need interfaces.",
            interfaces=ListOf(Field("str", ""), [], "interfaces to count (tcx/tc attach to each); "
                              "empty = all interfaces in the agent's network namespace (tracepoints)"))),
        "drops": Section(_common("Variants: tp_btf, raw_tp.")),
        "memory": Section(_common("Variants: tp_btf, raw_tp.")),
        "user": Section({
            "enabled": Field("bool", True, "load the programs listed below"),
            "series_budget": Field("int", 5000, "most series exported per metric", minimum=1),
            "min_read_interval": Field("float", 0.0, "seconds a map read is reused across scrapes",
                                       minimum=0.0),
            "programs": ListOf(Section({
                "name": Field("str", "", "name (the collector label)"),
                "object": Field("str", "", "path to the .bpf.o"),
                "rodata": MapOf(Field("any", 0), {}, "const volatile variables to set before load"),
                "counters": ListOf(_user_metric(False), []),
                "histograms": ListOf(_user_metric(True), []),
                "sampling": Field("int", 1, minimum=1),
            }), [], "the operator's own BPF objects and how their maps become metrics"),
        }),
    }),
})


DEFAULT_CONFIG_YAML = f"""\
# pybpf-agent embedded default configuration (`pybpf-agent --print-config` shows
# the effective one).  Every key is documented in docs/agent.md.
listen: "0.0.0.0:{DEFAULT_PORT}"
namespace: pybpf
log:
  level: info
  format: text
performance:
  ringbuf_size: 262144
  poll_timeout: 0.1
  max_events_per_poll: 4096
  max_tracked: 10240
  bpf_run_stats: false
collectors:
  syscalls:
    enabled: true
    hooks: [raw_tp, tp_btf, tracepoint]
    top_processes: 10
  process:
    enabled: true
    hooks: [tp_btf, raw_tp]
    events: auto
  sched:
    enabled: true
    hooks: [tp_btf, raw_tp]
  block:
    enabled: true
    hooks: [tp_btf, raw_tp]
  tcp:
    enabled: true
    hooks: [tp_btf, raw_tp]
  network:
    enabled: true
    hooks: [tcx, tc, tp_btf, raw_tp]
  drops:
    enabled: true
    hooks: [tp_btf, raw_tp]
  memory:
    enabled: true
    hooks: [tp_btf, raw_tp]
  user:
    enabled: true
    programs: []
"""


def _parse_yaml(text: str, source: str) -> Any:
    try:
        import yaml
    except ImportError:   # PyYAML is in the `agent` extra; JSON is a YAML subset we can still read
        try:
            return json.loads(text)
        except ValueError as e:
            raise ConfigError(source, f"cannot parse (PyYAML is not installed, so only JSON works): {e}") \
                from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(source, f"invalid YAML{where}: {problem}") from None


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return copy.deepcopy(over)


def _set_path(tree: dict, dotted: str, value: Any, source: str) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(dotted, f"cannot set from {source}: {p} is not a mapping")
        node = nxt
    node[parts[-1]] = value


def _env_overrides(tree: dict, environ: Mapping[str, str]) -> dict:
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        keys = [k for k in name[len(ENV_PREFIX):].split("__")]
        if not keys or not all(keys):
            raise ConfigError(f"${name}", f"malformed variable name (expected {ENV_PREFIX}KEY__SUBKEY...)")
        try:
            _, path = lookup(SCHEMA, keys)
        except ConfigError as e:
            raise ConfigError(f"${name} ({e.path})", e.problem) from None
        raw = environ[name]
        value = _parse_yaml(raw, f"${name}") if raw.strip() else ""
        if value is None:
            value = ""
        _set_path(tree, path, value, f"${name}")
    return tree


def load_config(path: Optional[str] = None, *, environ: Optional[Mapping[str, str]] = None,
                overrides: Optional[Dict[str, Any]] = None) -> dict:
    """The effective configuration (validated, defaults filled).

    ``overrides`` maps dotted key paths to values (command-line flags); they win.
    Raises :class:`ConfigError` (one-line message) on any problem.
    """
    tree = _parse_yaml(DEFAULT_CONFIG_YAML, "<embedded default config>")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise ConfigError(path, "config file not found") from None
        except OSError as e:
            raise ConfigError(path, f"cannot read config file: {e.strerror}") from None
        user = _parse_yaml(text, path)
        if user is None:
            user = {}
        if not isinstance(user, dict):
            raise ConfigError(path, f"the top level must be a mapping, not {type(user).__name__}")
        # Validate the file on its own first so errors name what the user wrote.
        validate(SCHEMA, user)
        tree = _merge(tree, user)
        # A user-given hooks list replaces the default one (lists are not merged).
    tree = _env_overrides(tree, os.environ if environ is None else environ)
    for dotted, value in (overrides or {}).items():
        _set_path(tree, dotted, value, "command line")
    return validate(SCHEMA, tree)


def effective_yaml(cfg: dict) -> str:
    """The configuration as YAML text (for ``--print-config``)."""
    try:
        import yaml
        return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
    except ImportError:
        return json.dumps(cfg, indent=2)
