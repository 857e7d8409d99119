"""bpf(2) map commands: create, element operations, batches, freeze.

Element operations are the hot path of a map-reading program, so they avoid
per-call allocation: each call borrows a *scratch* (an attr struct plus key and
value buffers with precomputed addresses) from a pool, copies the key in, and
copies the value out.  A scratch belongs to one call at a time, so the pool is
safe across threads and re-entrant (signal handlers, finalizers) without locks.

Buffers follow the kernel's contract, as in libbpf: ``key`` holds exactly the
map's key size; ``value`` exactly its value size -- for per-CPU maps
``round_up(value_size, 8) * possible CPUs`` bytes.
"""

from __future__ import annotations

import errno
import struct as _struct
from struct import error as _StructError
from typing import Any, List, Optional, Tuple

from ..consts import Cmd
from ._core import Buffer, Pins, attempt, bpf_call, bpf_fd, new, packer, retry, set_name, sizeof
from ._errors import bpf_error
from ._libc import ffi
from .backend import active
from .fd import FD

__all__ = [
    "map_create", "map_lookup_elem", "map_update_elem", "map_delete_elem", "map_get_next_key",
    "map_lookup_and_delete_elem", "map_freeze", "map_lookup_batch",
    "map_lookup_and_delete_batch", "map_update_batch", "map_delete_batch", "ElemBlock",
    "map_walk_lookup",
]

_LOOKUP = int(Cmd.MAP_LOOKUP_ELEM)
_UPDATE = int(Cmd.MAP_UPDATE_ELEM)
_DELETE = int(Cmd.MAP_DELETE_ELEM)
_NEXT_KEY = int(Cmd.MAP_GET_NEXT_KEY)
_LOOKUP_DELETE = int(Cmd.MAP_LOOKUP_AND_DELETE_ELEM)
_ELEM_SIZE = sizeof("map_elem_attr")
_BATCH_SIZE = sizeof("map_batch_attr")
_UINTPTR = ffi.typeof("uintptr_t")
_ELEM_PTR = ffi.typeof("struct map_elem_attr *")
# One pack_into sets the whole attribute (its padding stays zero).
_pack_elem = packer("map_elem_attr", ("map_fd", "key", "value", "flags")).pack_into
_KEY_OFF = (_ELEM_SIZE + 15) & ~15
_KEEP_LIMIT = 64 * 1024   # scratch buffers up to this size are kept for reuse


class _Scratch:
    """One block of memory: an element-op attribute, a key area and a value area.

    ``view`` is a memoryview of the block; ``kaddr``/``vaddr`` the absolute addresses of the
    key and value areas (at ``koff``/``voff`` in ``view``); ``attr`` the attribute pointer.
    """

    __slots__ = ("mem", "view", "attr", "koff", "voff", "kaddr", "vaddr", "kcap", "vcap")

    def __init__(self, kcap: int = 64, vcap: int = 512) -> None:
        kcap = (kcap + 15) & ~15
        self.mem = mem = ffi.new("char[]", _KEY_OFF + kcap + vcap)
        self.view = memoryview(ffi.buffer(mem))
        self.attr = ffi.cast(_ELEM_PTR, mem)
        base = int(ffi.cast(_UINTPTR, mem))
        self.koff = _KEY_OFF
        self.voff = _KEY_OFF + kcap
        self.kaddr = base + self.koff
        self.vaddr = base + self.voff
        self.kcap = kcap
        self.vcap = vcap

    def fit(self, klen: int, vlen: int) -> "_Scratch":
        """A bigger scratch, with room for ``klen``/``vlen`` bytes, to use instead of this one.

        It goes back to the pool after the call unless it is too big to keep around.
        """
        if klen > _KEEP_LIMIT or vlen > _KEEP_LIMIT:
            return _Scratch(klen, vlen)
        return _Scratch(max(klen, 2 * self.kcap) if klen > self.kcap else self.kcap,
                        max(vlen, 2 * self.vcap) if vlen > self.vcap else self.vcap)


_POOL: List[_Scratch] = [_Scratch()]
_take = _POOL.pop
_give = _POOL.append


def _out_of_range(fd: int, flags: int) -> OverflowError:
    return OverflowError(f"fd {fd!r} or flags {flags!r} do not fit the attribute's fields")


def _borrow() -> _Scratch:
    try:
        return _take()
    except IndexError:
        return _Scratch()


def _give_back(s: _Scratch) -> None:
    if s.kcap <= _KEEP_LIMIT and s.vcap <= _KEEP_LIMIT:
        _give(s)


