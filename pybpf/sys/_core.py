"""Shared plumbing of the command wrappers: issuing a call, pointers, cdata -> Python.

Pointer fields of bpf(2) attributes are ``__u64`` on every architecture, so a
buffer is passed as its integer address.  The Python object behind such an
address must stay alive *and exported* (so a ``bytearray`` cannot be resized)
until the call returns: :class:`Pins` holds the cffi buffer objects for that.
"""

from __future__ import annotations

import errno
import struct as _struct
from typing import Any, Dict, Iterable, List, Optional, Union

from ._errors import bpf_error
from ._libc import ffi
from .backend import active
from .fd import FD

__all__ = ["bpf_call", "bpf_fd", "retry", "attempt", "packer", "Pins", "new", "sizeof", "as_dict",
           "cstring", "set_name", "Buffer"]

Buffer = Union[bytes, bytearray, memoryview]

_EINTR = errno.EINTR
_EAGAIN = errno.EAGAIN
_UINTPTR = ffi.typeof("uintptr_t")
_cast = ffi.cast
_from_buffer = ffi.from_buffer

_SIZES: Dict[str, int] = {}
_PTR_TYPES: Dict[str, Any] = {}


def sizeof(struct: str) -> int:
    """``sizeof(struct <struct>)``, cached."""
    n = _SIZES.get(struct)
    if n is None:
        n = _SIZES[struct] = ffi.sizeof(f"struct {struct}")
    return n


def new(struct: str) -> Any:
    """A zeroed ``struct <struct> *``."""
    t = _PTR_TYPES.get(struct)
    if t is None:
        t = _PTR_TYPES[struct] = ffi.typeof(f"struct {struct} *")
    return ffi.new(t)


def retry(cmd: int, attr: Any, size: int, r: int, context: str, eagain: int = 0) -> int:
    """Finish a call that returned ``r < 0``: re-issue it on EINTR (and up to ``eagain``
    times on EAGAIN); return its result once it succeeds, or raise the translated error."""
    b = active
    while r < 0:
        err = b.errno(r)
        if err == _EAGAIN and eagain > 0:
            eagain -= 1
        elif err != _EINTR:
            raise bpf_error(cmd, err, context)
        r = b.bpf(cmd, attr, size)
    return r


def attempt(cmd: int, attr: Any, size: int) -> int:
    """Issue bpf(cmd), re-issuing on EINTR; the result (>= 0) or ``-errno`` -- for callers
    to whom some errors are answers (ENOENT at the end of an id walk)."""
    b = active
    r = b.bpf(cmd, attr, size)
    while r < 0:
        err = b.errno(r)
        if err != _EINTR:
            return -err
        r = b.bpf(cmd, attr, size)
    return r


def bpf_call(cmd: int, attr: Any, size: int, context: str = "", eagain: int = 0) -> int:
    """bpf(cmd, attr, size) through the active backend; the result, or a raised pybpf error."""
    r = active.bpf(cmd, attr, size)
    if r < 0:
        r = retry(cmd, attr, size, r, context, eagain)
    return r


def bpf_fd(cmd: int, attr: Any, size: int, context: str = "", eagain: int = 0) -> FD:
    """A bpf(2) command that returns a new fd, owned by the returned :class:`FD`."""
    return FD(bpf_call(cmd, attr, size, context, eagain))


def packer(struct: str, fields: Iterable[str]) -> "_struct.Struct":
    """A native-order ``struct.Struct`` writing ``fields`` of ``struct <struct>`` at their cffi
    offsets (gaps as padding), so a hot path sets a whole attribute in one ``pack_into``.

    Built from the generated cdef, so it cannot drift from the kernel layout.
    """
    t = ffi.typeof(f"struct {struct}")
    fmt = "="
    pos = 0
    placed = sorted((ffi.offsetof(t, name), name) for name in fields)
    for off, name in placed:
        ctype = _field_type(t, name)
        if off < pos:
            raise ValueError(f"{struct}.{name} overlaps the previous field")
        fmt += "x" * (off - pos) + _CODES[ctype.cname]
        pos = off + ffi.sizeof(ctype)
    return _struct.Struct(fmt)


