"""pybpf's only door to the kernel: bpf(2), perf_event_open(2), ioctl, mmap, mount.

One function per bpf(2) command, named after it in snake case
(``BPF_MAP_CREATE`` -> :func:`map_create`), taking raw fds (ints) and the
kernel's ``bpf_attr`` field names as keyword arguments.  Commands that create
an object return an :class:`FD` that owns it.  Every failure raises a
:class:`~pybpf.errors.SyscallError` (or subclass) naming the command, with an
optional ``context`` ("map counts") in its message:

* ENOENT from an element lookup/delete/next-key -> :class:`~pybpf.errors.KeyNotFoundError`
* EEXIST from an update with ``NOEXIST`` -> :class:`~pybpf.errors.KeyExistsError`
* EPERM (and EACCES outside program/BTF loading) -> :class:`~pybpf.errors.PermissionDeniedError`

The kernel structs are declared once, in a cffi ``cdef`` generated from kernel
BTF (:mod:`pybpf.sys._cdef`, by ``tools/gen_sys.py``); this package is the only
importer of cffi.  :func:`set_backend` swaps the kernel for a fake in tests.
"""

from ._core import as_dict, cstring
from ._errors import cmd_name
from .backend import Backend, LinuxBackend, get_backend, set_backend, use_backend
from .fd import FD, dup_fd
from .fs import DEFAULT_BPFFS, bpffs_mounts, is_bpffs, mount, mount_bpffs, umount
from .links import (
    iter_create, link_create, link_detach, link_update, raw_tracepoint_open, task_fd_query,
)
from .maps import (
    ElemBlock, map_create, map_delete_batch, map_delete_elem, map_freeze, map_get_next_key,
    map_lookup_and_delete_batch, map_lookup_and_delete_elem, map_lookup_batch, map_lookup_elem,
    map_update_batch, map_update_elem, map_walk_lookup,
)
from .objects import (
    btf_get_fd_by_id, btf_get_next_id, btf_info, btf_load, enable_stats, link_get_fd_by_id,
    link_get_next_id, link_info, map_get_fd_by_id, map_get_next_id, map_info, obj_get,
    obj_get_info_by_fd, obj_pin, prog_get_fd_by_id, prog_get_next_id, prog_info, token_create,
)
from .perf import (
    PAGE_SIZE, ioctl, mmap, perf_event_disable, perf_event_enable, perf_event_id,
    perf_event_open, perf_event_pause_output, perf_event_set_bpf,
)
from .progs import (
    PROG_LOAD_EAGAIN_RETRIES, prog_attach, prog_bind_map, prog_detach, prog_load, prog_query,
    prog_stream_read, prog_test_run,
)

__all__ = [
    # fds and the backend seam
    "FD", "dup_fd", "Backend", "LinuxBackend", "get_backend", "set_backend", "use_backend",
    # maps
    "map_create", "map_lookup_elem", "map_update_elem", "map_delete_elem", "map_get_next_key",
    "map_lookup_and_delete_elem", "map_freeze", "map_lookup_batch",
    "map_lookup_and_delete_batch", "map_update_batch", "map_delete_batch", "ElemBlock",
    "map_walk_lookup",
    # programs
    "prog_load", "prog_test_run", "prog_attach", "prog_detach", "prog_query", "prog_bind_map",
    "prog_stream_read", "PROG_LOAD_EAGAIN_RETRIES",
    # objects
    "obj_pin", "obj_get", "prog_get_next_id", "map_get_next_id", "btf_get_next_id",
    "link_get_next_id", "prog_get_fd_by_id", "map_get_fd_by_id", "btf_get_fd_by_id",
    "link_get_fd_by_id", "obj_get_info_by_fd", "map_info", "prog_info", "btf_info",
    "link_info", "btf_load", "enable_stats", "token_create",
    # links
    "link_create", "link_update", "link_detach", "raw_tracepoint_open", "iter_create",
    "task_fd_query",
    # perf, ioctl, mmap
    "perf_event_open", "ioctl", "perf_event_enable", "perf_event_disable", "perf_event_set_bpf",
    "perf_event_id", "perf_event_pause_output", "mmap", "PAGE_SIZE",
    # bpffs
    "mount", "umount", "bpffs_mounts", "is_bpffs", "mount_bpffs", "DEFAULT_BPFFS",
    # helpers
    "as_dict", "cstring", "cmd_name",
]
