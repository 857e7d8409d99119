"""The index of a BTF blob (where each type starts, which types carry which name) and its
on-disk cache.

Opening kernel BTF costs one pass over ~126k type records to find where each
starts, plus sorting ~70k names; everything else is decoded lazily.  A
:class:`TypeIndex` holds the result as four flat ``uint32`` arrays, so it can
be written to disk in one piece and read back with no per-type work: a second
process opens vmlinux BTF in about a millisecond instead of ~50.

* ``offsets[i]``: word offset (4-byte units, from the start of the type
  section) of the record of type ``start_id + i``.
* ``names``: string offsets of the distinct type names, sorted by the names'
  bytes: a name is found by binary search.
* ``name_keys`` / ``name_ids``: the named type ids sorted by name offset
  (``name_keys[k]`` is the name offset of ``name_ids[k]``): the ids carrying a
  name are a contiguous run, found by binary search too.

The cache (:class:`IndexCache`) is keyed by the blob's identity
(:func:`blob_identity`: size, header and a sample of the contents, or all of
it for small blobs, plus what the caller adds, such as an mtime).  Files are
written atomically; a missing, unreadable, corrupt or stale file is ignored
and rebuilt.  Nothing here touches the kernel.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import sys
import tempfile
import zlib
from array import array
from itertools import accumulate, compress
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Set, Union

__all__ = ["TypeIndex", "NameIndex", "IndexCache", "blob_identity", "build_name_index",
           "default_cache_dir", "CACHE_ENV"]

log = logging.getLogger("pybpf")

CACHE_ENV = "PYBPF_CACHE_DIR"
"""Environment variable naming the cache directory; ``off`` disables the cache."""

_MAGIC = b"PYBPFIDX"
_VERSION = 2
_HEADER = 64                  # magic 8, version 4, byte order 4, key 16, 4 counts x 4, adler32 4, pad
_MAX_FILES = 32               # per cache directory; the oldest are removed beyond that
_SAMPLES = 64                 # sampled windows of a large blob
_SAMPLE_LEN = 64
_FULL_HASH_LIMIT = 1 << 20    # blobs up to 1 MiB are hashed whole
_NATIVE = sys.byteorder

Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]


class NameIndex:
    """Names of a spec's own types, searchable by binary search (see the module docstring)."""

    __slots__ = ("names", "name_offs", "by_name")

    def __init__(self, names: Sequence[int], name_offs: Sequence[int], by_name: Sequence[int]):
        self.names = names
        self.name_offs = name_offs
        self.by_name = by_name


class TypeIndex:
    """Where each type record of a BTF blob starts, and (once built) its name index."""

    __slots__ = ("offsets", "names")

    def __init__(self, offsets: Sequence[int], names: Optional[NameIndex] = None):
        self.offsets = offsets
        self.names = names


def build_name_index(name_offs: Sequence[int], strtab: Optional[bytes],
                     name_bytes: Callable[[int], bytes]) -> NameIndex:
    """Build the name index of a spec's own types.

    ``name_offs[i]`` is the name offset of the spec's ``i``-th own type.
    ``strtab`` is the spec's whole string section when its offsets start at 0
    (not split BTF): its strings are then cut and sorted at C speed.
    ``name_bytes(off)`` returns the bytes of any name (used for the rest, e.g.
    names of split BTF stored in the base, or offsets pointing into the middle
    of another string).  Every step is a C-level pass: this runs once per
    kernel build, on the first lookup in a process without a cache.
    """
    named = list(compress(range(len(name_offs)), name_offs))      # types that have a name
    named.sort(key=name_offs.__getitem__)                         # stable: ids ascend within a name
    by_name = array("I", named)
    del named
    wanted: Set[int] = set(map(name_offs.__getitem__, by_name))
    texts: List[bytes] = []
    offs = array("I")
    if strtab is not None and len(wanted) > 64:
        strs = strtab.split(b"\0")
        starts = array("I", accumulate(map((1).__add__, map(len, strs)), initial=0))
        keep = list(map(wanted.__contains__, starts))
        texts = list(compress(strs, keep))
        offs = array("I", compress(starts, keep))
        del strs, starts, keep
        if len(offs) == len(wanted):
            wanted = set()
        else:                                                     # names inside other strings
            wanted.difference_update(offs)
    for off in wanted:
        texts.append(name_bytes(off))
        offs.append(off)
    order = sorted(range(len(texts)), key=texts.__getitem__)
    del texts
    return NameIndex(array("I", map(offs.__getitem__, order)),
                     name_offs if isinstance(name_offs, (array, memoryview)) else array("I", name_offs),
                     by_name)