_CODES = {"uint8_t": "B", "uint16_t": "H", "uint32_t": "I", "uint64_t": "Q",
          "int8_t": "b", "int16_t": "h", "int32_t": "i", "int64_t": "q"}


def _field_type(t: Any, name: str) -> Any:
    for fname, f in t.fields:
        if fname == name:
            return f.type
    raise KeyError(f"struct has no field {name}")


class Pins:
    """Keeps the buffers behind the addresses put into an attribute alive during a call."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: List[Any] = []

    def buf(self, obj: Optional[Buffer], *, writable: bool = False) -> int:
        """The address of a bytes-like object's memory (0 for ``None`` or empty)."""
        if obj is None or len(obj) == 0:
            return 0
        c = _from_buffer(obj, require_writable=writable)
        self._held.append(c)
        return int(_cast(_UINTPTR, c))

    def cstr(self, s: Union[str, bytes, None]) -> int:
        """The address of a NUL-terminated copy of ``s`` (0 for ``None``)."""
        if s is None:
            return 0
        b = s.encode() if isinstance(s, str) else bytes(s)
        if b"\0" in b:
            raise ValueError(f"string {s!r} contains a NUL byte")
        c = ffi.new("char[]", b)
        self._held.append(c)
        return int(_cast(_UINTPTR, c))

    def array(self, ctype: str, values: Iterable[int]) -> int:
        """The address of a C array of ``ctype`` holding ``values`` (0 when empty)."""
        vals = list(values)
        if not vals:
            return 0
        c = ffi.new(f"{ctype}[]", vals)
        self._held.append(c)
        return int(_cast(_UINTPTR, c))

    def strings(self, values: Iterable[Union[str, bytes]]) -> int:
        """The address of a ``char *[]`` array of NUL-terminated copies of ``values``."""
        ptrs = [self.cstr(v) for v in values]
        return self.array("uint64_t", ptrs)

    def new(self, ctype: str, n: int) -> Any:
        """A zeroed ``ctype[n]`` owned for the duration of the call."""
        c = ffi.new(f"{ctype}[]", max(n, 1))
        self._held.append(c)
        return c

    @staticmethod
    def addr(cdata: Any) -> int:
        return int(_cast(_UINTPTR, cdata))


def set_name(field: Any, name: Union[str, bytes]) -> None:
    """Copy an object name into a ``char[BPF_OBJ_NAME_LEN]`` field, truncated to leave a NUL."""
    b = name.encode() if isinstance(name, str) else bytes(name)
    n = min(len(b), ffi.sizeof(field) - 1)
    ffi.memmove(field, b, n)


def cstring(arr: Any) -> str:
    """A ``char[]`` field as ``str`` (up to the first NUL)."""
    return ffi.string(arr).decode("utf-8", "replace")


def as_dict(cdata: Any) -> Dict[str, Any]:
    """A struct (or pointer to one) as a dict of plain Python values.

    Integers stay ints, ``char[]`` becomes ``str``, ``uint8_t[]`` becomes ``bytes``,
    other arrays lists, nested named structs/unions dicts.  Members of anonymous
    unions appear directly (as cffi exposes them); ``__pad``/``__reserved`` fields
    are left out.
    """
    t = ffi.typeof(cdata)
    if t.kind == "pointer":
        cdata = cdata[0]
        t = t.item
    out: Dict[str, Any] = {}
    for name, f in t.fields:
        if name.startswith("__"):
            continue
        out[name] = _value(getattr(cdata, name), f.type)
    return out


def _value(v: Any, t: Any) -> Any:
    kind = t.kind
    if kind == "primitive":
        return v
    if kind == "array":
        item = t.item
        if item.kind == "primitive" and item.cname == "char":
            return ffi.string(v).decode("utf-8", "replace")
        if item.kind == "primitive" and item.cname == "uint8_t":
            return bytes(ffi.buffer(v))
        return [_value(v[i], item) for i in range(t.length)]
    if kind in ("struct", "union"):
        return as_dict(v)
    return v