# -- create ---------------------------------------------------------------------------------

def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, *,
               map_flags: int = 0, inner_map_fd: int = 0, numa_node: int = 0, map_name: str = "",
               map_ifindex: int = 0, btf_fd: int = 0, btf_key_type_id: int = 0,
               btf_value_type_id: int = 0, btf_vmlinux_value_type_id: int = 0, map_extra: int = 0,
               value_type_btf_obj_fd: int = 0, map_token_fd: int = 0,
               excl_prog_hash: Optional[bytes] = None, context: str = "") -> FD:
    """BPF_MAP_CREATE.  Keyword names are the kernel's ``bpf_attr`` field names.

    ``map_name`` is truncated to 15 bytes; the kernel accepts only ``[A-Za-z0-9_.]``.
    Setting ``map_token_fd`` also sets ``BPF_F_TOKEN_FD`` in ``map_flags``.
    """
    a = new("map_create_attr")
    a.map_type = map_type
    a.key_size = key_size
    a.value_size = value_size
    a.max_entries = max_entries
    a.map_flags = map_flags
    a.inner_map_fd = inner_map_fd
    a.numa_node = numa_node
    if map_name:
        set_name(a.map_name, map_name)
    a.map_ifindex = map_ifindex
    a.btf_fd = btf_fd
    a.btf_key_type_id = btf_key_type_id
    a.btf_value_type_id = btf_value_type_id
    a.btf_vmlinux_value_type_id = btf_vmlinux_value_type_id
    a.map_extra = map_extra
    a.value_type_btf_obj_fd = value_type_btf_obj_fd
    if map_token_fd:
        a.map_token_fd = map_token_fd
        a.map_flags = map_flags | (1 << 16)  # BPF_F_TOKEN_FD
    pins = Pins()
    if excl_prog_hash:
        a.excl_prog_hash = pins.buf(excl_prog_hash)
        a.excl_prog_hash_size = len(excl_prog_hash)
    return bpf_fd(Cmd.MAP_CREATE, a, sizeof("map_create_attr"), context)


# -- elements (hot path) --------------------------------------------------------------------

def _elem_call(cmd: int, fd: int, key: Optional[Buffer], klen: int, vin: Optional[Buffer],
               vout: Optional[bytearray], vlen: int, flags: int, context: str) -> None:
    """One element command on a pooled scratch: copy ``key`` (``None``: a null key pointer)
    and ``vin`` in, call, copy ``vlen`` bytes of the value area out into ``vout``.
    ``vlen == 0`` passes a null value pointer (the kernel wants one for deletes)."""
    s = _borrow()
    try:
        if klen > s.kcap or vlen > s.vcap:
            s = s.fit(klen, vlen)
        view = s.view
        kaddr = 0
        if key is not None:
            ko = s.koff
            view[ko:ko + klen] = key
            kaddr = s.kaddr
        vo = s.voff
        if vin is not None:
            view[vo:vo + vlen] = vin
        _pack_elem(view, 0, fd, kaddr, s.vaddr if vlen else 0, flags)
        r = active.bpf(cmd, s.attr, _ELEM_SIZE)
        if r < 0:
            retry(cmd, s.attr, _ELEM_SIZE, r, context)
        if vout is not None:
            vout[:] = view[vo:vo + vlen]
    except _StructError:
        raise _out_of_range(fd, flags) from None
    finally:
        _give_back(s)


def map_lookup_elem(fd: int, key: Buffer, value: bytearray, flags: int = 0, *,
                    context: str = "") -> None:
    """BPF_MAP_LOOKUP_ELEM: copy the value of ``key`` into the writable buffer ``value``.

    Raises :class:`~pybpf.errors.KeyNotFoundError` when the key is absent.
    """
    _elem_call(_LOOKUP, fd, key, len(key), None, value, len(value), flags, context)


def map_update_elem(fd: int, key: Buffer, value: Buffer, flags: int = 0, *,
                    context: str = "") -> None:
    """BPF_MAP_UPDATE_ELEM with ``flags`` from :class:`~pybpf.consts.UpdateFlags`.

    Raises :class:`~pybpf.errors.KeyExistsError` for ``NOEXIST`` on a present key and
    :class:`~pybpf.errors.KeyNotFoundError` for ``EXIST`` on an absent one.
    """
    _elem_call(_UPDATE, fd, key, len(key), value, None, len(value), flags, context)


