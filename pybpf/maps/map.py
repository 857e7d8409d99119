"""Map: a live BPF map (owns an fd).

Low-level operations mirror the kernel commands and work on bytes
(``lookup_raw``, ``update_raw`` ...); the Pythonic layer (``m[key]``,
``items()``, ``in``) encodes and decodes through the map's BTF key/value
codecs (:mod:`pybpf.btf.codec`), or passes bytes through when the map has no BTF.

Whole-map operations go through the kernel's batch commands when the map
supports them (:mod:`pybpf.maps.batch`), BPF_F_MMAPABLE arrays can be mapped
into the process (:meth:`Map.memory`, :mod:`pybpf.maps.memory`), and the
special map kinds have their own verbs: queue/stack/bloom filter ``push`` /
``pop`` / ``peek``, map-in-map ``set_inner`` / ``inner_id``, per-CPU
``lookup_sum``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import ipaddress
import os
import time
from struct import error as _StructError
from sys import byteorder as _BYTEORDER
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import attrs

from .. import sys as _sys
from ..btf.codec import BytesCodec, Codec, CodecError, codec_for
from ..consts import Cmd, MapFlags, MapType, UpdateFlags
from ..errors import BPFError, KeyNotFoundError, NotSupportedError
from ..spec.map import MapSpec
from ..sys.fd import FD
from . import batch as _batch
from . import keyless as _keyless
from .percpu import possible_cpus, sum_values

__all__ = ["Map", "MapInfo", "possible_cpus"]

_PERCPU_TYPES = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
                           MapType.PERCPU_CGROUP_STORAGE})

# Map types whose keys/values are fds, ids or nothing: no BTF key/value type is accepted.
_NO_BTF_KV_TYPES = frozenset({
    MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE, MapType.ARRAY_OF_MAPS,
    MapType.HASH_OF_MAPS, MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP,
    MapType.SOCKMAP, MapType.SOCKHASH, MapType.QUEUE, MapType.STACK, MapType.RINGBUF,
    MapType.USER_RINGBUF, MapType.PROG_ARRAY})

_MAP_IN_MAP = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})
_FD_VALUED = _MAP_IN_MAP | {MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY,
                            MapType.SOCKMAP, MapType.SOCKHASH, MapType.XSKMAP}
_KEYLESS = frozenset({MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER})
_LOCAL_STORAGE = frozenset({MapType.TASK_STORAGE, MapType.CGRP_STORAGE, MapType.SK_STORAGE,
                            MapType.INODE_STORAGE})
_LPM_HEADER = 4   # struct bpf_lpm_trie_key_hdr { __u32 prefixlen; }
_ABSENT = object()
_DELETE = int(Cmd.MAP_DELETE_ELEM)


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
    map_extra: int = 0


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a dump creates a million records: they cannot form
    cycles, and each collection would rescan the growing result for nothing."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Map:
    """A BPF map in the kernel.

    Create one with :meth:`create` (from a :class:`MapSpec`), adopt one with
    :meth:`from_fd`, :meth:`from_id` or :meth:`from_pinned`, or get them from a
    loaded :class:`~pybpf.Collection`.  Closing the map (``close()`` or leaving
    the ``with`` block) releases the fd and any mapping of its memory; the kernel
    frees the map when nothing else (programs, pins, other fds) holds it.

    Per-CPU maps (``percpu`` is true) hold one value per possible CPU: values
    are lists of ``possible_cpus()`` items, each slot 8-byte aligned in the raw
    bytes (``value_stride``); :meth:`lookup_sum` adds them up.

    Element methods are safe to call from several threads: each call holds the
    map's prepared element block (:class:`pybpf.sys.ElemBlock`) for its duration,
    and a call that finds it busy uses buffers of its own.
    """

    def __init__(self, fd: FD, *, name: str, type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int = 0, btf: Any = None, key_type_id: int = 0,
                 value_type_id: int = 0, spec: Optional[MapSpec] = None, map_extra: int = 0):
        self._fd = fd
        fd.owner = f"map {name}"
        self.name = name
        self.type = MapType(type) if type in MapType._value2member_map_ else type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.map_extra = map_extra
        self.spec = spec
        self.btf = btf
        self.key_type_id = key_type_id if btf is not None else 0
        self.value_type_id = value_type_id if btf is not None else 0
        self.percpu = type in _PERCPU_TYPES
        self.ncpu = possible_cpus() if self.percpu else 1
        #: bytes between per-CPU slots of a value (value_size rounded up to 8 for per-CPU maps)
        self.value_stride = (value_size + 7) & ~7 if self.percpu else value_size
        #: bytes of one element's value as the kernel copies it (all CPUs' slots)
        self.value_bytes = self.value_stride * self.ncpu
        self.key_codec: Codec = codec_for(btf, key_type_id) if btf is not None and key_type_id \
            else BytesCodec(key_size)
        self.value_codec: Codec = codec_for(btf, value_type_id) if btf is not None and value_type_id \
            else BytesCodec(value_size)
        if self.type in _FD_VALUED and value_size == 4 and isinstance(self.value_codec, BytesCodec):
            self.value_codec = _u32_codec()      # lookups return inner map / program ids
        if self.type in _FD_VALUED and key_size == 4 and isinstance(self.key_codec, BytesCodec):
            self.key_codec = _u32_codec()        # fd arrays are indexed by u32
        self._ctx = f"map {name}"
        # The single-element hot path: a prepared attribute and key/value areas (see
        # pybpf.sys.ElemBlock), an integer key packer and the value decoder, chosen once.
        self._elem = _sys.ElemBlock(fd.fileno(), key_size, self.value_bytes, context=self._ctx)
        # A one-slot free list: dict.pop(0, None) is atomic and answers None while a call
        # (in any thread) holds the block; that call then uses the pooled pybpf.sys functions.
        self._free = free = {0: self._elem}
        self._kint = self.key_codec.int_pack_into() if key_size else None
        if self.percpu:   # (a partial, not a bound method: no reference cycle through self)
            self._vdecode = functools.partial(self.value_codec.decode_many, count=self.ncpu,
                                              stride=self.value_stride)
            read, make = self._vdecode, None
        else:
            self._vdecode = self.value_codec.decode
            read, make = self.value_codec.exact_decoder()
        # Everything lookup() needs, fetched with one attribute load and inlined there.
        self._hot = (free, free.pop, self._kint, self._elem.key, self._elem.value,
                     self._elem.lookup, read, make)
        self._batch_ok: Dict[int, bool] = {}      # batch command -> works on this map (once tried)
        self._memory: Any = None

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def create(cls, spec: MapSpec, *, btf_fd: int = 0, inner_map_fd: int = 0,
               kernel_name: Optional[str] = None) -> "Map":
        """Create a map in the kernel from ``spec``.

        For map-in-map specs without ``inner_map_fd``, a temporary inner map is created
        from ``spec.inner_map`` (the kernel only needs it as a template).
        """
        if spec.type in _NO_BTF_KV_TYPES:
            btf_fd = 0   # the kernel refuses BTF key/value types for these (libbpf drops them too)
        inner: Optional[Map] = None
        if spec.type in _MAP_IN_MAP and not inner_map_fd:
            if spec.inner_map is None:
                raise BPFError(f"map {spec.name}: a map-in-map needs an inner map spec")
            inner = cls.create(spec.inner_map, kernel_name=spec.inner_map.name[:15])
            inner_map_fd = inner.fd
        try:
            fd = _sys.map_create(
                map_type=spec.type, key_size=spec.key_size, value_size=spec.value_size,
                max_entries=spec.max_entries, map_flags=spec.flags, inner_map_fd=inner_map_fd,
                numa_node=spec.numa_node, map_name=(kernel_name or spec.name)[:15],
                btf_fd=btf_fd if btf_fd and (spec.key_type_id or spec.value_type_id) else 0,
                btf_key_type_id=spec.key_type_id if btf_fd else 0,
                btf_value_type_id=spec.value_type_id if btf_fd else 0,
                map_extra=spec.map_extra, context=f"map {spec.name}")
        finally:
            if inner is not None:
                inner.close()
        return cls(fd, name=spec.name, type=spec.type, key_size=spec.key_size,
                   value_size=spec.value_size, max_entries=spec.max_entries, flags=spec.flags,
                   btf=spec.btf, key_type_id=spec.key_type_id, value_type_id=spec.value_type_id,
                   spec=spec, map_extra=spec.map_extra)

    @classmethod
    def from_fd(cls, fd: Union[int, FD], *, name: Optional[str] = None,
                spec: Optional[MapSpec] = None) -> "Map":
        """Adopt an existing map fd (takes ownership of an FD; dups a plain int).

        With ``spec``, keys and values are encoded through the spec's BTF types.
        """
        if isinstance(fd, int):
            fd = _sys.dup_fd(fd)
        try:
            info = _map_info(fd.fileno())
        except BaseException:
            fd.close()
            raise
        btf = spec.btf if spec is not None else None
        return cls(fd, name=name or info.name, type=info.type, key_size=info.key_size,
                   value_size=info.value_size, max_entries=info.max_entries, flags=info.flags,
                   btf=btf, key_type_id=spec.key_type_id if btf else 0,
                   value_type_id=spec.value_type_id if btf else 0, spec=spec,
                   map_extra=info.map_extra)

    @classmethod
    def from_id(cls, map_id: int, *, spec: Optional[MapSpec] = None) -> "Map":
        """Open the map with kernel id ``map_id``."""
        return cls.from_fd(_sys.map_get_fd_by_id(map_id, context=f"map id {map_id}"), spec=spec)

    @classmethod
    def from_pinned(cls, path: Union[str, os.PathLike], *, spec: Optional[MapSpec] = None) -> "Map":
        """Open a map pinned on bpffs."""
        return cls.from_fd(_sys.obj_get(os.fspath(path), context=f"pinned map {os.fspath(path)}"),
                           spec=spec)

    # -- fd ownership -----------------------------------------------------------------------
    @property
    def fd(self) -> int:
        """The map's file descriptor (owned by this object)."""
        return self._fd.fileno()

    def close(self) -> None:
        """Release the map's memory mapping (if any) and its fd."""
        if self._memory is not None:
            self._memory.close()
            self._memory = None
        if not self._fd.closed:
            self._retire_elem()
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
        _sys.obj_pin(self.fd, os.fspath(path), context=self._ctx)

    def freeze(self) -> None:
        """Make the map read-only for user space (BPF_MAP_FREEZE); BPF programs may still
        write to it unless it was created with ``BPF_F_RDONLY_PROG``."""
        _sys.map_freeze(self.fd, context=self._ctx)

    # -- raw operations ---------------------------------------------------------------------
    # The element methods below take the map's ElemBlock when it is free (the usual case)
    # and fall back to the pooled pybpf.sys functions when another thread holds it (or the
    # map is closed: then fileno() raises the closed-fd error).
    def _raw(self, data: Any, size: int, what: str) -> memoryview:
        """``data`` as bytes checked against ``size`` (what the ``*_raw`` methods accept)."""
        try:
            b = memoryview(data).cast("B")
        except TypeError:
            raise CodecError(f"{self._ctx}: raw {what} must be bytes-like, got "
                             f"{type(data).__name__}") from None
        if len(b) != size:
            raise CodecError(f"{self._ctx}: {what} must be {size} bytes, got {len(b)}")
        return b

    def _raw_key(self, key: Any) -> memoryview:
        """A raw key checked against ``key_size``."""
        return self._raw(key, self.key_size, "key")

    def _put_key(self, area: memoryview, key: Any) -> None:
        """Write ``key`` (bytes of ``key_size``, an int, or anything the key codec takes)."""
        kint = self._kint
        if kint is not None and type(key) is int:
            try:
                kint(area, 0, key)
                return
            except _StructError:
                pass    # negative or too big: key_bytes() says which, or encodes it
        t = type(key)
        if (t is bytes or t is bytearray) and len(key) == self.key_size:
            area[:] = key
        else:
            area[:] = memoryview(self.key_bytes(key)).cast("B")

    def _retire_elem(self) -> None:
        """Take the element block for good, so no call can use the fd number once it is
        closed; waits (briefly) for a call in flight in another thread."""
        deadline = time.monotonic() + 1.0
        while self._free.pop(0, None) is None and time.monotonic() < deadline:
            time.sleep(0.0005)    # (past the deadline: held by an interrupted frame of ours)

    def lookup_raw(self, key: Any) -> bytes:
        """The value bytes for ``key`` (bytes; all CPUs' slots for per-CPU maps)."""
        free, pop, _, kbuf, vbuf, call, _, _ = self._hot
        h = pop(0, None)
        if h is not None:
            try:
                t = type(key)
                kbuf[:] = key if (t is bytes or t is bytearray) and len(key) == self.key_size \
                    else self._raw_key(key)
                if call():
                    return vbuf.tobytes()
                raise h.absent()
            finally:
                free[0] = h
        out = bytearray(max(self.value_bytes, 1))
        _sys.map_lookup_elem(self._fd.fileno(), self._raw_key(key), out, context=self._ctx)
        return bytes(out)

    def lookup_into(self, key: Any, out: bytearray) -> None:
        """Copy the value of ``key`` into ``out`` (``value_bytes`` long): no allocation."""
        if len(out) != self.value_bytes:
            raise CodecError(f"{self._ctx}: output buffer must be {self.value_bytes} bytes, "
                             f"got {len(out)}")
        _sys.map_lookup_elem(self._fd.fileno(), self._raw_key(key), out, context=self._ctx)

    def update_raw(self, key: Any, value: Any, flags: int = UpdateFlags.ANY) -> None:
        """Set ``key`` to ``value`` (bytes; for per-CPU maps, one 8-byte aligned slot per CPU)."""
        v = self._raw(value, self.value_bytes, "value")
        h = self._free.pop(0, None)
        if h is not None:
            try:
                h.key[:] = self._raw_key(key)
                h.value[:] = v
                h.update(flags)
                return
            finally:
                self._free[0] = h
        _sys.map_update_elem(self._fd.fileno(), self._raw_key(key), v, flags, context=self._ctx)

    def delete_raw(self, key: Any) -> None:
        """Remove ``key``; :class:`~pybpf.KeyNotFoundError` when absent."""
        self._delete(self._raw_key(key))

    def _delete(self, key: Any) -> None:
        h = self._free.pop(0, None)
        if h is not None:
            try:
                self._put_key(h.key, key)
                if h.delete():
                    return
                raise h.absent(_DELETE)
            finally:
                self._free[0] = h
        _sys.map_delete_elem(self._fd.fileno(), self.key_bytes(key), context=self._ctx)

    def next_key_raw(self, key: Optional[Any]) -> Optional[bytes]:
        """The key after ``key`` (the first key for ``None``), or ``None`` at the end."""
        out = bytearray(max(self.key_size, 1))    # per call: safe across threads
        try:
            _sys.map_get_next_key(self._fd.fileno(), key, out, context=self._ctx)
        except KeyNotFoundError:
            return None
        return bytes(out)

    def lookup_and_delete_raw(self, key: Any) -> bytes:
        """Atomically read and remove ``key`` (BPF_MAP_LOOKUP_AND_DELETE_ELEM)."""
        out = bytearray(max(self.value_bytes, 1))
        _sys.map_lookup_and_delete_elem(self._fd.fileno(), key, out, context=self._ctx)
        return bytes(out)

    # -- Python values ----------------------------------------------------------------------
    def key_bytes(self, key: Any) -> Any:
        """``key`` encoded for the kernel (bytes of ``key_size`` pass through).

        LPM trie maps also take ``"10.0.0.0/8"``, ``ipaddress`` networks/addresses and
        ``(prefixlen, bytes)``.
        """
        if isinstance(key, (bytes, bytearray, memoryview)) and len(key) == self.key_size:
            return key
        if self.type == MapType.LPM_TRIE and not isinstance(key, dict):
            raw = _lpm_key(key, self.key_size)
            if raw is not None:
                return raw
        try:
            return self.key_codec.encode(key)
        except CodecError as e:
            raise CodecError(f"{self._ctx}: key {key!r}: {e}") from None

    _key_bytes = key_bytes

    def _decode_value(self, raw: Any, offset: int = 0) -> Any:
        if not self.percpu:
            return self.value_codec.decode(raw, offset)
        return self.value_codec.decode_many(raw, self.ncpu, self.value_stride, offset)

    def value_bytes_of(self, value: Any) -> bytes:
        """``value`` encoded for the kernel.

        Per-CPU maps take a ``list`` with one value per possible CPU, or any other value
        (a number, a record, a tuple) for every CPU.
        Map-in-map values may be a :class:`Map` (its fd is stored), program arrays a program.
        """
        if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == self.value_bytes:
            return bytes(value)
        if self.type in _FD_VALUED and not isinstance(value, (bytes, bytearray, memoryview)):
            fd = value if isinstance(value, int) else getattr(value, "fd", None)
            if not isinstance(fd, int):
                raise CodecError(f"{self._ctx}: value must be an fd or an object with .fd, "
                                 f"got {value!r}")
            # sockmap/sockhash values may be 8 bytes: the kernel then reads a u64 fd
            return fd.to_bytes(8 if self.value_size == 8 else 4, _BYTEORDER)
        try:
            if not self.percpu:
                return self.value_codec.encode(value)
            vals = value if isinstance(value, list) else [value] * self.ncpu
            if len(vals) != self.ncpu:
                raise CodecError(f"per-CPU value needs {self.ncpu} items, got {len(vals)}")
            pad = b"\0" * (self.value_stride - self.value_size)
            return b"".join(self.value_codec.encode(v) + pad for v in vals)
        except CodecError as e:
            raise CodecError(f"{self._ctx}: value {value!r}: {e}") from None

    _encode_value = value_bytes_of

    def lookup(self, key: Any, default: Any = KeyError) -> Any:
        """The decoded value for ``key`` (a list with one value per CPU for per-CPU maps);
        ``default`` when absent if given, else :class:`~pybpf.KeyNotFoundError`."""
        # The hot path of every map-reading tool: one attribute load, then only C-level
        # calls (take the element block, pack the key, the system call, unpack, build the
        # record) around one Python frame for the call (pybpf.sys.ElemBlock.lookup).
        free, pop, kint, kbuf, vbuf, call, read, make = self._hot
        h = pop(0, None)
        if h is None:        # closed, or another thread holds the block: the pooled path
            return self._lookup_pooled(key, default)
        try:
            if kint is not None and type(key) is int:
                try:
                    kint(kbuf, 0, key)
                except _StructError:
                    self._put_key(kbuf, key)
            else:
                self._put_key(kbuf, key)
            if call():
                return read(vbuf) if make is None else make(read(vbuf))
            if default is KeyError:
                raise h.absent()
            return default
        finally:
            free[0] = h

    def _lookup_pooled(self, key: Any, default: Any) -> Any:
        out = bytearray(max(self.value_bytes, 1))
        try:
            _sys.map_lookup_elem(self._fd.fileno(), self.key_bytes(key), out, context=self._ctx)
        except KeyNotFoundError:
            if default is KeyError:
                raise
            return default
        return self._vdecode(out)

    get = lookup

    def lookup_sum(self, key: Any, default: Any = KeyError) -> Any:
        """A per-CPU value summed over CPUs (records field by field, arrays item by item)."""
        v = self.lookup(key, default)
        return sum_values(v) if self.percpu and v is not default else v

    def update(self, key: Any, value: Any, flags: int = UpdateFlags.ANY) -> None:
        """Set ``key`` to ``value`` with BPF_ANY/NOEXIST/EXIST semantics (``flags``)."""
        raw = self.value_bytes_of(value)
        if len(raw) != self.value_bytes:
            raise CodecError(f"{self._ctx}: value {value!r} encodes to {len(raw)} bytes, "
                             f"the map's values are {self.value_bytes}")
        h = self._free.pop(0, None)
        if h is not None:
            try:
                self._put_key(h.key, key)
                h.value[:] = raw
                h.update(flags)
                return
            finally:
                self._free[0] = h
        _sys.map_update_elem(self._fd.fileno(), self.key_bytes(key), raw, flags,
                             context=self._ctx)

    def delete(self, key: Any) -> None:
        """Remove ``key``; :class:`~pybpf.KeyNotFoundError` when absent."""
        self._delete(key)

    def pop_key(self, key: Any, default: Any = KeyError) -> Any:
        """Atomically read and delete ``key`` (hash maps; the kernel's LOOKUP_AND_DELETE)."""
        try:
            return self._decode_value(self.lookup_and_delete_raw(self.key_bytes(key)))
        except KeyNotFoundError:
            if default is KeyError:
                raise
            return default

    __getitem__ = lookup   # m[key]: no extra frame on the hot path

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: Any) -> bool:
        if self.type == MapType.BLOOM_FILTER:
            return _keyless.bloom_contains(self, key)
        h = self._free.pop(0, None)
        if h is not None:
            try:
                self._put_key(h.key, key)
                return h.lookup()
            finally:
                self._free[0] = h
        return self.lookup(key, _ABSENT) is not _ABSENT

    # -- iteration (batched where the kernel can) --------------------------------------------
    def _check_iterable(self) -> None:
        if self.type in _KEYLESS:
            raise NotSupportedError(f"iterating {self._ctx}",
                                    f"{self.type.name} maps have no keys: use pop()/peek()")
        if self.type in _LOCAL_STORAGE:
            raise NotSupportedError(f"iterating {self._ctx}",
                                    f"{self.type.name} maps are keyed by the owner's fd (pidfd, "
                                    "cgroup or socket fd) and cannot be walked from user space")

    def keys_raw(self) -> Iterator[bytes]:
        """Every key as bytes (BPF_MAP_GET_NEXT_KEY iteration)."""
        self._check_iterable()
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
                raise BPFError(f"{self._ctx}: iteration did not terminate (map changing too fast)")

    def keys(self) -> Iterator[Any]:
        dec = self.key_codec.decode
        for k in self.keys_raw():
            yield dec(k)

    __iter__ = keys

    def items_raw(self) -> Iterator[Tuple[bytes, bytes]]:
        """(key, value) bytes pairs, read a batch at a time (per key where the kernel has no
        batch operations for this map)."""
        self._check_iterable()
        ks, vs = self.key_size, self.value_bytes
        for kb, vb, n in _batch.iter_batches(self):
            kraw, vraw = bytes(kb), bytes(vb)
            for i in range(n):
                yield kraw[i * ks:(i + 1) * ks], vraw[i * vs:(i + 1) * vs]

    def items(self) -> Iterator[Tuple[Any, Any]]:
        """(key, value) pairs, decoded, read a batch at a time."""
        self._check_iterable()
        for kb, vb, n in _batch.iter_batches(self):
            yield from zip(self.key_codec.decode_many(kb, n), self._decode_values(vb, n))

    def values(self) -> Iterator[Any]:
        for _, v in self.items():
            yield v

    def _decode_values(self, buf: Any, n: int) -> List[Any]:
        if not self.percpu:
            return self.value_codec.decode_many(buf, n, self.value_bytes)
        nc = self.ncpu
        flat = self.value_codec.decode_many(buf, n * nc, self.value_stride)
        return [flat[i:i + nc] for i in range(0, n * nc, nc)]

    def __len__(self) -> int:
        """The number of entries (walks the map; arrays always hold ``max_entries``)."""
        if self.type in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            return self.max_entries
        self._check_iterable()
        return sum(n for _, _, n in _batch.iter_batches(self))

    # -- whole-map operations (pybpf.maps.batch) ----------------------------------------------
    def dump_raw(self, *, delete: bool = False) -> Tuple[memoryview, memoryview, int]:
        """Every entry as two packed buffers ``(keys, values, n)``: ``n * key_size`` and
        ``n * value_bytes`` bytes.  ``delete`` removes what it reads (LOOKUP_AND_DELETE_BATCH)."""
        self._check_iterable()
        return _batch.dump_raw(self, delete=delete)

    def dump(self, *, delete: bool = False, sum_cpus: bool = False) -> Dict[Any, Any]:
        """Every entry as a ``dict`` of decoded keys and values (per-CPU values as lists,
        or summed with ``sum_cpus``).

        Big maps are read a chunk ahead on a helper thread while the previous chunk is
        decoded (:func:`pybpf.maps.batch.read_ahead`): the kernel's copying overlaps the
        Python work."""
        out: Dict[Any, Any] = {}
        kdec = self.key_codec.decode_many

        def take(kb: memoryview, vb: memoryview, n: int) -> None:
            vals = self._decode_values(vb, n)
            if sum_cpus and self.percpu:
                vals = [sum_values(v) for v in vals]
            try:
                out.update(zip(kdec(kb, n), vals))
            except TypeError:
                raise CodecError(f"{self._ctx}: its keys decode to unhashable values "
                                 "(arrays become lists): use dump_lists() or items()") from None

        self._check_iterable()
        with _gc_paused():
            _batch.read_ahead(self, take, delete=delete)
        return out

    def dump_lists(self, *, delete: bool = False,
                   sum_cpus: bool = False) -> Tuple[List[Any], List[Any]]:
        """Every entry as two lists, decoded keys and decoded values in the same order:
        :meth:`dump` without building a dict (hashing a million random keys costs about
        as much as decoding them)."""
        keys: List[Any] = []
        vals: List[Any] = []
        kdec = self.key_codec.decode_many

        def take(kb: memoryview, vb: memoryview, n: int) -> None:
            keys.extend(kdec(kb, n))
            vals.extend(self._decode_values(vb, n))

        self._check_iterable()
        with _gc_paused():
            _batch.read_ahead(self, take, delete=delete)
        if sum_cpus and self.percpu:
            vals = [sum_values(v) for v in vals]
        return keys, vals

    def dump_numpy(self, *, delete: bool = False) -> Tuple[Any, Any]:
        """Every entry as two numpy arrays (keys, values) with the BTF types' dtypes
        (raw ``V<size>`` without BTF); per-CPU values have shape ``(n, ncpu)``."""
        from .numpy_view import dump_numpy
        return dump_numpy(self, delete=delete)

    def drain(self, *, sum_cpus: bool = False) -> Dict[Any, Any]:
        """Read and delete every entry (atomically per batch where the kernel can)."""
        return self.dump(delete=True, sum_cpus=sum_cpus)

    def update_batch(self, items: Union[Mapping[Any, Any], Iterable[Tuple[Any, Any]]],
                     flags: int = UpdateFlags.ANY) -> int:
        """Write many entries in one BPF_MAP_UPDATE_BATCH (per key where unsupported);
        returns how many were written."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        kb = _batch.encode_keys(self, [k for k, _ in pairs])
        vb = _batch.encode_values(self, [v for _, v in pairs])
        return _batch.update_raw(self, kb, vb, len(pairs), flags)

    def update_batch_raw(self, keys: Any, values: Any, count: int,
                         flags: int = UpdateFlags.ANY) -> int:
        """BPF_MAP_UPDATE_BATCH of ``count`` packed keys and values (bytes-like)."""
        return _batch.update_raw(self, keys, values, count, flags)

    def delete_batch(self, keys: Iterable[Any]) -> int:
        """Delete many keys (BPF_MAP_DELETE_BATCH, per key where unsupported); every key
        must exist.  Returns how many were deleted."""
        ks = list(keys)
        return _batch.delete_raw(self, _batch.encode_keys(self, ks), len(ks))

    def delete_batch_raw(self, keys: Any, count: int) -> int:
        return _batch.delete_raw(self, keys, count)

    def lookup_batch(self, cursor: "_batch.BatchCursor", count: Optional[int] = None, *,
                     delete: bool = False) -> List[Tuple[Any, Any]]:
        """The next ``count`` (default: an automatic batch size) decoded entries after
        ``cursor`` (a :class:`~pybpf.maps.BatchCursor`, updated in place; ``cursor.done``
        once the map is exhausted)."""
        kb, vb, n = _batch.lookup_chunk(self, cursor, count, delete=delete)
        return list(zip(self.key_codec.decode_many(kb, n), self._decode_values(vb, n)))

    def lookup_batch_into(self, cursor: "_batch.BatchCursor", keys: Any, values: Any,
                          count: int, *, delete: bool = False) -> int:
        """Zero-copy batch read into caller buffers (writable, ``count`` entries long);
        returns the number of entries written."""
        return _batch.lookup_into(self, cursor, keys, values, count, delete=delete)

    def clear(self) -> int:
        """Delete every entry (hash-like maps); returns how many were deleted."""
        self._check_iterable()
        return _batch.clear(self)

    @property
    def batch_supported(self) -> Optional[bool]:
        """Whether BPF_MAP_LOOKUP_BATCH works on this map (``None``: not tried yet)."""
        return self._batch_ok.get(Cmd.MAP_LOOKUP_BATCH) if self._batch_ok else None

    # -- memory (BPF_F_MMAPABLE arrays, global data) ------------------------------------------
    def memory(self, *, writable: Optional[bool] = None) -> Any:
        """The map's values mapped into this process (:class:`~pybpf.maps.MapMemory`):
        reads and writes are the kernel's memory, live.  Needs ``BPF_F_MMAPABLE`` (global
        data maps are created with it).  ``writable=None`` maps read-write unless the map is
        frozen or read-only for user space.  The mapping is shared and closed with the map.
        """
        m = self._memory
        if m is None or m.closed or (writable and not m.writable):
            from .memory import MapMemory
            if m is not None:
                m.close()
            m = self._memory = MapMemory(self, writable=writable)
        return m

    @property
    def mmapable(self) -> bool:
        return bool(self.flags & MapFlags.MMAPABLE)

    # -- queue / stack / bloom filter (pybpf.maps.keyless) --------------------------------------
    def push(self, value: Any, flags: int = UpdateFlags.ANY) -> None:
        """Queue/stack: add ``value`` (``UpdateFlags.EXIST`` overwrites the oldest when full).
        Bloom filter: add ``value`` (test with ``value in m``)."""
        _keyless.push(self, value, flags)

    def pop(self, default: Any = KeyError) -> Any:
        """Queue: remove and return the oldest value; stack: the newest.  ``default`` (if
        given) when empty, else :class:`~pybpf.KeyNotFoundError`."""
        return _keyless.pop(self, default)

    def peek(self, default: Any = KeyError) -> Any:
        """The value :meth:`pop` would return, without removing it."""
        return _keyless.peek(self, default)

    # -- map-in-map ------------------------------------------------------------------------------
    def set_inner(self, key: Any, inner: Union["Map", int]) -> None:
        """Store inner map ``inner`` (a :class:`Map` or map fd) at ``key`` of a map-in-map."""
        self._need(_MAP_IN_MAP, "set_inner")
        self.update(key, inner)

    def inner_id(self, key: Any) -> int:
        """The kernel id of the inner map at ``key`` (what lookups of a map-in-map return)."""
        self._need(_MAP_IN_MAP, "inner_id")
        return int.from_bytes(self.lookup_raw(self.key_bytes(key))[:4], _BYTEORDER)

    def inner(self, key: Any) -> "Map":
        """Open the inner map at ``key`` (a new :class:`Map` owning a new fd)."""
        inner_spec = self.spec.inner_map if self.spec is not None else None
        return Map.from_id(self.inner_id(key), spec=inner_spec)

    def create_inner(self, name: Optional[str] = None) -> "Map":
        """Create a new map from this map-in-map's inner map spec (to store with
        :meth:`set_inner`)."""
        self._need(_MAP_IN_MAP, "create_inner")
        if self.spec is None or self.spec.inner_map is None:
            raise BPFError(f"{self._ctx}: no inner map spec to create inner maps from")
        s = self.spec.inner_map.copy()
        if name:
            s.name = name
        return Map.create(s, kernel_name=s.name[:15])

    def _need(self, types: frozenset, op: str) -> None:
        if self.type not in types:
            raise NotSupportedError(f"{op} on {self._ctx}",
                                    f"not a {'/'.join(t.name for t in sorted(types))} map")

    def __repr__(self) -> str:
        t = self.type.name if isinstance(self.type, MapType) else self.type
        return f"<pybpf.Map {self.name} type={t} fd={'closed' if self.closed else self.fd}>"


_U32: Optional[Codec] = None


def _u32_codec() -> Codec:
    """A native-order u32 codec (for fd/id-valued maps, which carry no BTF)."""
    global _U32
    if _U32 is None:
        from ..btf import Spec
        from ..btf.marshal import marshal
        from ..btf.types import Int, IntEncoding
        bo = "<" if _BYTEORDER == "little" else ">"
        spec = Spec.parse(marshal([Int("unsigned int", 4, IntEncoding.NONE, 0, 32)], byteorder=bo))
        _U32 = codec_for(spec, 1)
        _U32_SPEC.append(spec)   # codecs are cached per spec (weakly): keep it alive
    return _U32


_U32_SPEC: List[Any] = []


def _lpm_key(key: Any, key_size: int) -> Optional[bytes]:
    """``struct bpf_lpm_trie_key`` bytes (host-order prefixlen, then the address bytes in
    network order) for a network/address/``(prefixlen, data)``; ``None`` for other keys."""
    if isinstance(key, str):
        try:
            key = ipaddress.ip_network(key, strict=False)
        except ValueError:
            return None
    if isinstance(key, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        key = ipaddress.ip_network(key)
    if isinstance(key, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        plen, data = key.prefixlen, key.network_address.packed
    elif isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], (bytes, bytearray)) \
            and isinstance(key[0], int):
        plen, data = key
    else:
        return None
    n = key_size - _LPM_HEADER
    if len(data) > n:
        raise CodecError(f"LPM key data of {len(data)} bytes does not fit {n}")
    if not 0 <= plen <= 8 * n:
        raise CodecError(f"LPM prefix length {plen} outside 0..{8 * n}")
    return int(plen).to_bytes(4, _BYTEORDER) + bytes(data).ljust(n, b"\0")


def _map_info(fd: int) -> MapInfo:
    i = _sys.map_info(fd)
    return MapInfo(id=i["id"], type=i["type"], name=i["name"], key_size=i["key_size"],
                   value_size=i["value_size"], max_entries=i["max_entries"], flags=i["map_flags"],
                   btf_id=i["btf_id"], btf_key_type_id=i["btf_key_type_id"],
                   btf_value_type_id=i["btf_value_type_id"], map_extra=i.get("map_extra", 0))
