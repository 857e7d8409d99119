"""Map: a live BPF map (owns an fd).

Low-level operations mirror the kernel commands and work on bytes
(``lookup_raw``, ``update_raw`` ...); the Pythonic layer (``m[key]``,
``items()``, ``in``) encodes and decodes through the map's BTF key/value
types, or passes bytes through when the map has no BTF.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, List, Optional, Tuple, Union

import attrs

from .. import sys as _sys
from ..btf.codec import BytesCodec, Codec, codec_for
from ..consts import MapType, UpdateFlags
from ..errors import BPFError, KeyNotFoundError
from ..spec.map import MapSpec
from ..sys.fd import FD

__all__ = ["Map", "MapInfo", "possible_cpus"]

_PERCPU_TYPES = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
                           MapType.PERCPU_CGROUP_STORAGE})


# Map types whose keys/values are fds, ids or nothing: no BTF key/value type is accepted.
_NO_BTF_KV_TYPES = frozenset({
    MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE, MapType.ARRAY_OF_MAPS,
    MapType.HASH_OF_MAPS, MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP,
    MapType.SOCKMAP, MapType.SOCKHASH, MapType.QUEUE, MapType.STACK, MapType.RINGBUF,
    MapType.USER_RINGBUF, MapType.PROG_ARRAY})


def possible_cpus() -> int:
    """Number of possible CPUs (per-CPU map values have one slot per possible CPU)."""
    global _NCPU
    if _NCPU is None:
        try:
            with open("/sys/devices/system/cpu/possible") as f:
                text = f.read().strip()
        except OSError:
            _NCPU = os.cpu_count() or 1
            return _NCPU
        n = 0
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            n = max(n, (int(hi) if hi else int(lo)) + 1)
        _NCPU = n
    return _NCPU


_NCPU: Optional[int] = None


@attrs.frozen
class MapInfo:
    """What the kernel reports about a map (BPF_OBJ_GET_INFO_BY_FD)."""
    id: int
    type: int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int


class Map:
    """A BPF map in the kernel.

    Create one with :meth:`create` (from a :class:`MapSpec`), adopt one with
    :meth:`from_fd`, :meth:`from_id` or :meth:`from_pinned`, or get them from a
    loaded :class:`~pybpf.Collection`.  Closing the map (``close()`` or leaving
    the ``with`` block) releases the fd; the kernel frees the map when nothing
    else (programs, pins, other fds) holds it.
    """

    def __init__(self, fd: FD, *, name: str, type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int = 0, btf: Any = None, key_type_id: int = 0,
                 value_type_id: int = 0, spec: Optional[MapSpec] = None):
        self._fd = fd
        self.name = name
        self.type = MapType(type) if type in MapType._value2member_map_ else type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.spec = spec
        self.btf = btf
        self.percpu = type in _PERCPU_TYPES
        self._ncpu = possible_cpus() if self.percpu else 1
        self._stride = (value_size + 7) & ~7 if self.percpu else value_size
        self.key_codec: Codec = codec_for(btf, key_type_id) if btf is not None and key_type_id \
            else BytesCodec(key_size)
        self.value_codec: Codec = codec_for(btf, value_type_id) if btf is not None and value_type_id \
            else BytesCodec(value_size)
        self._kbuf = bytearray(max(key_size, 1))
        self._vbuf = bytearray(max(self._stride * self._ncpu, 1))

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def create(cls, spec: MapSpec, *, btf_fd: int = 0, inner_map_fd: int = 0,
               kernel_name: Optional[str] = None) -> "Map":
        """Create a map in the kernel from ``spec``."""
        if spec.type in _NO_BTF_KV_TYPES:
            btf_fd = 0   # the kernel refuses BTF key/value types for these (libbpf drops them too)
        fd = _sys.map_create(
            map_type=spec.type, key_size=spec.key_size, value_size=spec.value_size,
            max_entries=spec.max_entries, map_flags=spec.flags, inner_map_fd=inner_map_fd,
            numa_node=spec.numa_node, map_name=(kernel_name or spec.name)[:15],
            btf_fd=btf_fd if btf_fd and (spec.key_type_id or spec.value_type_id) else 0,
            btf_key_type_id=spec.key_type_id if btf_fd else 0,
            btf_value_type_id=spec.value_type_id if btf_fd else 0,
            map_extra=spec.map_extra, context=f"map {spec.name}")
        return cls(fd, name=spec.name, type=spec.type, key_size=spec.key_size,
                   value_size=spec.value_size, max_entries=spec.max_entries, flags=spec.flags,
                   btf=spec.btf, key_type_id=spec.key_type_id, value_type_id=spec.value_type_id,
                   spec=spec)

    @classmethod
    def from_fd(cls, fd: Union[int, FD], *, name: Optional[str] = None,
                spec: Optional[MapSpec] = None) -> "Map":
        """Adopt an existing map fd (takes ownership of an FD; dups a plain int).

        With ``spec``, keys and values are encoded through the spec's BTF types.
        """
        if isinstance(fd, int):
            fd = _sys.dup_fd(fd)
        info = _map_info(fd.fileno())
        btf = spec.btf if spec is not None else None
        return cls(fd, name=name or info.name, type=info.type, key_size=info.key_size,
                   value_size=info.value_size, max_entries=info.max_entries, flags=info.flags,
                   btf=btf, key_type_id=spec.key_type_id if btf else 0,
                   value_type_id=spec.value_type_id if btf else 0, spec=spec)

    @classmethod
    def from_id(cls, map_id: int) -> "Map":
        """Open the map with kernel id ``map_id``."""
        return cls.from_fd(_sys.map_get_fd_by_id(map_id))

    @classmethod
    def from_pinned(cls, path: Union[str, os.PathLike], *, spec: Optional[MapSpec] = None) -> "Map":
        """Open a map pinned on bpffs."""
        return cls.from_fd(_sys.obj_get(os.fspath(path)), spec=spec)

    # -- fd ownership -----------------------------------------------------------------------
    @property
    def fd(self) -> int:
        """The map's file descriptor (owned by this object)."""
        return self._fd.fileno()

    def close(self) -> None:
        self._fd.close()

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def __enter__(self) -> "Map":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> MapInfo:
        """The kernel's view of this map (id, name, sizes, BTF ids)."""
        return _map_info(self.fd)

    def pin(self, path: Union[str, os.PathLike]) -> None:
        """Pin the map on bpffs at ``path``."""
        _sys.obj_pin(self.fd, os.fspath(path), context=f"map {self.name}")

    def freeze(self) -> None:
        """Make the map read-only for user space (BPF_MAP_FREEZE)."""
        _sys.map_freeze(self.fd, context=f"map {self.name}")

    # -- raw operations ---------------------------------------------------------------------
    def _key_bytes(self, key: Any) -> Any:
        if isinstance(key, (bytes, bytearray, memoryview)) and len(key) == self.key_size:
            return key
        return self.key_codec.encode(key)

    def lookup_raw(self, key: bytes) -> bytes:
        """The value bytes for ``key`` (all CPUs' slots for per-CPU maps)."""
        _sys.map_lookup_elem(self.fd, key, self._vbuf, context=f"map {self.name}")
        return bytes(self._vbuf)

    def update_raw(self, key: bytes, value: bytes, flags: int = UpdateFlags.ANY) -> None:
        """Set ``key`` to ``value`` (bytes; for per-CPU maps, one 8-byte aligned slot per CPU)."""
        _sys.map_update_elem(self.fd, key, value, flags, context=f"map {self.name}")

    def delete_raw(self, key: bytes) -> None:
        _sys.map_delete_elem(self.fd, key, context=f"map {self.name}")

    def next_key_raw(self, key: Optional[bytes]) -> Optional[bytes]:
        """The key after ``key`` (the first key for ``None``), or ``None`` at the end."""
        try:
            _sys.map_get_next_key(self.fd, key, self._kbuf, context=f"map {self.name}")
        except KeyNotFoundError:
            return None
        return bytes(self._kbuf)

    # -- Python values ----------------------------------------------------------------------
    def _decode_value(self, raw: bytes) -> Any:
        if not self.percpu:
            return self.value_codec.decode(raw)
        dec = self.value_codec.decode
        return [dec(raw, i * self._stride) for i in range(self._ncpu)]

    def _encode_value(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == len(self._vbuf):
            return bytes(value)
        if not self.percpu:
            return self.value_codec.encode(value)
        vals = list(value) if isinstance(value, (list, tuple)) else [value] * self._ncpu
        if len(vals) != self._ncpu:
            raise BPFError(f"map {self.name}: per-CPU value needs {self._ncpu} items, got {len(vals)}")
        pad = b"\0" * (self._stride - self.value_size)
        return b"".join(self.value_codec.encode(v) + pad for v in vals)

    def lookup(self, key: Any, default: Any = KeyError) -> Any:
        """The decoded value for ``key`` (a list with one value per CPU for per-CPU maps)."""
        try:
            return self._decode_value(self.lookup_raw(self._key_bytes(key)))
        except KeyNotFoundError:
            if default is KeyError:
                raise
            return default

    get = lookup

    def update(self, key: Any, value: Any, flags: int = UpdateFlags.ANY) -> None:
        """Set ``key`` to ``value`` with BPF_ANY/NOEXIST/EXIST semantics (``flags``)."""
        self.update_raw(self._key_bytes(key), self._encode_value(value), flags)

    def delete(self, key: Any) -> None:
        self.delete_raw(self._key_bytes(key))

    def __getitem__(self, key: Any) -> Any:
        return self.lookup(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: Any) -> bool:
        try:
            self.lookup_raw(self._key_bytes(key))
        except KeyNotFoundError:
            return False
        return True

    def keys_raw(self) -> Iterator[bytes]:
        """Every key as bytes (next_key iteration)."""
        k: Optional[bytes] = None
        seen = 0
        limit = max(self.max_entries, 1) * 2 + 16
        while True:
            k = self.next_key_raw(k)
            if k is None:
                return
            yield k
            seen += 1
            if seen > limit:  # hash maps restart from the first key when the current one vanishes
                raise BPFError(f"map {self.name}: iteration did not terminate (map changing too fast)")

    def keys(self) -> Iterator[Any]:
        dec = self.key_codec.decode
        for k in self.keys_raw():
            yield dec(k)

    __iter__ = keys

    def items_raw(self) -> Iterator[Tuple[bytes, bytes]]:
        for k in self.keys_raw():
            try:
                yield k, self.lookup_raw(k)
            except KeyNotFoundError:
                continue  # deleted while iterating

    def items(self) -> Iterator[Tuple[Any, Any]]:
        """(key, value) pairs, decoded."""
        kd = self.key_codec.decode
        for k, v in self.items_raw():
            yield kd(k), self._decode_value(v)

    def values(self) -> Iterator[Any]:
        for _, v in self.items():
            yield v

    def __repr__(self) -> str:
        t = self.type.name if isinstance(self.type, MapType) else self.type
        return f"<pybpf.Map {self.name} type={t} fd={'closed' if self.closed else self.fd}>"


def _map_info(fd: int) -> MapInfo:
    i = _sys.map_info(fd)
    return MapInfo(id=i["id"], type=i["type"], name=i["name"], key_size=i["key_size"],
                   value_size=i["value_size"], max_entries=i["max_entries"], flags=i["map_flags"],
                   btf_id=i["btf_id"], btf_key_type_id=i["btf_key_type_id"],
                   btf_value_type_id=i["btf_value_type_id"])
