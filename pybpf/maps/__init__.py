"""Live maps."""
from .map import Map, MapInfo, possible_cpus

__all__ = ["Map", "MapInfo", "possible_cpus"]
