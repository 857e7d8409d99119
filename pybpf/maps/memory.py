"""Map memory mapped into the process: BPF_F_MMAPABLE arrays and global data.

An array map created with ``BPF_F_MMAPABLE`` (every ``.data``/``.bss``/``.rodata``
map pybpf loads is one) can be ``mmap()``-ed: the process then reads and writes
the very memory BPF programs use, with no system call per access.  The kernel
lays the array out as ``max_entries`` elements of ``round_up(value_size, 8)``
bytes.

:class:`MapMemory` owns such a mapping; :class:`LiveValue` is one typed value
inside it (a global variable: ``Collection.variables[name]`` is built on it).
Frozen maps and maps created ``BPF_F_RDONLY_PROG`` can only be mapped read-only
(the kernel refuses writable mappings of them); a read-only mapping refuses
writes with :class:`~pybpf.BPFError`.

Lifetime: the mapping holds the map alive (it keeps a duplicate of the fd)
until :meth:`MapMemory.close`; :meth:`Map.close <pybpf.maps.Map.close>` closes
it.  Views handed out (``view``, ``element(i)``, numpy arrays) must be released
before that, or the unmapping is deferred until they are garbage collected.
"""

from __future__ import annotations

import mmap as _mmap
from typing import TYPE_CHECKING, Any, List, Optional

from .. import sys as _sys
from ..btf.codec import Codec
from ..consts import MapFlags, MapType
from ..errors import BPFError, NotSupportedError, SyscallError

if TYPE_CHECKING:
    from .map import Map

__all__ = ["MapMemory", "LiveValue"]

_MAPPABLE = frozenset({MapType.ARRAY})


