"""Collection: the live kernel objects of a loaded CollectionSpec.

Loading copies the spec, loads the object's BTF, creates every map (reusing
pinned ones by name), fills global data, patches map fds and CO-RE
relocations into each program's instructions and loads the programs.  Any
failure closes everything created so far: nothing is left half-loaded.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from typing import Any, Dict, List, Optional, Union

from . import features
from . import sys as _sys
from .btf.sanitize import BTFFeatures
from .btf import Spec
from .consts import MapFlags, MapType
from .elf import load_collection_spec
from .errors import BPFError, NotSupportedError, SyscallError
from .externs import KsymResolver, fill_kconfig
from .kbtf import load_kernel_btf
from .maps.map import Map, possible_cpus
from .maps.pinning import open_pinned, pin_path
from .progs.loader import load_program
from .progs.unsupported import enum_name
from .progs.program import Program
from .spec import CollectionSpec, MapKind, MapSpec, Pinning, VariableSpec
from .sys.fd import FD

__all__ = ["Collection", "Variable", "load"]

log = logging.getLogger("pybpf")


class Variable:
    """A global variable of a loaded collection; ``value`` reads/writes the kernel's copy.

    Global data maps are created ``BPF_F_MMAPABLE``: the variable is then read and
    written in place in the mapped memory (no system call); otherwise through
    lookups and updates of the map's single element.
    """

    def __init__(self, spec: VariableSpec, map: Map):
        self.spec = spec
        self.map = map
        self.name = spec.name
        self.offset = spec.offset
        self.size = spec.size
        self._codec_cache = None
        self._live: Any = None

    @property
    def _codec(self):
        if self._codec_cache is None:
            self._codec_cache = self.spec.codec   # built on first use: loading never fails on it
        return self._codec_cache

    def _mapped(self) -> Any:
        if self._live is None and self.map.mmapable:
            try:
                self._live = self.map.memory().value(self.offset, self.size, self._codec, self.name)
            except BPFError:
                self._live = False          # not mappable after all: use the syscall path
        return self._live or None

    @property
    def readonly(self) -> bool:
        return bool(self.map.spec is not None and self.map.spec.freeze)

    def _check_writable(self) -> None:
        if self.readonly:
            raise BPFError(f"variable {self.name} lives in frozen {self.spec.section}: "
                           "set it on the spec before load")

    @property
    def raw(self) -> bytes:
        live = self._mapped()
        if live is not None:
            return live.raw
        data = self.map.lookup_raw(b"\0\0\0\0")
        return data[self.offset:self.offset + self.size]

    @raw.setter
    def raw(self, b: bytes) -> None:
        self._check_writable()
        live = self._mapped()
        if live is not None:
            live.raw = b
            return
        data = bytearray(self.map.lookup_raw(b"\0\0\0\0"))
        data[self.offset:self.offset + self.size] = b
        self.map.update_raw(b"\0\0\0\0", bytes(data))

    @property
    def value(self) -> Any:
        """The kernel's current value, decoded through the variable's BTF type."""
        live = self._mapped()
        if live is not None:
            return live.value
        return self._codec.decode(self.raw)

    @value.setter
    def value(self, v: Any) -> None:
        self._check_writable()
        try:
            raw = self._codec.encode(v)
        except (ValueError, TypeError, OverflowError) as e:
            raise BPFError(f"variable {self.name}: cannot set {v!r}: {e}") from None
        self.raw = raw

    def __repr__(self) -> str:
        return f"<pybpf.Variable {self.name} in {self.spec.section}>"


class Collection:
    """Maps, programs and variables loaded from one object.  Close it (or use
    ``with``) to release every fd it owns."""

    def __init__(self, spec: CollectionSpec, maps: Dict[str, Map], programs: Dict[str, Program],
                 btf_fd: Optional[FD]):
        self.spec = spec
        self.maps = maps
        self.programs = programs
        self._btf_fd = btf_fd
        self.variables: Dict[str, Variable] = {
            n: Variable(v, maps[v.map.section]) for n, v in spec.variables.items()
            if v.map.section in maps}
        self.links: List[Any] = []

    @classmethod
    def load(cls, spec: CollectionSpec, *, kernel_btf: Union[None, str, bytes, Spec] = None,
             pin_root: Optional[Union[str, os.PathLike]] = None, log_level: int = 0) -> "Collection":
        """Load ``spec`` into the kernel (the spec itself is not modified)."""
        return _Loader(spec.copy(), kernel_btf, pin_root, log_level).load()

    def attach_all(self) -> List[Any]:
        """Attach every program whose section names its hook completely, as a libbpf
        skeleton's attach does (tracepoints, raw_tp, tp_btf, fentry, lsm, kprobe/uprobe
        with a target ...); programs that need a target (xdp, tc, cgroup, sockets) are
        skipped: attach them with ``Program.attach(target)``.  Returns the new links,
        which the collection owns (closed by ``close()``).  On failure, the links made
        by this call are closed again."""
        from .link import attach_program, can_auto_attach
        new: List[Any] = []
        try:
            for p in self.programs.values():
                if p.spec is not None and can_auto_attach(p.spec):
                    new.append(attach_program(p))
        except BaseException:
            for l in reversed(new):
                l.close()
            raise
        self.links.extend(new)
        return new

    def close(self) -> None:
        """Close links, programs, maps and BTF (in that order)."""
        for l in reversed(self.links):
            l.close()
        self.links.clear()
        for p in self.programs.values():
            p.close()
        for m in self.maps.values():
            m.close()
        if self._btf_fd is not None:
            self._btf_fd.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pybpf.Collection {self.spec.name}: {len(self.programs)} programs, {len(self.maps)} maps>"


class _Loader:
    def __init__(self, spec: CollectionSpec, kernel_btf: Any, pin_root: Any, log_level: int):
        self.spec = spec
        self.kernel_btf_src = kernel_btf
        self.pin_root = os.fspath(pin_root) if pin_root is not None else None
        self.log_level = log_level
        self._kbtf: Optional[Spec] = None
        self._vmlinux: Optional[Spec] = None
        self.btf_feats = BTFFeatures.all()

    def kernel_btf(self) -> Spec:
        """The CO-RE target (a user-given BTF or the running kernel's), opened once per load."""
        if self._kbtf is None:
            self._kbtf = load_kernel_btf(self.kernel_btf_src)
        return self._kbtf

    def vmlinux_btf(self) -> Spec:
        """The running kernel's BTF (attach targets, __ksym externs), opened once per load."""
        if self._vmlinux is None:
            self._vmlinux = self.kernel_btf() if self.kernel_btf_src is None else load_kernel_btf(None)
        return self._vmlinux

    def load(self) -> Collection:
        _raise_memlock_once()
        maps: Dict[str, Map] = {}
        programs: Dict[str, Program] = {}
        btf_fd: Optional[FD] = None
        try:
            fill_kconfig(self.spec)
            btf_fd = self._load_btf()
            for name, ms in self.spec.maps.items():
                maps[name] = self._create_map(name, ms, btf_fd)
            with KsymResolver(self.vmlinux_btf) as ksyms:
                for name, ps in self.spec.programs.items():
                    if not ps.autoload:
                        continue
                    # Without kernel FUNC support, programs load without func/line info.
                    prog_btf = btf_fd if self.btf_feats.func_info else None
                    programs[name] = load_program(ps, maps=maps, btf_fd=prog_btf,
                                                  kernel_btf=self.kernel_btf,
                                                  log_level=self.log_level,
                                                  vmlinux_btf=self.vmlinux_btf, ksyms=ksyms)
            self._fill_contents(maps, programs)
            return Collection(self.spec, maps, programs, btf_fd)
        except BaseException:
            for p in programs.values():
                p.close()
            for m in maps.values():
                m.close()
            if btf_fd is not None:
                btf_fd.close()
            raise

    # -- BTF ------------------------------------------------------------------------------
    def _load_btf(self) -> Optional[FD]:
        btf = self.spec.btf
        if btf is None or not features.have_feature("btf"):
            return None
        # Rewrite what this kernel's BTF loader does not know (DECL_TAG, TYPE_TAG, ENUM64,
        # FLOAT, DATASEC, func linkage) as libbpf does; ids stay, so CO-RE and the value
        # codecs keep using the original BTF.
        self.btf_feats = features.btf_features()
        kernel_side = features.prepare_object_btf(btf, self.btf_feats)
        if kernel_side is None:
            return None
        try:
            return _sys.btf_load(kernel_side.raw, context=f"object {self.spec.name}")
        except SyscallError as e:
            # As libbpf: continue without BTF (maps/programs lose type info and line info).
            log.warning("object %s: kernel refused the object's BTF (%s); loading without it",
                        self.spec.name, e)
            return None

    # -- maps -----------------------------------------------------------------------------
    def _create_map(self, name: str, ms: MapSpec, btf_fd: Optional[FD]) -> Map:
        kname = self.spec.kernel_map_names.get(name, ms.name)
        if ms.type == MapType.PERF_EVENT_ARRAY and ms.max_entries == 0:
            ms.max_entries = possible_cpus()   # one slot per CPU, as libbpf sizes it
        if ms.kind in (MapKind.DATA, MapKind.KCONFIG):
            if features.have_feature("mmapable_arrays"):
                ms.flags |= MapFlags.MMAPABLE
            if not self.btf_feats.datasec:
                btf_fd = None  # a key-less map BTF is only valid with a DATASEC value type
        pin_at = None
        if ms.pinning == Pinning.BY_NAME:
            reused = open_pinned(ms, self.pin_root)   # checked compatible, or IncompatibleError
            if reused is not None:
                reused.name = name
                return reused
            pin_at = pin_path(ms, self.pin_root)
        inner_fd = None
        try:
            if ms.inner_map is not None:
                inner_fd = Map.create(ms.inner_map, kernel_name=ms.inner_map.name[:15])
            try:
                m = Map.create(ms, btf_fd=btf_fd.fileno() if btf_fd is not None else 0,
                               inner_map_fd=inner_fd.fd if inner_fd is not None else 0,
                               kernel_name=kname)
            except SyscallError as e:
                if e.errno == errno.EINVAL and not features.have_map_type(ms.type):
                    raise NotSupportedError(f"map {name} of type {enum_name(MapType, ms.type)}",
                                            "this kernel cannot create maps of that type") from e
                raise
        finally:
            if inner_fd is not None:
                inner_fd.close()
        m.name = name
        try:
            if ms.kind in (MapKind.DATA, MapKind.KCONFIG) and ms.data is not None:
                m.update_raw(b"\0\0\0\0", bytes(ms.data).ljust(ms.value_size, b"\0"))
            if ms.freeze:
                m.freeze()
            if pin_at is not None:
                m.pin(pin_at)
        except BaseException:
            m.close()
            raise
        return m

    def _fill_contents(self, maps: Dict[str, Map], programs: Dict[str, Program]) -> None:
        for name, ms in self.spec.maps.items():
            if not ms.contents or ms.kind in (MapKind.DATA, MapKind.KCONFIG):
                continue
            m = maps[name]
            for key, value in ms.contents:
                if isinstance(value, str):
                    if ms.type == MapType.PROG_ARRAY:
                        if value not in programs:
                            raise BPFError(f"map {name}: initial value refers to program {value!r}, "
                                           "which was not loaded")
                        fd = programs[value].fd
                    else:
                        if value not in maps:
                            raise BPFError(f"map {name}: initial value refers to unknown map {value!r}")
                        fd = maps[value].fd
                    m.update_raw(struct.pack(ms.btf.byteorder + "I" if ms.btf else "<I", key),
                                 struct.pack("=I", fd))
                else:
                    m.update(key, value)


_memlock_done = False


def _raise_memlock_once() -> None:
    """Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK: raise it, as libbpf does."""
    global _memlock_done
    if not _memlock_done:
        _memlock_done = True
        from .privileges import raise_memlock_limit
        raise_memlock_limit()


def load(source: Union[str, os.PathLike, bytes, CollectionSpec], *,
         kernel_btf: Union[None, str, bytes, Spec] = None,
         pin_root: Optional[Union[str, os.PathLike]] = None, log_level: int = 0) -> Collection:
    """Parse (if needed) and load an object: ``pybpf.load("prog.bpf.o")``.

    ``kernel_btf`` overrides the target BTF (a path to raw BTF or an ELF with
    .BTF, or bytes); ``pin_root`` is the directory for maps with
    ``pinning = LIBBPF_PIN_BY_NAME`` (default ``/sys/fs/bpf``).
    """
    spec = source if isinstance(source, CollectionSpec) else load_collection_spec(source)
    return Collection.load(spec, kernel_btf=kernel_btf, pin_root=pin_root, log_level=log_level)
