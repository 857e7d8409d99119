"""Kernel BTF: the running kernel's (vmlinux and module split BTF), or a user-given file.

Opening kernel BTF is on the load path of every CO-RE object, so it is made
cheap and lean:

* ``/sys/kernel/btf/*`` is memory-mapped where the kernel allows it (6.16+
  maps vmlinux BTF straight from kernel memory: nothing is copied) and read
  otherwise; types are decoded only when asked for (:class:`pybpf.btf.Spec`).
* The one indexing pass (record offsets, name index) is cached on disk,
  keyed by the blob's identity (:mod:`pybpf.btf.cache`): a second process
  opens vmlinux BTF in about a millisecond.  ``PYBPF_CACHE_DIR`` chooses the
  directory (default ``~/.cache/pybpf``), ``PYBPF_CACHE_DIR=off`` disables it.
* Nothing is kept for the life of the process: a :class:`~pybpf.btf.Spec`
  lives as long as its users hold it (a weak table lets concurrent users
  share one), so after ``pybpf.load()`` returns the kernel BTF is freed
  unless the caller passed a ``Spec`` in.
"""

from __future__ import annotations

import logging
import mmap
import os
import weakref
from typing import List, Optional, Tuple, Union

from .btf import Spec
from .btf.cache import IndexCache, blob_identity
from .errors import NotSupportedError, ParseError, SyscallError

__all__ = ["load_kernel_btf", "load_module_btf", "module_btf_names", "load_module_btfs",
           "module_btf_fd", "VMLINUX_BTF", "KERNEL_BTF_DIR"]

log = logging.getLogger("pybpf")

KERNEL_BTF_DIR = "/sys/kernel/btf"
VMLINUX_BTF = KERNEL_BTF_DIR + "/vmlinux"
_MMAP_MIN = 1 << 20            # smaller blobs are simply read

BTFSource = Union[None, str, "os.PathLike[str]", bytes, bytearray, memoryview, Spec]

# (path, size, mtime_ns, inode, base id) -> Spec, alive while someone holds it.
_live: "weakref.WeakValueDictionary[Tuple, Spec]" = weakref.WeakValueDictionary()


def load_kernel_btf(source: BTFSource = None, *, cache: Optional[IndexCache] = None) -> Spec:
    """The target BTF for CO-RE and BTF-id lookups.

    ``None`` opens the running kernel's ``/sys/kernel/btf/vmlinux``; a path
    names raw BTF or an ELF file with a ``.BTF`` section (like libbpf's
    ``btf_custom_path``); bytes are raw BTF or ELF; a :class:`Spec` is
    returned as is.  ``cache`` overrides the on-disk index cache (tests).
    """
    if isinstance(source, Spec):
        return source
    if source is None:
        if not os.path.exists(VMLINUX_BTF):
            raise NotSupportedError("kernel BTF", f"{VMLINUX_BTF} does not exist (kernel built "
                                    "without CONFIG_DEBUG_INFO_BTF); pass kernel_btf=PATH",
                                    min_kernel="5.4")
        return _open_file(VMLINUX_BTF, None, cache)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if data[:4] == b"\x7fELF":
            from .elf.elffile import read_btf_section
            data = read_btf_section(data, "<bytes>")
        return _parse(data, None, "<bytes>", b"bytes", cache, full_hash=True)
    return _open_file(os.fspath(source), None, cache)


def module_btf_names() -> List[str]:
    """Names of the kernel modules that have BTF (``/sys/kernel/btf/*`` but vmlinux)."""
    try:
        names = os.listdir(KERNEL_BTF_DIR)
    except OSError:
        return []
    return sorted(n for n in names if n != "vmlinux")


def load_module_btf(name: str, base: Optional[Spec] = None, *,
                    cache: Optional[IndexCache] = None) -> Spec:
    """The split BTF of kernel module ``name``, on top of ``base`` (vmlinux's by default)."""
    if "/" in name or name in ("", ".", ".."):
        raise ParseError(f"bad module name {name!r}", file=KERNEL_BTF_DIR)
    if base is None:
        base = load_kernel_btf(None, cache=cache)
    return _open_file(os.path.join(KERNEL_BTF_DIR, name), base, cache)


