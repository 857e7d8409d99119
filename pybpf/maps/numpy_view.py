"""Whole maps as numpy arrays (the vectorised path; numpy is an optional extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Tuple

from ..errors import NotSupportedError
from . import batch as _batch

if TYPE_CHECKING:
    from .map import Map

__all__ = ["dump_numpy", "key_dtype", "value_dtype"]


def _np() -> Any:
    try:
        import numpy
    except ImportError:
        raise NotSupportedError("numpy arrays", "numpy is not installed (pip install numpy)") from None
    return numpy


def key_dtype(m: "Map") -> Any:
    """The numpy dtype of the map's keys (BTF type, or raw ``V<key_size>``)."""
    np = _np()
    if m.btf is not None and m.key_type_id:
        from ..btf.codec import numpy_dtype
        return numpy_dtype(m.btf, m.key_type_id)
    return np.dtype(f"V{m.key_size}")


def value_dtype(m: "Map") -> Any:
    """The numpy dtype of one value (BTF type, or raw ``V<value_size>``)."""
    np = _np()
    if m.btf is not None and m.value_type_id:
        from ..btf.codec import numpy_dtype
        return numpy_dtype(m.btf, m.value_type_id)
    return np.dtype(f"V{m.value_size}")


def dump_numpy(m: "Map", *, delete: bool = False) -> Tuple[Any, Any]:
    """Every entry as ``(keys, values)`` numpy arrays over one batch dump (no per-entry
    Python work); per-CPU values have shape ``(n, ncpu)``."""
    np = _np()
    kb, vb, n = _batch.dump_raw(m, delete=delete)
    keys = np.frombuffer(kb, dtype=key_dtype(m), count=n)
    vdt = value_dtype(m)
    if vdt.itemsize == m.value_stride:
        values = np.frombuffer(vb, dtype=vdt, count=n * m.ncpu)
    else:   # per-CPU slots are 8-byte aligned: read through a padded wrapper
        padded = np.dtype({"names": ["v"], "formats": [vdt], "offsets": [0],
                           "itemsize": m.value_stride})
        values = np.frombuffer(vb, dtype=padded, count=n * m.ncpu)["v"]
    if m.percpu:
        values = values.reshape(n, m.ncpu)
    return keys, values
