"""BTF feature probes: load a tiny BTF blob using one kind, see if the kernel takes it.

The blobs are the ones libbpf probes with (``features.c``), built here with
:func:`pybpf.btf.marshal.marshal`.  Their answers drive
:func:`pybpf.btf.sanitize.sanitize` through :func:`pybpf.features.btf_features`.
"""

from __future__ import annotations

import errno
from typing import Callable, Dict, List

from .. import sys as _sys
from ..btf import (
    Datasec, DeclTag, Enum64, Float, Func, FuncProto, Int, IntEncoding, Linkage, Param, Ptr,
    TypeTag, Var, VarSecinfo,
)
from ..btf.marshal import marshal
from ..btf.types import AnyType
from ..errors import SyscallError
from .result import Probe, errname, first_log_line, refused_or_raise

__all__ = ["BTF_FEATURES", "probe_btf", "blob"]

_INT = Int("int", 4, IntEncoding.SIGNED, 0, 32)


def _datasec(name: str) -> List[AnyType]:
    return [Int("", 4, IntEncoding.SIGNED, 0, 32), Var("x", 1, Linkage.STATIC),
            Datasec(name, 4, (VarSecinfo(2, 0, 4),))]


def _func(linkage: Linkage) -> List[AnyType]:
    return [_INT, FuncProto("", 0, (Param("a", 1),)), Func("x", 2, linkage)]


BTF_FEATURES: Dict[str, Callable[[], List[AnyType]]] = {
    "btf": lambda: [_INT],
    "btf_func": lambda: _func(Linkage.STATIC),
    "btf_func_global": lambda: _func(Linkage.GLOBAL),
    "btf_datasec": lambda: _datasec(".data"),
    "btf_qmark_datasec": lambda: _datasec("?.data"),
    "btf_float": lambda: [Float("float", 4)],
    "btf_decl_tag": lambda: [Int("", 4, IntEncoding.SIGNED, 0, 32), Var("x", 1, Linkage.STATIC),
                             DeclTag("tag", 2, -1)],
    "btf_type_tag": lambda: [Int("", 4, IntEncoding.SIGNED, 0, 32), TypeTag("tag", 1), Ptr("", 2)],
    "btf_enum64": lambda: [Enum64("enum64", 8, False, ())],
}
"""Feature name -> the types of the blob that uses it."""


def blob(name: str) -> bytes:
    """The raw BTF that probes feature ``name`` (a key of :data:`BTF_FEATURES`)."""
    return marshal(BTF_FEATURES[name]())


def probe_btf(name: str) -> Probe:
    """Whether ``BPF_BTF_LOAD`` accepts the blob of feature ``name``."""
    what = f"BTF feature {name}"
    log = bytearray(4096)
    try:
        fd = _sys.btf_load(blob(name), log_level=1, log_buf=log, context=f"feature probe {what}")
    except SyscallError as e:
        if e.errno == errno.EPERM:
            return refused_or_raise(e, what, "btf")
        if e.errno in (errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP):
            line = first_log_line(log)
            return Probe.no(f"BPF_BTF_LOAD refused it with {errname(e)}"
                            + (f" ({line})" if line else ""))
        raise
    fd.close()
    return Probe.yes()