class MapMemory:
    """The values of a ``BPF_F_MMAPABLE`` array, mapped into this process (see module doc).

    ``view`` is a memoryview of all elements (writable when ``writable``);
    ``m[i]`` / ``m[i] = v`` decode / encode element ``i`` through the map's value codec;
    :meth:`numpy` gives a zero-copy array.
    """

    def __init__(self, m: "Map", *, writable: Optional[bool] = None):
        if m.type not in _MAPPABLE or not m.flags & MapFlags.MMAPABLE:
            raise NotSupportedError(f"mapping map {m.name} into memory",
                                    "only array maps created with BPF_F_MMAPABLE can be mapped")
        self.map = m
        self.name = m.name
        self.elem_size = (m.value_size + 7) & ~7
        self.length = self.elem_size * m.max_entries
        pages = (self.length + _sys.PAGE_SIZE - 1) // _sys.PAGE_SIZE * _sys.PAGE_SIZE
        ro_only = bool(m.flags & (MapFlags.RDONLY | MapFlags.RDONLY_PROG)) or \
            bool(m.spec is not None and m.spec.freeze)
        if writable and ro_only:
            raise BPFError(f"map {m.name} is read-only for user space: it cannot be mapped writable")
        want_rw = writable if writable is not None else not ro_only
        ctx = f"map {m.name}"
        mm = None
        if want_rw:
            try:
                mm = _sys.mmap(m.fd, max(pages, _sys.PAGE_SIZE),
                               _mmap.PROT_READ | _mmap.PROT_WRITE, context=ctx)
            except SyscallError as e:
                # A frozen map (or one read-only for programs) only maps read-only.
                if e.errno not in (1, 13):   # EPERM, EACCES
                    raise
                if writable:
                    raise BPFError(f"map {m.name} cannot be mapped writable: it is frozen or "
                                   f"read-only for programs ({e.strerror})") from None
        if mm is None:
            mm = _sys.mmap(m.fd, max(pages, _sys.PAGE_SIZE), _mmap.PROT_READ, context=ctx)
        self._mmap: Optional[_mmap.mmap] = mm
        self.writable = mm is not None and want_rw and _is_writable(mm)
        self.view: memoryview = memoryview(mm)[:self.length]
        self._codec: Codec = m.value_codec

    # -- lifetime ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._mmap is None

    def close(self) -> None:
        """Unmap (deferred to garbage collection while exported views are alive)."""
        mm, self._mmap = self._mmap, None
        if mm is None:
            return
        try:
            self.view.release()
            mm.close()
        except BufferError:
            pass  # a caller still holds a view; the mapping goes when the last view does

    def __enter__(self) -> "MapMemory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, write: bool = False) -> None:
        if self._mmap is None:
            raise BPFError(f"map {self.name}: its memory mapping is closed")
        if write and not self.writable:
            raise BPFError(f"map {self.name} is mapped read-only (frozen or read-only for "
                           "user space): set read-only data on the spec before load")

    # -- elements ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.map.max_entries

    def _offset(self, i: int) -> int:
        n = self.map.max_entries
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"map {self.name}: index {i} outside 0..{n - 1}")
        return i * self.elem_size

    def element(self, i: int) -> memoryview:
        """Element ``i`` as a live memoryview of ``value_size`` bytes."""
        self._check()
        off = self._offset(i)
        return self.view[off:off + self.map.value_size]

    def __getitem__(self, i: int) -> Any:
        self._check()
        return self._codec.decode(self.view, self._offset(i))

    def __setitem__(self, i: int, value: Any) -> None:
        self._check(write=True)
        self._codec.encode_into(self.view, self._offset(i), value)

    def values(self) -> List[Any]:
        """Every element, decoded (one pass over the memory)."""
        self._check()
        return self._codec.decode_many(self.view, self.map.max_entries, self.elem_size)

    # -- byte ranges (global data) -------------------------------------------------------------
    def read(self, offset: int, size: int) -> bytes:
        """A copy of ``size`` bytes at ``offset``."""
        self._check()
        self._range(offset, size)
        return bytes(self.view[offset:offset + size])

    def write(self, offset: int, data: Any) -> None:
        """Overwrite the bytes at ``offset`` with ``data``."""
        self._check(write=True)
        data = memoryview(data).cast("B")
        self._range(offset, len(data))
        self.view[offset:offset + len(data)] = data

    def _range(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > self.length:
            raise BPFError(f"map {self.name}: bytes {offset}..{offset + size} outside its "
                           f"{self.length} mapped bytes")

    def value(self, offset: int, size: int, codec: Codec, name: str = "") -> "LiveValue":
        """A typed value at ``offset`` (a global variable), read and written in place."""
        self._range(offset, size)
        return LiveValue(self, offset, size, codec, name)

    # -- numpy ----------------------------------------------------------------------------------
    def numpy(self, dtype: Any = None) -> Any:
        """The elements as a zero-copy numpy array (writes go to the map when writable).

        ``dtype`` defaults to the BTF value type's (:func:`pybpf.btf.codec.numpy_dtype`),
        or raw ``V<value_size>`` bytes without BTF.
        """
        self._check()
        import numpy as np
        m = self.map
        if dtype is None:
            if m.btf is not None and getattr(m, "value_type_id", 0):
                from ..btf.codec import numpy_dtype
                dtype = numpy_dtype(m.btf, m.value_type_id)
            else:
                dtype = np.dtype(f"V{m.value_size}")
        dtype = np.dtype(dtype)
        if dtype.itemsize == self.elem_size:
            return np.frombuffer(self.view, dtype=dtype, count=m.max_entries)
        wrapped = np.dtype({"names": ["v"], "formats": [dtype], "offsets": [0],
                            "itemsize": self.elem_size})
        return np.frombuffer(self.view, dtype=wrapped, count=m.max_entries)["v"]

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("rw" if self.writable else "ro")
        return f"<pybpf.maps.MapMemory {self.name} {self.length} bytes {state}>"


class LiveValue:
    """A typed value inside mapped map memory: ``value`` decodes the bytes in place on
    every read, assigning encodes into them; ``raw`` is the bytes."""

    __slots__ = ("memory", "offset", "size", "codec", "name")

    def __init__(self, memory: MapMemory, offset: int, size: int, codec: Codec, name: str = ""):
        self.memory, self.offset, self.size, self.codec, self.name = memory, offset, size, codec, name

    @property
    def raw(self) -> bytes:
        return self.memory.read(self.offset, self.size)

    @raw.setter
    def raw(self, data: Any) -> None:
        if len(memoryview(data).cast("B")) != self.size:
            raise BPFError(f"variable {self.name}: expected {self.size} bytes")
        self.memory.write(self.offset, data)

    @property
    def value(self) -> Any:
        self.memory._check()
        return self.codec.decode(self.memory.view, self.offset)

    @value.setter
    def value(self, v: Any) -> None:
        self.memory._check(write=True)
        self.memory.view[self.offset:self.offset + self.size] = self.codec.encode(v)

    def view(self) -> memoryview:
        """The value's bytes as a live memoryview."""
        self.memory._check()
        return self.memory.view[self.offset:self.offset + self.size]

    def __repr__(self) -> str:
        return f"<pybpf.maps.LiveValue {self.name or hex(self.offset)} in {self.memory.name}>"


def _is_writable(mm: _mmap.mmap) -> bool:
    try:
        with memoryview(mm) as v:
            return not v.readonly
    except (ValueError, BufferError):
        return False