def map_delete_elem(fd: int, key: Buffer, flags: int = 0, *, context: str = "") -> None:
    """BPF_MAP_DELETE_ELEM; :class:`~pybpf.errors.KeyNotFoundError` when the key is absent."""
    _elem_call(_DELETE, fd, key, len(key), None, None, 0, flags, context)


def map_get_next_key(fd: int, key: Optional[Buffer], next_key: bytearray, *,
                     context: str = "") -> None:
    """BPF_MAP_GET_NEXT_KEY: write the key after ``key`` (the first key for ``None``) into
    ``next_key``.  Raises :class:`~pybpf.errors.KeyNotFoundError` after the last key."""
    klen = len(next_key)
    _elem_call(_NEXT_KEY, fd, key, klen, None, next_key, klen, 0, context)


def map_lookup_and_delete_elem(fd: int, key: Optional[Buffer], value: bytearray,
                               flags: int = 0, *, context: str = "") -> None:
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM: pop ``key`` into ``value``.

    For queue and stack maps ``key`` is ``None`` (pop the next element).
    """
    _elem_call(_LOOKUP_DELETE, fd, key, 0 if key is None else len(key), None, value,
               len(value), flags, context)


def map_walk_lookup(fd: int, prev: Optional[bytes], keys: Any, values: Any, count: int,
                    key_size: int, value_size: int, *,
                    context: str = "") -> Tuple[int, Optional[bytes], bool]:
    """Walk a map with BPF_MAP_GET_NEXT_KEY + BPF_MAP_LOOKUP_ELEM from the key after
    ``prev`` (``None``: from the first key), writing up to ``count`` entries straight into
    the writable buffers ``keys`` (``key_size`` each) and ``values`` (``value_size`` each).

    The path of kernels and map types without batch commands.  Both attributes point
    into the caller's buffers (the next key is written where the lookup reads it, the
    value where the caller wants it), so a key costs two system calls and two attribute
    packs: no copies, no allocation.  A key deleted between the two calls is skipped.
    Returns ``(n, last_key, done)``: entries written, the key to resume after (``None``
    if none was seen) and whether the walk reached the end.
    """
    if count <= 0:
        return 0, prev, False
    kref = ffi.from_buffer(keys, require_writable=True)
    vref = ffi.from_buffer(values, require_writable=True)
    if len(kref) < count * key_size or len(vref) < count * value_size:
        raise ValueError(f"{context}: buffers too small for {count} entries")
    kbase = int(ffi.cast(_UINTPTR, kref))
    vbase = int(ffi.cast(_UINTPTR, vref))
    mem = ffi.new("char[]", 2 * _KEY_OFF + max(key_size, 1))
    view = memoryview(ffi.buffer(mem))
    base = int(ffi.cast(_UINTPTR, mem))
    nattr, lattr = ffi.cast(_ELEM_PTR, base), ffi.cast(_ELEM_PTR, base + _KEY_OFF)
    paddr = 0
    if prev is not None:
        view[2 * _KEY_OFF:2 * _KEY_OFF + key_size] = prev
        paddr = base + 2 * _KEY_OFF
    b, pack = active, _pack_elem
    n = 0
    done = False
    try:
        while n < count:
            kaddr = kbase + n * key_size
            pack(view, 0, fd, paddr, kaddr, 0)
            r = b.bpf(_NEXT_KEY, nattr, _ELEM_SIZE)
            if r < 0:
                err = b.errno(r)
                if err == _ENOENT:
                    done = True
                    break
                retry(_NEXT_KEY, nattr, _ELEM_SIZE, r, context)
            paddr = kaddr            # the next key is looked up after this one either way
            pack(view, _KEY_OFF, fd, kaddr, vbase + n * value_size, 0)
            r = b.bpf(_LOOKUP, lattr, _ELEM_SIZE)
            if r < 0:
                err = b.errno(r)
                if err == _ENOENT:
                    continue         # deleted meanwhile: its slot is reused
                retry(_LOOKUP, lattr, _ELEM_SIZE, r, context)
            n += 1
        last = bytes(ffi.buffer(ffi.cast("char *", paddr), key_size)) if paddr else None
    except _StructError:
        raise _out_of_range(fd, 0) from None
    finally:
        ffi.release(kref)
        ffi.release(vref)
    return n, last, done


def map_freeze(fd: int, *, context: str = "") -> None:
    """BPF_MAP_FREEZE: make the map read-only for user space (BPF programs may still write
    unless the map was created with ``BPF_F_RDONLY_PROG``)."""
    a = new("map_elem_attr")
    a.map_fd = fd
    bpf_call(Cmd.MAP_FREEZE, a, _ELEM_SIZE, context)


# -- batches --------------------------------------------------------------------------------

def _batch(cmd: int, fd: int, in_batch: Optional[Buffer], out_batch: Optional[bytearray],
           keys: Optional[Buffer], values: Optional[Buffer], count: int, elem_flags: int,
           flags: int, context: str, writable_kv: bool) -> Tuple[int, bool]:
    pins = Pins()
    a = new("map_batch_attr")
    a.map_fd = fd
    a.in_batch = pins.buf(in_batch)
    a.out_batch = pins.buf(out_batch, writable=True)
    a.keys = pins.buf(keys, writable=writable_kv)
    a.values = pins.buf(values, writable=writable_kv)
    a.count = count
    a.elem_flags = elem_flags
    a.flags = flags
    r = attempt(cmd, a, _BATCH_SIZE)
    done = a.count
    if r < 0:
        if r == -errno.ENOENT and cmd in (Cmd.MAP_LOOKUP_BATCH, Cmd.MAP_LOOKUP_AND_DELETE_BATCH):
            return done, True
        # Release the pinned caller buffers before raising: a traceback that keeps this
        # frame (and its cffi buffer views) alive would keep the callers' bytearrays locked.
        del pins, a
        raise _batch_error(cmd, -r, context, done)
    return done, False


def _batch_error(cmd: int, err: int, context: str, done: int) -> Exception:
    e = bpf_error(cmd, err, context)
    e.count = done  # type: ignore[attr-defined]  # elements done before the failure
    return e


def map_lookup_batch(fd: int, in_batch: Optional[Buffer], out_batch: bytearray, keys: bytearray,
                     values: bytearray, count: int, *, elem_flags: int = 0, flags: int = 0,
                     context: str = "") -> Tuple[int, bool]:
    """BPF_MAP_LOOKUP_BATCH: read up to ``count`` elements into ``keys``/``values``.

    ``in_batch`` is ``None`` for the first call, then the previous ``out_batch``; the
    batch token is key-sized for most maps (libbpf sizes it like a key, at least 4 bytes).
    Returns ``(n, done)``: ``n`` elements were read, ``done`` is true when the map has
    no more (the kernel's ENOENT).  On another failure the raised error has ``.count``.
    """
    return _batch(Cmd.MAP_LOOKUP_BATCH, fd, in_batch, out_batch, keys, values, count,
                  elem_flags, flags, context, True)


def map_lookup_and_delete_batch(fd: int, in_batch: Optional[Buffer], out_batch: bytearray,
                                keys: bytearray, values: bytearray, count: int, *,
                                elem_flags: int = 0, flags: int = 0,
                                context: str = "") -> Tuple[int, bool]:
    """BPF_MAP_LOOKUP_AND_DELETE_BATCH: like :func:`map_lookup_batch`, deleting what it reads."""
    return _batch(Cmd.MAP_LOOKUP_AND_DELETE_BATCH, fd, in_batch, out_batch, keys, values, count,
                  elem_flags, flags, context, True)


def map_update_batch(fd: int, keys: Buffer, values: Buffer, count: int, *, elem_flags: int = 0,
                     flags: int = 0, context: str = "") -> int:
    """BPF_MAP_UPDATE_BATCH: write ``count`` key/value pairs; returns how many were written."""
    return _batch(Cmd.MAP_UPDATE_BATCH, fd, None, None, keys, values, count, elem_flags, flags,
                  context, False)[0]


def map_delete_batch(fd: int, keys: Buffer, count: int, *, elem_flags: int = 0, flags: int = 0,
                     context: str = "") -> int:
    """BPF_MAP_DELETE_BATCH: delete ``count`` keys; returns how many were deleted.

    An absent key stops the batch with :class:`~pybpf.errors.SyscallError` (ENOENT) whose
    ``.count`` says how many were deleted before it.
    """
    return _batch(Cmd.MAP_DELETE_BATCH, fd, None, None, keys, None, count, elem_flags, flags,
                  context, False)[0]


# -- a prepared block for one map's element operations ----------------------------------------

_ENOENT = errno.ENOENT
_EINTR = errno.EINTR
_FLAGS_OFF = ffi.offsetof("struct map_elem_attr", "flags")
_set_flags = _struct.Struct("=Q").pack_into   # the flags field alone (a u64, at _FLAGS_OFF)


class ElemBlock:
    """Element operations on one map, with the attribute prepared once.

    The single-element path of a map-reading program is one system call; what
    Python adds around it is the cost.  An :class:`ElemBlock` owns one memory
    block holding a ``bpf_attr`` whose ``map_fd``, ``key`` and ``value`` fields
    already point at its own key area (:attr:`key`, exactly ``key_size`` bytes)
    and value area (:attr:`value`, exactly ``value_bytes``).  A lookup is then:
    write the key into :attr:`key`, call :meth:`lookup`, read :attr:`value` --
    no attribute packing, no buffer borrowing, no allocation.

    The areas are shared state: a caller owns the block for the whole
    write-call-read sequence (:class:`pybpf.maps.Map` keeps it in a one-slot
    free list and, when another thread holds it, uses the pooled functions
    such as :func:`map_lookup_elem` instead).  The fd number is written into
    the attribute, so the owner must stop using the block before closing the fd.

    :meth:`lookup` and :meth:`delete` answer an absent key with ``False`` (no
    exception on the common miss); other failures raise as the pooled functions do.
    """

    __slots__ = ("key", "value", "_mem", "_attr", "_uattr", "_dattr", "_view", "_flags", "_ctx")

    def __init__(self, fd: int, key_size: int, value_bytes: int, *, context: str = "") -> None:
        kcap = (max(key_size, 1) + 15) & ~15
        # Three attributes (lookup; update, with the caller's flags; delete, whose value
        # field must stay zero: the kernel checks that fields past ``key`` are) and the
        # data areas, in one block.
        self._mem = mem = ffi.new("char[]", 3 * _KEY_OFF + kcap + max(value_bytes, 1))
        self._view = view = memoryview(ffi.buffer(mem))
        base = int(ffi.cast(_UINTPTR, mem))
        koff = 3 * _KEY_OFF
        voff = koff + kcap
        try:
            _pack_elem(view, 0, fd, base + koff, base + voff, 0)
            _pack_elem(view, _KEY_OFF, fd, base + koff, base + voff, 0)
            _pack_elem(view, 2 * _KEY_OFF, fd, base + koff, 0, 0)
        except _StructError:
            raise _out_of_range(fd, 0) from None
        self._attr = ffi.cast(_ELEM_PTR, mem)
        self._uattr = ffi.cast(_ELEM_PTR, base + _KEY_OFF)
        self._dattr = ffi.cast(_ELEM_PTR, base + 2 * _KEY_OFF)
        self._flags = 0
        #: the key area: write exactly ``key_size`` bytes here before a call
        self.key = view[koff:koff + key_size]
        #: the value area: the value after :meth:`lookup`, the input of :meth:`update`
        self.value = view[voff:voff + value_bytes]
        self._ctx = context

    def lookup(self) -> bool:
        """BPF_MAP_LOOKUP_ELEM of :attr:`key` into :attr:`value`; ``False`` when absent."""
        r = active.bpf(_LOOKUP, self._attr, _ELEM_SIZE)
        if r < 0:
            return self._failed(_LOOKUP, self._attr, r)
        return True

    def update(self, flags: int = 0) -> None:
        """BPF_MAP_UPDATE_ELEM of :attr:`key` to :attr:`value` with ``flags``."""
        if flags != self._flags:
            try:
                _set_flags(self._view, _KEY_OFF + _FLAGS_OFF, flags)
            except _StructError:
                raise _out_of_range(-1, flags) from None
            self._flags = flags
        r = active.bpf(_UPDATE, self._uattr, _ELEM_SIZE)
        if r < 0:
            self._failed(_UPDATE, self._uattr, r, absent_ok=False)

    def delete(self) -> bool:
        """BPF_MAP_DELETE_ELEM of :attr:`key`; ``False`` when absent."""
        r = active.bpf(_DELETE, self._dattr, _ELEM_SIZE)
        if r < 0:
            return self._failed(_DELETE, self._dattr, r)
        return True

    def _failed(self, cmd: int, attr: Any, r: int, absent_ok: bool = True) -> bool:
        b = active
        while r < 0:
            err = b.errno(r)
            if err == _ENOENT and absent_ok:
                return False
            if err != _EINTR:
                raise bpf_error(cmd, err, self._ctx)
            r = b.bpf(cmd, attr, _ELEM_SIZE)
        return True

    def absent(self, cmd: int = _LOOKUP) -> Exception:
        """The :class:`~pybpf.errors.KeyNotFoundError` for a ``False`` answer (to raise)."""
        return bpf_error(cmd, _ENOENT, self._ctx)
