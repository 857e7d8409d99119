"""Pinning by name: where a map is pinned, and whether a pinned map can stand in for a spec.

A map declared ``__uint(pinning, LIBBPF_PIN_BY_NAME)`` lives at
``<pin root>/<map name>`` (the root defaults to ``/sys/fs/bpf``).  When a map is
already pinned there, loading reuses it -- but only if it matches the spec:
:func:`check_compatible` compares type, key size, value size, max entries,
flags and ``map_extra`` (libbpf's reuse rule) and names every difference.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, List, Optional, Union

from ..consts import MapType
from ..errors import IncompatibleError
from ..spec.map import MapSpec

if TYPE_CHECKING:
    from .map import Map

__all__ = ["DEFAULT_PIN_ROOT", "pin_path", "differences", "check_compatible", "open_pinned"]

DEFAULT_PIN_ROOT = "/sys/fs/bpf"


def pin_path(spec: MapSpec, root: Optional[Union[str, os.PathLike]] = None) -> str:
    """Where a by-name pinned map lives: ``<root>/<spec.name>``."""
    return os.path.join(os.fspath(root) if root is not None else DEFAULT_PIN_ROOT, spec.name)


def differences(spec: MapSpec, m: "Map") -> List[str]:
    """Every attribute in which the live map ``m`` differs from ``spec`` ("flags 0x0
    (pinned) != 0x400 (spec)"); empty when ``m`` can be reused for ``spec``."""
    diffs = []
    checks = [("type", spec.type, m.type), ("key_size", spec.key_size, m.key_size),
              ("value_size", spec.value_size, m.value_size)]
    # A perf event array sized 0 in the ELF is sized to the CPU count at creation.
    if not (spec.type == MapType.PERF_EVENT_ARRAY and spec.max_entries == 0):
        checks.append(("max_entries", spec.max_entries, m.max_entries))
    checks += [("flags", spec.flags, m.flags), ("map_extra", spec.map_extra, m.map_extra)]
    for attr, want, have in checks:
        if int(want) != int(have):
            if attr == "type":
                diffs.append(f"type {_type_name(have)} (pinned) != {_type_name(want)} (spec)")
            elif attr in ("flags", "map_extra"):
                diffs.append(f"{attr} {int(have):#x} (pinned) != {int(want):#x} (spec)")
            else:
                diffs.append(f"{attr} {int(have)} (pinned) != {int(want)} (spec)")
    return diffs


def check_compatible(spec: MapSpec, m: "Map") -> None:
    """Raise :class:`~pybpf.IncompatibleError` naming every difference between ``spec``
    and the (pinned) map ``m``."""
    diffs = differences(spec, m)
    if diffs:
        raise IncompatibleError(f"pinned map {spec.name} is incompatible with its spec: "
                                + ", ".join(diffs))


def open_pinned(spec: MapSpec, root: Optional[Union[str, os.PathLike]] = None) -> Optional["Map"]:
    """The map pinned for ``spec`` under ``root``, checked compatible (and named after the
    spec), or ``None`` when nothing is pinned there."""
    from .map import Map
    path = pin_path(spec, root)
    if not os.path.exists(path):
        return None
    m = Map.from_pinned(path, spec=spec)
    try:
        check_compatible(spec, m)
    except BaseException:
        m.close()
        raise
    m.name = spec.name
    return m


def _type_name(t: int) -> str:
    try:
        return MapType(int(t)).name
    except ValueError:
        return str(int(t))
