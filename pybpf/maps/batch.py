"""Whole-map reads and writes: the kernel's batch commands, with a per-key fallback.

BPF_MAP_LOOKUP_BATCH (and LOOKUP_AND_DELETE / UPDATE / DELETE_BATCH) move many
entries per system call: packed keys in one buffer, packed values in another.
A walk is resumable: the kernel hands back an opaque position token, kept in a
:class:`BatchCursor` between calls.

Not every map type (or kernel) has batch commands: queue/stack/LPM trie and
others answer EINVAL, EOPNOTSUPP or ENOTSUPP.  That answer is remembered per map
and command the first time, and later calls go straight to the per-key fallback
(BPF_MAP_GET_NEXT_KEY + LOOKUP_ELEM, or per-key UPDATE/DELETE), which fills the
same buffers and keeps its position in the same cursor, so callers never see
the difference except in speed.

Batch sizing is automatic unless given: about 4 MiB of keys and values per call
(at least 256 entries, at most ``max_entries``), doubled when a hash bucket
does not fit (the kernel's ENOSPC).
"""

from __future__ import annotations

import errno
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, Tuple

from .. import sys as _sys
from ..consts import Cmd
from ..errors import BPFError, KeyNotFoundError, SyscallError
from ..sys._errors import ENOTSUPP

if TYPE_CHECKING:
    from .map import Map

__all__ = ["BatchCursor", "auto_batch_size", "lookup_into", "lookup_chunk", "iter_batches",
           "dump_raw", "read_ahead", "update_raw", "delete_raw", "clear", "encode_keys", "encode_values"]

_UNSUPPORTED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP})
_BUDGET = 4 << 20          # bytes of keys + values per automatic batch
_DUMP_BUDGET = 64 << 20    # initial buffer of a whole-map dump
_CHUNK_BYTES = 2 << 20     # keys + values per chunk of a read-ahead dump
_MIN_BATCH = 256


class BatchCursor:
    """Where a batch walk over one map stands.

    Create one per walk and pass it to every call of the walk
    (:meth:`Map.lookup_batch <pybpf.maps.Map.lookup_batch>`); ``done`` turns true once the
    map has no more entries.  It holds the kernel's position token, or the last key for
    maps read per key.
    """

    __slots__ = ("token", "started", "done", "last_key")

    def __init__(self) -> None:
        self.token = bytearray(8)
        self.started = False
        self.done = False
        self.last_key: Optional[bytes] = None

    def __repr__(self) -> str:
        state = "done" if self.done else ("started" if self.started else "new")
        return f"<pybpf.maps.BatchCursor {state}>"


class _TooSmall(BPFError):
    """ENOSPC: one hash bucket holds more entries than the batch has room for."""


