"""Label decoders for user programs (the ebpf_exporter model).

A label takes ``size`` bytes of a map key; its decoders run in order, the
first on the bytes, the next ones on the previous one's text.  A decoder
returning ``None`` drops the whole series (the regexp allow-list).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import sys
from typing import Callable, Dict, List, Optional, Sequence, Union

from .cgroups import CgroupNames
from .names import device_name, errno_name, ifname, signal_name, syscall_name
from .schema import ConfigError

__all__ = ["build_chain", "DECODERS", "Kallsyms"]

Value = Union[bytes, str]


def _int(v: Value) -> int:
    if isinstance(v, bytes):
        return int.from_bytes(v, sys.byteorder)
    return int(v)


class Kallsyms:
    """Kernel address -> function name, from /proc/kallsyms (needs CAP_SYSLOG for real addresses)."""

    _addrs: List[int] = []
    _names: List[str] = []

    @classmethod
    def load(cls) -> None:
        if cls._addrs:
            return
        pairs = []
        try:
            with open("/proc/kallsyms") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3 and parts[1] in "tTwW":
                        pairs.append((int(parts[0], 16), parts[2]))
        except OSError:
            return
        pairs.sort()
        cls._addrs = [a for a, _ in pairs]
        cls._names = [n for _, n in pairs]

    @classmethod
    def name(cls, addr: int) -> str:
        cls.load()
        i = bisect.bisect_right(cls._addrs, addr) - 1
        if i < 0 or not cls._addrs or cls._addrs[i] == 0:
            return f"0x{addr:x}"
        return cls._names[i]


_cgroups = CgroupNames()


def _string(v: Value) -> str:
    if isinstance(v, bytes):
        return v.split(b"\0", 1)[0].decode(errors="replace")
    return v


def _inet(v: Value) -> str:
    if isinstance(v, bytes):
        if len(v) == 4:
            return str(ipaddress.IPv4Address(v))
        if len(v) == 16:
            addr = ipaddress.IPv6Address(v)
            return str(addr.ipv4_mapped or addr)
    raise ValueError("inet_ip needs a 4- or 16-byte field")


DECODERS: Dict[str, Callable[[Value], Optional[str]]] = {
    "uint": lambda v: str(_int(v)),
    "hex": lambda v: v.hex() if isinstance(v, bytes) else v,
    "string": _string,
    "ksym": lambda v: Kallsyms.name(_int(v)),
    "cgroup": lambda v: _cgroups.name(_int(v)),
    "inet_ip": _inet,
    "errno": lambda v: errno_name(_int(v)),
    "syscall": lambda v: syscall_name(_int(v)),
    "signal": lambda v: signal_name(_int(v)),
    "majorminor": lambda v: device_name(_int(v)),
    "ifname": lambda v: ifname(_int(v)),
}


def build_chain(decoders: Sequence[dict], path: str) -> Callable[[bytes], Optional[str]]:
    """One function applying a label's decoder chain to its key bytes."""
    steps: List[Callable[[Value], Optional[str]]] = []
    for i, d in enumerate(decoders or [{"name": "uint"}]):
        name = d["name"]
        if name == "static_map":
            table = {str(k): str(v) for k, v in (d.get("static_map") or {}).items()}
            allow = bool(d.get("allow_unknown"))

            def static(v: Value, table=table, allow=allow) -> Optional[str]:
                key = v if isinstance(v, str) else str(_int(v))
                if key in table:
                    return table[key]
                return key if allow else f"unknown:{key}"
            steps.append(static)
        elif name == "regexp":
            try:
                pats = [re.compile(p) for p in d.get("regexps") or ()]
            except re.error as e:
                raise ConfigError(f"{path}[{i}].regexps", f"invalid regular expression: {e}") from None
            if not pats:
                raise ConfigError(f"{path}[{i}].regexps", "the regexp decoder needs at least one regexp")

            def regexp(v: Value, pats=pats) -> Optional[str]:
                text = _string(v)
                for p in pats:
                    m = p.search(text)
                    if m:
                        return m.group(1) if m.groups() else text
                return None
            steps.append(regexp)
        else:
            steps.append(DECODERS[name])

    def run(raw: bytes) -> Optional[str]:
        v: Optional[Value] = raw
        for step in steps:
            v = step(v)   # type: ignore[arg-type]
            if v is None:
                return None
        return v if isinstance(v, str) else _string(v)   # type: ignore[arg-type]
    return run
