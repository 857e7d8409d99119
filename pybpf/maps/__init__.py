"""Live maps: :class:`Map` and its fast paths.

* :mod:`~pybpf.maps.batch` -- batch lookups/updates/deletes with a resumable
  :class:`BatchCursor`, automatic batch sizing and a per-key fallback
* :mod:`~pybpf.maps.memory` -- ``BPF_F_MMAPABLE`` arrays and global data as live memory
* :mod:`~pybpf.maps.percpu` -- per-CPU values (possible CPUs, sums)
* :mod:`~pybpf.maps.keyless` -- queue / stack / bloom filter
* :mod:`~pybpf.maps.pinning` -- pin-by-name paths and the reuse compatibility check
* :mod:`~pybpf.maps.numpy_view` -- whole maps as numpy arrays
"""
from .batch import BatchCursor
from .map import Map, MapInfo
from .memory import LiveValue, MapMemory
from .percpu import possible_cpus, sum_values
from .pinning import check_compatible, differences, open_pinned, pin_path

__all__ = ["Map", "MapInfo", "BatchCursor", "MapMemory", "LiveValue", "possible_cpus",
           "sum_values", "check_compatible", "differences", "open_pinned", "pin_path"]