def auto_batch_size(m: "Map") -> int:
    """Entries per batch: about 4 MiB of keys and values, 256 .. max_entries."""
    per = max(m.key_size + m.value_bytes, 1)
    return max(_MIN_BATCH, min(max(m.max_entries, 1), _BUDGET // per))


def _supported(m: "Map", cmd: int) -> Optional[bool]:
    return m._batch_ok.get(cmd)


def _mark(m: "Map", cmd: int, ok: bool) -> None:
    m._batch_ok[cmd] = ok


def _sys_call(fn: Any, *args: Any, **kw: Any) -> Any:
    """Call a pybpf.sys batch command.  On failure the error's inner traceback is dropped:
    it holds the frame that pinned our buffers (cffi exports of them), and that frame and
    the error refer to each other -- a cycle that would keep the buffers exported until the
    cyclic GC, which cannot clear an exported memoryview safely."""
    try:
        return fn(*args, **kw)
    except SyscallError as e:
        e.__traceback__ = None
        raise


def _bytes_view(buf: Any, need: int, what: str, m: "Map", *, writable: bool = False) -> memoryview:
    try:
        mv = memoryview(buf)
    except TypeError:
        raise BPFError(f"map {m.name}: {what} must be a buffer (bytes-like), "
                       f"got {type(buf).__name__}") from None
    if writable and mv.readonly:
        raise BPFError(f"map {m.name}: {what} buffer is read-only (the kernel writes into it)")
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    if len(mv) < need:
        raise BPFError(f"map {m.name}: {what} buffer has {len(mv)} bytes, needs {need}")
    return mv


# -- lookups ----------------------------------------------------------------------------------

def lookup_into(m: "Map", cursor: BatchCursor, keys: Any, values: Any, count: int, *,
                delete: bool = False) -> int:
    """Read up to ``count`` entries after ``cursor`` into ``keys``/``values`` (writable
    buffers of at least ``count`` keys/values); returns how many were read (0 once
    ``cursor.done``).  ``delete`` removes the entries read."""
    if cursor.done:
        return 0
    if count <= 0:
        raise BPFError(f"map {m.name}: batch count must be positive, got {count}")
    kmv = _bytes_view(keys, count * m.key_size, "keys", m, writable=True)
    vmv = _bytes_view(values, count * m.value_bytes, "values", m, writable=True)
    cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
    if _supported(m, cmd) is not False:
        n = _kernel_lookup(m, cmd, cursor, kmv, vmv, count)
        if n is not None:
            return n
    return _fallback_lookup(m, cursor, kmv, vmv, count, delete)


def _kernel_lookup(m: "Map", cmd: int, cursor: BatchCursor, kmv: memoryview, vmv: memoryview,
                   count: int) -> Optional[int]:
    tok = max(m.key_size, 8)   # the kernel's token: a u32 bucket for hashes, a key for arrays
    if len(cursor.token) < tok:
        cursor.token = bytearray(tok)
    fn = _sys.map_lookup_and_delete_batch if cmd == Cmd.MAP_LOOKUP_AND_DELETE_BATCH \
        else _sys.map_lookup_batch
    try:
        n, done = _sys_call(fn, m.fd, cursor.token if cursor.started else None, cursor.token, kmv, vmv,
                     count, context=f"map {m.name}")
    except SyscallError as e:
        if _supported(m, cmd) is None and e.errno in _UNSUPPORTED and not cursor.started:
            _mark(m, cmd, False)
            return None
        if e.errno == errno.ENOSPC and not getattr(e, "count", 0):
            raise _TooSmall(f"map {m.name}: a hash bucket holds more than {count} entries; "
                            "use a bigger batch") from None
        raise
    _mark(m, cmd, True)
    cursor.started = True
    if done:
        cursor.done = True
    return n


def _fallback_lookup(m: "Map", cursor: BatchCursor, kmv: memoryview, vmv: memoryview,
                     count: int, delete: bool) -> int:
    ks, vs = m.key_size, m.value_bytes
    n = 0
    if not delete:
        n, last, done = _sys.map_walk_lookup(m.fd, cursor.last_key, kmv, vmv, count, ks, vs,
                                             context=f"map {m.name}")
        cursor.last_key = last
        cursor.started = True
        if done:
            cursor.done = True
        return n
    # Draining: find the next key before deleting the current one (a hash map's next_key of
    # a missing key restarts from the first bucket).
    k = cursor.last_key if cursor.started else m.next_key_raw(None)
    cursor.started = True
    while n < count and k is not None:
        nk = m.next_key_raw(k)
        try:
            _lookup_and_delete(m, k, vmv[n * vs:(n + 1) * vs])
        except KeyNotFoundError:
            pass
        else:
            kmv[n * ks:(n + 1) * ks] = k
            n += 1
        k = nk
    cursor.last_key = k
    if k is None:
        cursor.done = True
    return n


def _lookup_and_delete(m: "Map", key: bytes, out: memoryview) -> None:
    cmd = Cmd.MAP_LOOKUP_AND_DELETE_ELEM
    if _supported(m, cmd) is not False:
        try:
            buf = bytearray(len(out))
            _sys.map_lookup_and_delete_elem(m.fd, key, buf, context=f"map {m.name}")
            out[:] = buf
            return
        except SyscallError as e:
            if isinstance(e, KeyNotFoundError) or e.errno not in _UNSUPPORTED:
                raise
            _mark(m, cmd, False)
    m.lookup_into(key, out)
    m.delete_raw(key)


def lookup_chunk(m: "Map", cursor: BatchCursor, count: Optional[int] = None, *,
                 delete: bool = False) -> Tuple[memoryview, memoryview, int]:
    """The next batch after ``cursor`` in fresh buffers: ``(keys, values, n)``."""
    auto = count is None
    count = count or auto_batch_size(m)
    while True:
        kb, vb = bytearray(count * m.key_size), bytearray(count * m.value_bytes)
        try:
            n = lookup_into(m, cursor, kb, vb, count, delete=delete)
        except _TooSmall:
            if not auto:
                raise
            count *= 2
            continue
        return memoryview(kb)[:n * m.key_size], memoryview(vb)[:n * m.value_bytes], n


def iter_batches(m: "Map", *, delete: bool = False,
                 batch_size: Optional[int] = None) -> Iterator[Tuple[memoryview, memoryview, int]]:
    """Every entry, a batch at a time: ``(keys, values, n)`` per batch.  The buffers are
    reused: each batch is valid until the next one is requested."""
    count = batch_size or auto_batch_size(m)
    cursor = BatchCursor()
    kb, vb = bytearray(count * m.key_size), bytearray(count * m.value_bytes)
    while not cursor.done:
        try:
            n = lookup_into(m, cursor, kb, vb, count, delete=delete)
        except _TooSmall:
            if batch_size:
                raise
            count *= 2
            kb, vb = bytearray(count * m.key_size), bytearray(count * m.value_bytes)
            continue
        if n:
            yield memoryview(kb)[:n * m.key_size], memoryview(vb)[:n * m.value_bytes], n


def dump_raw(m: "Map", *, delete: bool = False) -> Tuple[memoryview, memoryview, int]:
    """Every entry into two contiguous buffers, as few system calls as possible."""
    ks, vs = m.key_size, m.value_bytes
    cap = min(max(m.max_entries, 1), max(_MIN_BATCH, _DUMP_BUDGET // max(ks + vs, 1)))
    kb, vb = bytearray(cap * ks), bytearray(cap * vs)
    total = 0
    cursor = BatchCursor()
    while not cursor.done:
        room = cap - total
        if room < _MIN_BATCH:
            cap = max(cap * 2, total + _MIN_BATCH)
            kb, vb = _grow(kb, cap * ks), _grow(vb, cap * vs)
            continue
        kmv, vmv = memoryview(kb), memoryview(vb)
        try:
            n = lookup_into(m, cursor, kmv[total * ks:], vmv[total * vs:], room, delete=delete)
        except _TooSmall:
            cap *= 2
            kb, vb = _grow(kb, cap * ks), _grow(vb, cap * vs)
            continue
        finally:
            kmv.release()
            vmv.release()
        total += n
    return memoryview(kb)[:total * ks], memoryview(vb)[:total * vs], total


def read_ahead(m: "Map", consume: Callable[[memoryview, memoryview, int], None], *,
               delete: bool = False) -> int:
    """Every entry, chunk by chunk, handed to ``consume(keys, values, n)``; returns how
    many entries there were.

    Decoding a big map costs Python time per entry, while reading it costs kernel time
    during which the interpreter lock is released.  So for maps of more than a few
    chunks a helper thread reads chunk *i + 1* (into one of three rotating buffer
    pairs) while ``consume`` decodes chunk *i*: the read is hidden behind the decoding
    on a machine with a second CPU.  The views passed to ``consume`` are valid only
    during the call.  Smaller maps, and maps read per key (no batch commands), are read
    in one go first.
    """
    ks, vs = m.key_size, m.value_bytes
    per = max(ks + vs, 1)
    chunk = max(_MIN_BATCH, _CHUNK_BYTES // per)
    cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
    if m.max_entries <= 2 * chunk or _supported(m, cmd) is False:
        kb, vb, n = dump_raw(m, delete=delete)
        if n:
            consume(kb, vb, n)
        return n
    free: "queue.SimpleQueue[Tuple[bytearray, bytearray]]" = queue.SimpleQueue()
    ready: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    for _ in range(3):
        free.put((bytearray(chunk * ks), bytearray(chunk * vs)))
    stop = threading.Event()

    def produce() -> None:
        cursor = BatchCursor()
        count = chunk
        try:
            while not cursor.done and not stop.is_set():
                kb, vb = free.get()
                if len(kb) < count * ks:
                    kb, vb = bytearray(count * ks), bytearray(count * vs)
                try:
                    n = lookup_into(m, cursor, kb, vb, count, delete=delete)
                except _TooSmall:
                    count *= 2     # a hash bucket bigger than the chunk
                    free.put((kb, vb))
                    continue
                ready.put((kb, vb, n))
            ready.put(None)
        except BaseException as e:  # handed to the caller's thread, raised there
            ready.put(e)

    helper = threading.Thread(target=produce, name=f"pybpf-read-{m.name}", daemon=True)
    helper.start()
    total = 0
    try:
        while True:
            item = ready.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            kb, vb, n = item
            if n:
                kmv, vmv = memoryview(kb)[:n * ks], memoryview(vb)[:n * vs]
                try:
                    consume(kmv, vmv, n)
                finally:
                    kmv.release()
                    vmv.release()
                total += n
            free.put((kb, vb))
    finally:
        stop.set()
        free.put((bytearray(chunk * ks), bytearray(chunk * vs)))   # wake a waiting helper
        helper.join()
    return total


def _grow(buf: bytearray, size: int) -> bytearray:
    new = bytearray(size)
    new[:len(buf)] = buf
    return new


# -- writes -------------------------------------------------------------------------------------

def update_raw(m: "Map", keys: Any, values: Any, count: int, flags: int = 0) -> int:
    """Write ``count`` packed keys/values; returns how many were written."""
    if count == 0:
        return 0
    kmv = _bytes_view(keys, count * m.key_size, "keys", m)
    vmv = _bytes_view(values, count * m.value_bytes, "values", m)
    cmd = Cmd.MAP_UPDATE_BATCH
    if _supported(m, cmd) is not False:
        try:
            n = _sys_call(_sys.map_update_batch, m.fd, kmv, vmv, count, elem_flags=flags,
                                      context=f"map {m.name}")
        except SyscallError as e:
            if not (_supported(m, cmd) is None and e.errno in _UNSUPPORTED
                    and not getattr(e, "count", 0)):
                raise
            _mark(m, cmd, False)
        else:
            _mark(m, cmd, True)
            return n
    ks, vs = m.key_size, m.value_bytes
    for i in range(count):
        m.update_raw(kmv[i * ks:(i + 1) * ks], vmv[i * vs:(i + 1) * vs], flags)
    return count


def delete_raw(m: "Map", keys: Any, count: int) -> int:
    """Delete ``count`` packed keys (each must exist); returns how many were deleted."""
    if count == 0:
        return 0
    kmv = _bytes_view(keys, count * m.key_size, "keys", m)
    cmd = Cmd.MAP_DELETE_BATCH
    if _supported(m, cmd) is not False:
        try:
            n = _sys_call(_sys.map_delete_batch, m.fd, kmv, count, context=f"map {m.name}")
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                raise _absent(m, getattr(e, "count", 0)) from None
            if not (_supported(m, cmd) is None and e.errno in _UNSUPPORTED
                    and not getattr(e, "count", 0)):
                raise
            _mark(m, cmd, False)
        else:
            _mark(m, cmd, True)
            return n
    ks = m.key_size
    for i in range(count):
        m.delete_raw(kmv[i * ks:(i + 1) * ks])
    return count


def _absent(m: "Map", done: int) -> KeyNotFoundError:
    err = KeyNotFoundError("BPF_MAP_DELETE_BATCH", errno.ENOENT, f"map {m.name}",
                           f"key #{done} is absent ({done} deleted before it)")
    err.count = done  # type: ignore[attr-defined]
    return err


def clear(m: "Map") -> int:
    """Delete every entry; returns how many were deleted."""
    return dump_raw(m, delete=True)[2]


def encode_keys(m: "Map", keys: Sequence[Any]) -> bytes:
    """``keys`` packed for a batch command."""
    ks = m.key_size
    if all(type(k) is bytes and len(k) == ks for k in keys):
        return b"".join(keys)
    try:
        return m.key_codec.encode_many(keys)
    except (BPFError, ValueError, TypeError):
        return b"".join(bytes(m.key_bytes(k)) for k in keys)


def encode_values(m: "Map", values: Sequence[Any]) -> bytes:
    """``values`` packed for a batch command (per-CPU values: every CPU's slot)."""
    if m.percpu or m.value_bytes != m.value_codec.size:
        return b"".join(map(m.value_bytes_of, values))
    vs = m.value_bytes
    if all(type(v) is bytes and len(v) == vs for v in values):
        return b"".join(values)
    try:
        return m.value_codec.encode_many(values)
    except (BPFError, ValueError, TypeError):
        return b"".join(map(m.value_bytes_of, values))