def load_module_btfs(base: Optional[Spec] = None, *, cache: Optional[IndexCache] = None) -> List[Spec]:
    """The split BTF of every loaded module, in name order (empty without modules)."""
    names = module_btf_names()
    if not names:
        return []
    if base is None:
        base = load_kernel_btf(None, cache=cache)
    out = []
    for n in names:
        try:
            out.append(load_module_btf(n, base, cache=cache))
        except ParseError as e:
            if isinstance(e.__cause__, FileNotFoundError):  # module unloaded meanwhile
                continue
            raise
    return out


def module_btf_fd(name: str):
    """A new fd (:class:`pybpf.sys.FD`) of the kernel's BTF object of module ``name``.

    Module kfuncs and module variables are named to the kernel by this fd
    (``fd_array`` for kfunc calls, the second slot of ``ld_imm64`` for
    variables).  Raises :class:`NotSupportedError` when no loaded BTF object
    has that name.
    """
    from . import sys as _sys
    btf_id = 0
    while True:
        next_id = _sys.btf_get_next_id(btf_id, context="looking for module BTF")
        if next_id is None:
            break
        btf_id = next_id
        try:
            fd = _sys.btf_get_fd_by_id(btf_id, context=f"BTF object {btf_id}")
        except SyscallError:   # raced with a module unload
            continue
        try:
            info = _sys.btf_info(fd.fileno(), context=f"BTF object {btf_id}")
        except BaseException:
            fd.close()
            raise
        if info.get("kernel_btf") and info["name"] == name:
            return fd
        fd.close()
    raise NotSupportedError(f"BTF of kernel module {name}", "no loaded BTF object has that name "
                            "(module unloaded?)")


# -- opening and caching --------------------------------------------------------------------

def _open_file(path: str, base: Optional[Spec], cache: Optional[IndexCache]) -> Spec:
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ParseError(f"cannot read BTF: {e.strerror}", file=path) from e
    with f:
        st = os.fstat(f.fileno())
        key = (path, st.st_size, st.st_mtime_ns, st.st_ino, id(base) if base is not None else 0)
        live = _live.get(key)
        if live is not None and live.base is base:
            return live
        data = _map_or_read(f, st.st_size, path)
    if data[:4] == b"\x7fELF":
        from .elf.elffile import read_btf_section
        data = read_btf_section(bytes(data), path)
    if path.startswith(KERNEL_BTF_DIR + "/"):
        # sysfs timestamps say when the inode was instantiated, not what it holds;
        # the kernel build identifies the contents instead.
        u = os.uname()
        extra = f"kernel|{u.release}|{u.version}|{u.machine}".encode()
    else:
        extra = f"file|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}".encode()
    if base is not None:
        extra += b"|split|%d|%d" % (len(base), len(base.raw))
    spec = _parse(data, base, path, extra, cache, full_hash=False)
    _live[key] = spec
    return spec


def _map_or_read(f, size: int, path: str):
    if size >= _MMAP_MIN:
        try:
            return mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        except (OSError, ValueError):
            pass   # sysfs before 6.16 cannot map BTF; read it
    try:
        return f.read()
    except OSError as e:
        raise ParseError(f"cannot read BTF: {e.strerror}", file=path) from e


def _parse(data, base: Optional[Spec], file: str, extra: bytes, cache: Optional[IndexCache],
           full_hash: bool) -> Spec:
    """Parse with the cached index when there is one; build and cache it otherwise."""
    if len(data) < 4096 and not full_hash:        # tiny (most modules): indexing costs nothing
        return Spec.parse(data, base=base, file=file)
    store = cache if cache is not None else IndexCache()
    if store.directory is None:
        return Spec.parse(data, base=base, file=file)
    key = blob_identity(data, extra, full=full_hash)
    index = store.load(key)
    if index is not None:
        try:
            return Spec.parse(data, base=base, file=file, index=index)
        except ParseError:
            log.debug("cached BTF index of %s does not fit; rebuilding it", file)
    spec = Spec.parse(data, base=base, file=file)
    store.save(key, spec.index)
    return spec

