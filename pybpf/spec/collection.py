"""CollectionSpec: everything an ELF object describes."""

from __future__ import annotations

from typing import Any, Dict, Optional

import attrs

from .map import MapSpec
from .program import ProgramSpec
from .variable import VariableSpec

__all__ = ["CollectionSpec"]


@attrs.define(eq=False)
class CollectionSpec:
    """Maps, programs and global variables of an object, by their ELF names.

    Internal (global data) maps are keyed by section name (``.bss``,
    ``.data``, ``.rodata``, ``.data.NAME``); their kernel names follow
    libbpf's (object name prefix + section suffix, 15 characters).
    """
    maps: Dict[str, MapSpec] = attrs.Factory(dict)
    programs: Dict[str, ProgramSpec] = attrs.Factory(dict)
    variables: Dict[str, VariableSpec] = attrs.Factory(dict)
    btf: Any = None             # pybpf.btf.Spec of the object, or None
    byteorder: str = "<"
    license: str = ""
    kern_version: int = 0
    file: Optional[str] = None
    name: str = ""              # object name (file name up to the first '.')
    kernel_map_names: Dict[str, str] = attrs.Factory(dict)

    def copy(self) -> "CollectionSpec":
        """A deep copy: editing it does not change this spec."""
        maps = {n: m.copy() for n, m in self.maps.items()}
        variables = {n: VariableSpec(v.name, maps.get(v.map.section, v.map), v.offset, v.size,
                                     v.type_id, v.btf)
                     for n, v in self.variables.items()}
        return CollectionSpec(maps, {n: p.copy() for n, p in self.programs.items()}, variables,
                              self.btf, self.byteorder, self.license, self.kern_version, self.file,
                              self.name, dict(self.kernel_map_names))