def blob_identity(data: Buffer, extra: bytes = b"", *, full: bool = False) -> bytes:
    """A 16-byte identity of a BTF blob for cache keys.

    Blobs up to 1 MiB are hashed whole.  Larger ones (vmlinux: 5 MiB) are
    identified by their size, the header, 64 windows spread evenly over the
    contents and the last 4 KiB (the end of the string section): any other
    kernel build shifts the type records or the strings these cover.  Callers
    add what else identifies the source (``extra``: an mtime, the kernel
    release), so the sampling never decides alone; ``full`` hashes everything
    (for blobs with nothing else to identify them, such as bytes).
    """
    size = len(data)
    h = hashlib.blake2b(digest_size=16)
    h.update(b"%d\0" % size)
    h.update(extra)
    if full or size <= _FULL_HASH_LIMIT:
        h.update(data)
    else:
        h.update(data[:64])
        step = size // _SAMPLES
        for i in range(_SAMPLES):
            h.update(data[i * step:i * step + _SAMPLE_LEN])
        h.update(data[size - 4096:])
    return h.digest()


def default_cache_dir() -> Optional[Path]:
    """``$PYBPF_CACHE_DIR``, else ``$XDG_CACHE_HOME/pybpf``, else ``~/.cache/pybpf``;
    None when ``PYBPF_CACHE_DIR=off``."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "off", "none", "0") else Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "pybpf"


class IndexCache:
    """A directory of serialized :class:`TypeIndex` files, one per blob identity.

    Every failure to read or write is survivable: :meth:`load` returns None
    and :meth:`save` returns False (logged at debug level), and the caller
    simply builds the index itself.
    """

    def __init__(self, directory: Optional[Union[str, os.PathLike]] = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def path(self, key: bytes) -> Optional[Path]:
        """The file holding the index of the blob with identity ``key``."""
        if self.directory is None:
            return None
        return self.directory / f"btf-{key.hex()}.idx"

    def load(self, key: bytes) -> Optional[TypeIndex]:
        """The cached index for ``key``, or None (absent, unreadable, corrupt, other version)."""
        p = self.path(key)
        if p is None:
            return None
        try:
            with open(p, "rb") as f:
                blob = f.read()
        except OSError:
            return None
        index = _decode(blob, key)
        if index is None:
            log.debug("BTF index cache %s is corrupt or stale; rebuilding it", p)
        return index

    def save(self, key: bytes, index: TypeIndex) -> bool:
        """Write ``index`` (which must have its name index) atomically; False if it cannot."""
        p = self.path(key)
        if p is None or index.names is None:
            return False
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".btf-", suffix=".tmp", dir=p.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(_encode(key, index))
                os.replace(tmp, p)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as e:
            log.debug("cannot write BTF index cache %s: %s", p, e)
            return False
        self._prune()
        return True

    def _prune(self) -> None:
        assert self.directory is not None
        try:
            files = sorted(self.directory.glob("btf-*.idx"), key=lambda f: f.stat().st_mtime)
            for old in files[:-_MAX_FILES]:
                old.unlink()
        except OSError:
            pass


def _as_u32(seq: Sequence[int]) -> bytes:
    a = seq if isinstance(seq, array) and seq.typecode == "I" else array("I", seq)
    return a.tobytes()


def _encode(key: bytes, index: TypeIndex) -> bytes:
    names = index.names
    assert names is not None
    parts = [_as_u32(index.offsets), _as_u32(names.names), _as_u32(names.name_offs),
             _as_u32(names.by_name)]
    payload = b"".join(parts)
    counts = (len(index.offsets), len(names.names), len(names.name_offs), len(names.by_name))
    head = bytearray(_HEADER)
    head[0:8] = _MAGIC
    head[8:12] = _VERSION.to_bytes(4, _NATIVE)
    head[12:16] = (1 if _NATIVE == "little" else 2).to_bytes(4, _NATIVE)
    head[16:32] = key
    pos = 32
    for c in counts:
        head[pos:pos + 4] = c.to_bytes(4, _NATIVE)
        pos += 4
    head[pos:pos + 4] = zlib.adler32(payload).to_bytes(4, _NATIVE)
    return bytes(head) + payload


def _decode(blob: bytes, key: bytes) -> Optional[TypeIndex]:
    if len(blob) < _HEADER or blob[0:8] != _MAGIC:
        return None
    if int.from_bytes(blob[8:12], _NATIVE) != _VERSION or \
            int.from_bytes(blob[12:16], _NATIVE) != (1 if _NATIVE == "little" else 2) or \
            blob[16:32] != key:
        return None
    counts = [int.from_bytes(blob[p:p + 4], _NATIVE) for p in range(32, 48, 4)]
    checksum = int.from_bytes(blob[48:52], _NATIVE)
    if len(blob) != _HEADER + 4 * sum(counts) or counts[2] != counts[0]:
        return None
    payload = memoryview(blob)[_HEADER:]
    if zlib.adler32(payload) != checksum:
        return None
    words = payload.cast("I")
    a, b, c, d = counts
    return TypeIndex(words[:a], NameIndex(words[a:a + b], words[a + b:a + b + c],
                                          words[a + b + c:a + b + c + d]))
