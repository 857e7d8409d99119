"""Blueprints (specs) of maps, programs, variables and collections.  Pure data."""

from .map import MapSpec, Pinning, MapKind
from .program import ProgramSpec, MapRef, ExternRef, FuncInfoRec, LineInfoRec, CORERef
from .variable import VariableSpec
from .collection import CollectionSpec

__all__ = ["MapSpec", "Pinning", "MapKind", "ProgramSpec", "MapRef", "ExternRef", "FuncInfoRec",
           "LineInfoRec", "CORERef", "VariableSpec", "CollectionSpec"]
