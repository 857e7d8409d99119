"""MapSpec: what the ELF (or the user) says a map should be."""

from __future__ import annotations

import enum
from typing import Any, List, Optional, Tuple

import attrs

__all__ = ["MapSpec", "Pinning", "MapKind"]


class Pinning(enum.IntEnum):
    """The ``pinning`` attribute of BTF map definitions (libbpf's LIBBPF_PIN_*)."""
    NONE = 0
    BY_NAME = 1


class MapKind(enum.Enum):
    """Where a map came from."""
    BTF = "btf"          # SEC(".maps")
    LEGACY = "legacy"    # SEC("maps"), struct bpf_map_def
    DATA = "data"        # .data/.rodata/.bss/.data.*/.rodata.* global data
    KCONFIG = "kconfig"  # .kconfig externs
    USER = "user"        # built by hand


@attrs.define
class MapSpec:
    """A map blueprint.

    ``type`` is a :class:`pybpf.consts.MapType` value (kept as an int here so
    the pure layer does not depend on generated enums).  ``key_type_id`` /
    ``value_type_id`` are ids in the collection's BTF (0 when absent).
    ``contents`` are initial ``(key, value)`` entries; for prog arrays and
    map-in-map, values may be the *names* of programs/maps, resolved at load.
    ``data`` is the initial image of global-data maps.
    """
    name: str
    type: int
    key_size: int = 4
    value_size: int = 4
    max_entries: int = 1
    flags: int = 0
    key_type_id: int = 0
    value_type_id: int = 0
    pinning: Pinning = Pinning.NONE
    numa_node: int = 0
    map_extra: int = 0
    inner_map: Optional["MapSpec"] = None
    contents: List[Tuple[Any, Any]] = attrs.Factory(list)
    data: Optional[bytes] = None
    kind: MapKind = MapKind.USER
    section: str = ""
    freeze: bool = False
    btf: Any = attrs.field(default=None, eq=False, repr=False)

    def copy(self) -> "MapSpec":
        """A deep copy (BTF is shared: it is immutable)."""
        new = attrs.evolve(self, contents=list(self.contents),
                           inner_map=self.inner_map.copy() if self.inner_map else None)
        return new

    @property
    def kernel_name(self) -> str:
        """The name as given to the kernel (and shown by bpftool): at most 15 characters."""
        return self.name[:15]
