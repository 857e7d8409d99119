#!/usr/bin/env python3
"""Generate pybpf's kernel ABI from kernel BTF.

Reads a kernel BTF blob (default ``/sys/kernel/btf/vmlinux``) with pybpf's own
parser and writes three committed files:

* ``pybpf/consts.py`` -- pure Python: ``IntEnum``/``IntFlag`` families
  (``Cmd``, ``MapType``, ``ProgType``, ``AttachType``, ``MapFlags`` ...) and
  module-level ``BPF_*``/``PERF_*`` ints, importable by the pure layers.
* ``pybpf/sys/_cdef.py`` -- the cffi ``cdef`` text: one C struct per bpf(2)
  command, split out of ``union bpf_attr``, plus the info structs and perf
  structs.  Every struct carries explicit padding so that cffi's natural
  layout equals the kernel's byte for byte (ABI mode cannot check layouts);
  bitfield runs become one plain integer field.
* ``pybpf/sys/_ffi.py`` -- cffi's out-of-line ABI module built from that cdef
  (pure Python, no compiler), for fast import (see ``tools/gen_ffi.py``).

Everything BTF has is taken from BTF.  What BTF cannot have (``#define``s of
include/uapi/linux/bpf.h and perf_event.h) lives in the clearly marked
``HAND_*`` tables below.  The output depends only on the input BTF: the same
BTF in gives the same files out.  The generator checks its own output (every
field offset and every struct size against BTF) before writing anything.

Usage::

    python tools/gen_sys.py [--btf FILE] [--out-dir REPO_ROOT] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import keyword
import os
import sys
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gen_ffi  # noqa: E402

from pybpf.btf import (  # noqa: E402
    AnyEnum, Array, Composite, Enum, Enum64, Float, Int, IntEncoding, Kind, Spec, Struct, Union,
)

HEADER = gen_ffi.HEADER


class GenError(Exception):
    """The BTF does not have what the generator needs, or a layout cannot be expressed."""


# ---------------------------------------------------------------------------------------------
# What to take from BTF
# ---------------------------------------------------------------------------------------------

# (class, BTF enum name, prefix to strip, base, required, docstring)
NAMED_ENUMS: Sequence[Tuple[str, str, str, str, bool, str]] = (
    ("Cmd", "bpf_cmd", "BPF_", "IntEnum", True, "enum bpf_cmd: the bpf(2) commands."),
    ("MapType", "bpf_map_type", "BPF_MAP_TYPE_", "IntEnum", True, "enum bpf_map_type."),
    ("ProgType", "bpf_prog_type", "BPF_PROG_TYPE_", "IntEnum", True, "enum bpf_prog_type."),
    ("AttachType", "bpf_attach_type", "BPF_", "IntEnum", True, "enum bpf_attach_type."),
    ("LinkType", "bpf_link_type", "BPF_LINK_TYPE_", "IntEnum", True, "enum bpf_link_type."),
    ("StatsType", "bpf_stats_type", "BPF_STATS_", "IntEnum", True,
     "enum bpf_stats_type (BPF_ENABLE_STATS)."),
    ("FuncId", "bpf_func_id", "BPF_FUNC_", "IntEnum", True,
     "enum bpf_func_id: helper function ids (member names are the helper names)."),
    ("TaskFdType", "bpf_task_fd_type", "BPF_FD_TYPE_", "IntEnum", False,
     "enum bpf_task_fd_type (BPF_TASK_FD_QUERY results)."),
    ("PerfEventLinkType", "bpf_perf_event_type", "BPF_PERF_EVENT_", "IntEnum", False,
     "enum bpf_perf_event_type (bpf_link_info.perf_event.type)."),
    ("CoreReloKind", "bpf_core_relo_kind", "BPF_CORE_", "IntEnum", False,
     "enum bpf_core_relo_kind (CO-RE relocation kinds)."),
    ("CgroupIterOrder", "bpf_cgroup_iter_order", "BPF_CGROUP_ITER_", "IntEnum", False,
     "enum bpf_cgroup_iter_order (cgroup iterator link info)."),
    ("TaskIterType", "bpf_iter_task_type", "BPF_TASK_ITER_", "IntEnum", False,
     "enum bpf_iter_task_type (task iterator link info)."),
    ("PerfType", "perf_type_id", "PERF_TYPE_", "IntEnum", True,
     "enum perf_type_id (perf_event_attr.type)."),
    ("PerfHwId", "perf_hw_id", "PERF_COUNT_HW_", "IntEnum", True, "enum perf_hw_id."),
    ("PerfSwId", "perf_sw_ids", "PERF_COUNT_SW_", "IntEnum", True, "enum perf_sw_ids."),
    ("PerfSample", "perf_event_sample_format", "PERF_SAMPLE_", "IntFlag", True,
     "enum perf_event_sample_format (perf_event_attr.sample_type bits)."),
    ("PerfFormat", "perf_event_read_format", "PERF_FORMAT_", "IntFlag", True,
     "enum perf_event_read_format (perf_event_attr.read_format bits)."),
    ("PerfRecord", "perf_event_type", "PERF_RECORD_", "IntEnum", True,
     "enum perf_event_type (perf ring record types)."),
)

# Perf enums whose members are also exported under their kernel names (PERF_TYPE_TRACEPOINT ...).
PERF_ALIASED = ("PerfType", "PerfHwId", "PerfSwId", "PerfSample", "PerfFormat", "PerfRecord")

# Anonymous enums turned into flag classes, found by one member name (anchor).
# (class, anchor, prefix to strip, docstring)
ANON_FLAG_ENUMS: Sequence[Tuple[str, str, str, str]] = (
    ("MapFlags", "BPF_F_NO_PREALLOC", "BPF_F_",
     "BPF_MAP_CREATE map_flags (also BPF_OBJ_GET file_flags RDONLY/WRONLY/PATH_FD)."),
    ("UpdateFlags", "BPF_ANY", "BPF_", "BPF_MAP_UPDATE_ELEM / LOOKUP_ELEM flags."),
)

# Anonymous-enum BPF_* constants that are kernel-internal (not in include/uapi/linux/bpf.h):
# they appear in vmlinux BTF but are not ABI, so they are not exported.
ANON_INTERNAL = frozenset({
    "BPF_MAX_LOOPS", "BPF_MAX_TIMED_LOOPS", "BPF_MAX_TRAMP_LINKS", "BPF_STREAM_MAX_CAPACITY",
    "BPF_SKEL_KERNEL", "BPF_TASK_ITER_ALL_PROCS", "BPF_TASK_ITER_ALL_THREADS",
    "BPF_TASK_ITER_PROC_THREADS", "BPF_XFRM_STATE_OPTS_SZ",
})

# ---------------------------------------------------------------------------------------------
# HAND TABLES: #defines that BTF cannot carry.
# Values from include/uapi/linux/bpf.h and include/uapi/linux/perf_event.h (Linux 6.18);
# BPF_LOG_* from include/linux/bpf_verifier.h (log_level bits are ABI, the names are not).
# A name found in BTF takes BTF's value; a conflicting value stops the generator.
# ---------------------------------------------------------------------------------------------

HAND_FLAG_ENUMS: Sequence[Tuple[str, str, str, Sequence[Tuple[str, int]]]] = (
    ("ProgLoadFlags", "BPF_F_", "BPF_PROG_LOAD prog_flags (uapi bpf.h #defines).", (
        ("BPF_F_STRICT_ALIGNMENT", 1 << 0),
        ("BPF_F_ANY_ALIGNMENT", 1 << 1),
        ("BPF_F_TEST_RND_HI32", 1 << 2),
        ("BPF_F_TEST_STATE_FREQ", 1 << 3),
        ("BPF_F_SLEEPABLE", 1 << 4),
        ("BPF_F_XDP_HAS_FRAGS", 1 << 5),
        ("BPF_F_XDP_DEV_BOUND_ONLY", 1 << 6),
        ("BPF_F_TEST_REG_INVARIANTS", 1 << 7),
        ("BPF_F_TOKEN_FD", 1 << 16),
    )),
    ("AttachFlags", "BPF_F_",
     "BPF_PROG_ATTACH / BPF_LINK_CREATE attach flags (uapi bpf.h #defines).", (
        ("BPF_F_ALLOW_OVERRIDE", 1 << 0),
        ("BPF_F_ALLOW_MULTI", 1 << 1),
        ("BPF_F_REPLACE", 1 << 2),
        ("BPF_F_BEFORE", 1 << 3),
        ("BPF_F_AFTER", 1 << 4),
        ("BPF_F_ID", 1 << 5),
        ("BPF_F_PREORDER", 1 << 6),
        ("BPF_F_LINK", 1 << 13),
    )),
    ("QueryFlags", "BPF_F_", "BPF_PROG_QUERY query_flags (uapi bpf.h #defines).", (
        ("BPF_F_QUERY_EFFECTIVE", 1 << 0),
    )),
    ("TestRunFlags", "BPF_F_", "BPF_PROG_TEST_RUN flags (uapi bpf.h #defines).", (
        ("BPF_F_TEST_RUN_ON_CPU", 1 << 0),
        ("BPF_F_TEST_XDP_LIVE_FRAMES", 1 << 1),
        ("BPF_F_TEST_SKB_CHECKSUM_COMPLETE", 1 << 2),
    )),
    ("PerfFlag", "PERF_FLAG_", "perf_event_open(2) flags (uapi perf_event.h #defines).", (
        ("PERF_FLAG_FD_NO_GROUP", 1 << 0),
        ("PERF_FLAG_FD_OUTPUT", 1 << 1),
        ("PERF_FLAG_PID_CGROUP", 1 << 2),
        ("PERF_FLAG_FD_CLOEXEC", 1 << 3),
    )),
)

HAND_INTS: Sequence[Tuple[str, int, str]] = (
    ("BPF_PSEUDO_MAP_FD", 1, "ldimm64 src_reg: imm is a map fd"),
    ("BPF_PSEUDO_MAP_VALUE", 2, "ldimm64 src_reg: imm is a map fd, next imm a value offset"),
    ("BPF_PSEUDO_BTF_ID", 3, "ldimm64 src_reg: imm is a BTF id of a kernel variable"),
    ("BPF_PSEUDO_FUNC", 4, "ldimm64 src_reg: imm is the offset of a subprogram"),
    ("BPF_PSEUDO_MAP_IDX", 5, "ldimm64 src_reg: imm is an index into fd_array"),
    ("BPF_PSEUDO_MAP_IDX_VALUE", 6, "ldimm64 src_reg: fd_array index + value offset"),
    ("BPF_PSEUDO_CALL", 1, "call src_reg: bpf-to-bpf call"),
    ("BPF_PSEUDO_KFUNC_CALL", 2, "call src_reg: kfunc call by BTF id"),
    ("BPF_OBJ_NAME_LEN", 16, "size of map/prog name fields, NUL included"),
    ("BPF_TAG_SIZE", 8, "size of bpf_prog_info.tag"),
    ("BPF_BUILD_ID_SIZE", 20, "size of a build id in stack traces"),
    ("BPF_F_NETFILTER_IP_DEFRAG", 1 << 0, "link_create.netfilter.flags"),
    ("BPF_LOG_LEVEL1", 1, "verifier log: instructions of rejected programs"),
    ("BPF_LOG_LEVEL2", 2, "verifier log: every instruction and state"),
    ("BPF_LOG_STATS", 4, "verifier log: statistics only"),
    ("BPF_LOG_FIXED", 8, "verifier log: stop at the end of the buffer instead of rotating"),
)

# (name, direction, nr, size of argument) for ioctl type '$' (perf_event.h).
HAND_PERF_IOCTLS: Sequence[Tuple[str, str, int, int]] = (
    ("PERF_EVENT_IOC_ENABLE", "", 0, 0),
    ("PERF_EVENT_IOC_DISABLE", "", 1, 0),
    ("PERF_EVENT_IOC_REFRESH", "", 2, 0),
    ("PERF_EVENT_IOC_RESET", "", 3, 0),
    ("PERF_EVENT_IOC_PERIOD", "W", 4, 8),
    ("PERF_EVENT_IOC_SET_OUTPUT", "", 5, 0),
    ("PERF_EVENT_IOC_SET_FILTER", "W", 6, 8),
    ("PERF_EVENT_IOC_ID", "R", 7, 8),
    ("PERF_EVENT_IOC_SET_BPF", "W", 8, 4),
    ("PERF_EVENT_IOC_PAUSE_OUTPUT", "W", 9, 4),
    ("PERF_EVENT_IOC_QUERY_BPF", "RW", 10, 8),
    ("PERF_EVENT_IOC_MODIFY_ATTRIBUTES", "W", 11, 8),
)

# ---------------------------------------------------------------------------------------------
# Structs for the cdef
# ---------------------------------------------------------------------------------------------

# One C struct per bpf(2) command family, split out of union bpf_attr.  A selector is either the
# name of a named member of the union ("batch") or "@field": the anonymous member that has
# `field`.  The order here is the order in the cdef.
ATTR_STRUCTS: Sequence[Tuple[str, str]] = (
    ("map_create_attr", "@map_type"),
    ("map_elem_attr", "@key"),
    ("map_batch_attr", "batch"),
    ("prog_load_attr", "@prog_type"),
    ("obj_pin_attr", "@pathname"),
    ("prog_attach_attr", "@attach_bpf_fd"),
    ("test_run_attr", "test"),
    ("get_id_attr", "@next_id"),
    ("info_by_fd_attr", "info"),
    ("query_attr", "query"),
    ("raw_tp_open_attr", "raw_tracepoint"),
    ("btf_load_attr", "@btf"),
    ("task_fd_query_attr", "task_fd_query"),
    ("link_create_attr", "link_create"),
    ("link_update_attr", "link_update"),
    ("link_detach_attr", "link_detach"),
    ("enable_stats_attr", "enable_stats"),
    ("iter_create_attr", "iter_create"),
    ("prog_bind_map_attr", "prog_bind_map"),
    ("token_create_attr", "token_create"),
    ("prog_stream_read_attr", "prog_stream_read"),
)

# Kernel structs emitted under their own names: (name, required).
PLAIN_STRUCTS: Sequence[Tuple[str, bool]] = (
    ("bpf_prog_info", True),
    ("bpf_map_info", True),
    ("bpf_btf_info", True),
    ("bpf_link_info", True),
    ("bpf_token_info", False),
    ("bpf_func_info", True),
    ("bpf_line_info", True),
    ("perf_event_attr", True),
    ("perf_event_mmap_page", True),
    ("perf_event_header", True),
)

# Names of the plain integer that stands for a run of several bitfields: (struct, first bitfield).
BITFIELD_RUN_NAMES: Dict[Tuple[str, str], str] = {
    ("perf_event_attr", "disabled"): "flags",
}


FUNCTIONS = """\
/* libc.  syscall() is called through typed function pointers (see pybpf/sys/_libc.py). */
long syscall(long number, ...);
int mount(const char *source, const char *target, const char *filesystemtype,
          unsigned long mountflags, const void *data);
int umount2(const char *target, int flags);
"""


# ---------------------------------------------------------------------------------------------
# consts.py
# ---------------------------------------------------------------------------------------------

def _member_name(name: str, prefix: str) -> Optional[str]:
    """Strip ``prefix``; None for sentinels (``__MAX_*``, ``*_MAX``) and foreign names."""
    if not name.startswith(prefix):
        return None
    short = name[len(prefix):]
    if not short or short.startswith("_") or short == "MAX" or short.startswith("MAX_"):
        return None
    if short[0].isdigit() or keyword.iskeyword(short) or short in ("name", "value"):
        short = "_" + short
    if not short.isidentifier():
        raise GenError(f"cannot turn {name!r} into a Python identifier")
    return short


def _find_enum(spec: Spec, name: str) -> Optional[AnyEnum]:
    ids = spec.find(name, Kind.ENUM) + spec.find(name, Kind.ENUM64)
    if not ids:
        return None
    return spec[ids[0]]  # type: ignore[return-value]


def _anon_enums(spec: Spec) -> Iterator[AnyEnum]:
    for tid in range(spec.start_id, len(spec)):
        if spec.kind_of(tid) in (Kind.ENUM, Kind.ENUM64):
            t = spec[tid]
            if not t.name:
                yield t  # type: ignore[misc]


class Consts:
    """Collects everything that goes into consts.py."""

    def __init__(self, spec: Spec):
        self.spec = spec
        # (class name, base, docstring, members)
        self.classes: List[Tuple[str, str, str, List[Tuple[str, int]]]] = []
        self.ints: Dict[str, Tuple[int, str]] = {}      # module-level: name -> (value, comment)
        self.aliases: List[Tuple[str, str]] = []        # module-level name -> "Class.MEMBER"
        self.btf_names: Dict[str, int] = {}              # every enumerator BTF has, for hand checks
        self.bitfields: List[Tuple[str, int, int]] = []  # perf_event_attr.flags: (name, bit, width)

    def build(self) -> None:
        spec = self.spec
        anon = list(_anon_enums(spec))
        anchors: Dict[str, AnyEnum] = {}
        for t in anon:
            for v in t.values:
                self.btf_names.setdefault(v.name, v.value)
                anchors.setdefault(v.name, t)
        for cls, ename, prefix, base, required, doc in NAMED_ENUMS:
            named = _find_enum(spec, ename)
            if named is None:
                if required:
                    raise GenError(f"BTF has no enum {ename}")
                continue
            members = []
            for v in named.values:
                self.btf_names.setdefault(v.name, v.value)
                short = _member_name(v.name, prefix)
                if short is not None:
                    members.append((short, v.value))
                    if cls in PERF_ALIASED:
                        self.aliases.append((v.name, f"{cls}.{short}"))
            self.classes.append((cls, base, doc, members))
        for cls, anchor, prefix, doc in ANON_FLAG_ENUMS:
            holder = anchors.get(anchor)
            if holder is None:
                raise GenError(f"BTF has no anonymous enum holding {anchor}")
            members = [(s, v.value) for v in holder.values
                       if (s := _member_name(v.name, prefix)) is not None]
            self.classes.append((cls, "IntFlag", doc + " (from BTF)", members))
        for cls, prefix, doc, values in HAND_FLAG_ENUMS:
            members = []
            for name, value in values:
                value = self._hand_value(name, value)
                short = _member_name(name, prefix)
                assert short is not None
                members.append((short, value))
            self.classes.append((cls, "IntFlag", doc, members))
        # Module-level ints: every uapi BPF_* / BTF_F_* constant of an anonymous enum.
        for t in anon:
            for v in t.values:
                n = v.name
                if not (n.startswith("BPF_") or n.startswith("BTF_F_")) or n in ANON_INTERNAL:
                    continue
                if n in self.ints and self.ints[n][0] != v.value:
                    raise GenError(f"{n} has two values in BTF: {self.ints[n][0]} and {v.value}")
                self.ints[n] = (v.value, "")
        for name, value, comment in HAND_INTS:
            self.ints[name] = (self._hand_value(name, value), comment)

    def _hand_value(self, name: str, value: int) -> int:
        have = self.btf_names.get(name)
        if have is not None and have != value:
            raise GenError(f"hand table says {name} = {value:#x} but BTF says {have:#x}")
        return value if have is None else have

    def render(self, source: str) -> str:
        out = io.StringIO()
        w = out.write
        w(f"# {HEADER}.\n# Source: {source}\n")
        w('"""Kernel ABI constants for BPF and perf, generated from kernel BTF.\n\n'
          "Named kernel enums become ``enum.IntEnum`` classes with their common prefix\n"
          "dropped (``MapType.HASH`` is ``BPF_MAP_TYPE_HASH``); flag families become\n"
          "``enum.IntFlag`` classes; other uapi constants are module-level ints under\n"
          "their kernel names.  Pure Python: safe to import from the pure layers.\n"
          '"""\n\n')
        w("from __future__ import annotations\n\n"
          "import enum\nimport os as _os\nimport sys as _sys\n\n")
        names = [c[0] for c in self.classes] + sorted(self.ints) + [a for a, _ in self.aliases]
        names += [n for n, *_ in HAND_PERF_IOCTLS] + [f"PERF_ATTR_FLAG_{n.upper()}" for n, _b, width
                                                       in self.bitfields if width == 1]
        names += [f"PERF_ATTR_{n.upper()}_SHIFT" for n, _b, width in self.bitfields if width > 1]
        names += [f"PERF_ATTR_{n.upper()}_MASK" for n, _b, width in self.bitfields if width > 1]
        w("__all__ = [\n")
        line = "   "
        for n in names:
            item = f" {n!r},"
            if len(line) + len(item) > 99:
                w(line + "\n")
                line = "   "
            line += item
        w(line + "\n]\n\n")
        for cls, base, doc, members in self.classes:
            w(f"\nclass {cls}(enum.{base}):\n    \"\"\"{doc}\"\"\"\n\n")
            for short, value in members:
                w(f"    {short} = {_fmt(value, base == 'IntFlag' and value >= 16)}\n")
            w("\n")
        w("\n# Module-level constants (anonymous enums in BTF, and hand-table #defines).\n")
        for n in sorted(self.ints):
            value, comment = self.ints[n]
            w(f"{n} = {_fmt(value, value >= 16 and (value & (value - 1)) == 0)}"
              + (f"  # {comment}" if comment else "") + "\n")
        w("\n# Perf enum members under their kernel names.\n")
        for name, target in self.aliases:
            w(f"{name} = {target}\n")
        w(_IOC_BLOCK)
        for name, direction, nr, size in HAND_PERF_IOCTLS:
            w(f"{name} = _ioc({direction!r}, 0x24, {nr}, {size})\n")
        w(_BITFIELD_BLOCK)
        for name, bit, width in self.bitfields:
            if width == 1:
                w(f"PERF_ATTR_FLAG_{name.upper()} = _bit({bit})\n")
            else:
                w(f"PERF_ATTR_{name.upper()}_SHIFT = _shift({bit}, {width})\n")
                w(f"PERF_ATTR_{name.upper()}_MASK = (1 << {width}) - 1\n")
        w("\ndel _os, _sys\n")
        return out.getvalue()


def _fmt(value: int, as_hex: bool) -> str:
    if value < 0:
        return str(value)
    if as_hex:
        return hex(value)
    return str(value)


_IOC_BLOCK = '''

# ioctl request numbers (asm-generic/ioctl.h).  powerpc, mips and sparc encode
# directions and sizes differently, so the numbers are computed at import.
_MACHINE = _os.uname().machine if hasattr(_os, "uname") else ""
_IOC_ALT = _MACHINE.startswith(("ppc", "powerpc", "mips", "sparc"))


def _ioc(direction: str, kind: int, nr: int, size: int) -> int:
    if _IOC_ALT:
        dirs = {"": 1, "W": 4, "R": 2, "RW": 6}
        return (dirs[direction] << 29) | (size << 16) | (kind << 8) | nr
    dirs = {"": 0, "W": 1, "R": 2, "RW": 3}
    return (dirs[direction] << 30) | (size << 16) | (kind << 8) | nr


'''

_BITFIELD_BLOCK = '''

# perf_event_attr bitfields: bit positions inside perf_event_attr.flags.  BTF gives
# little-endian bit numbers; on big-endian hosts the first bitfield is the top bit.
_BIG = _sys.byteorder == "big"


def _shift(bit: int, width: int = 1) -> int:
    return 64 - bit - width if _BIG else bit


def _bit(bit: int) -> int:
    return 1 << _shift(bit)


'''


# ---------------------------------------------------------------------------------------------
# cdef
# ---------------------------------------------------------------------------------------------

class CdefEmitter:
    """Turns BTF composites into cffi cdef text with explicit padding."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.defs: List[str] = []
        self.emitted: set = set()
        self.bitfield_runs: Dict[str, List[Tuple[str, int, int]]] = {}

    # -- scalars -----------------------------------------------------------------------------
    def _scalar(self, tid: int) -> Tuple[str, int]:
        t = self.spec[tid]
        if isinstance(t, Int):
            if t.size == 1 and t.name == "char":
                return "char", 1
            if t.size not in (1, 2, 4, 8):
                raise GenError(f"integer {t.name} of size {t.size} has no C99 fixed-width type")
            signed = bool(t.encoding & IntEncoding.SIGNED)
            return f"{'' if signed else 'u'}int{t.size * 8}_t", t.size
        if isinstance(t, (Enum, Enum64)):
            return f"{'' if t.signed else 'u'}int{t.size * 8}_t", t.size
        if isinstance(t, Float):
            return {4: "float", 8: "double"}[t.size], t.size
        raise GenError(f"type [{tid}] {self.spec.type_name(tid)} is not a scalar")

    # -- composites --------------------------------------------------------------------------
    def emit(self, cname: str, tid: int, owner: str) -> None:
        """Emit ``struct cname`` (or union) for BTF composite ``tid``.

        ``owner`` is the top-level struct, which names bitfield runs in BITFIELD_RUN_NAMES.
        """
        if cname in self.emitted:
            return
        t = self.spec[self.spec.skip_modifiers(tid)]
        if not isinstance(t, (Struct, Union)):
            raise GenError(f"{cname}: BTF type [{tid}] is not a struct or union")
        self.emitted.add(cname)
        pad = itertools.count()
        lines, _size, _align = self._body(t, cname, owner, pad, 1)
        kw = "struct" if isinstance(t, Struct) else "union"
        self.defs.append(f"{kw} {cname} {{\n" + "".join(lines) + "};\n")

    def _members(self, comp: Composite, owner: str) -> List[Tuple[str, int, int, Optional[str]]]:
        """(name, type id, byte offset, None) per member; a bitfield run folded into one
        integer is (name, unit size, byte offset, comment)."""
        spec = self.spec
        out: List[Tuple[str, int, int, Optional[str]]] = []
        members = list(comp.members)
        i = 0
        while i < len(members):
            m = members[i]
            bits = self._bitfield(m)
            if bits is None:
                if m.offset % 8:
                    raise GenError(f"{owner}.{m.name} is not byte-aligned")
                out.append((m.name, m.type, m.offset // 8, None))
                i += 1
                continue
            unit = spec.sizeof(m.type)
            start = (m.offset // (unit * 8)) * unit
            run = []
            while i < len(members):
                mm = members[i]
                b = self._bitfield(mm)
                if b is None or not start * 8 <= mm.offset <= (start + unit) * 8 - b:
                    break
                run.append((mm.name, mm.offset - start * 8, b))
                i += 1
            real = [r for r in run if not r[0].startswith("__reserved")]
            if len(real) == 1:
                name = real[0][0]
            else:
                key = (owner, run[0][0])
                if key not in BITFIELD_RUN_NAMES:
                    raise GenError(f"name the bitfield run starting at {owner}.{run[0][0]} in "
                                   "BITFIELD_RUN_NAMES")
                name = BITFIELD_RUN_NAMES[key]
            self.bitfield_runs[f"{owner}.{name}"] = [r for r in run
                                                     if r[0] and not r[0].startswith("__")]
            out.append((name, unit, start, _run_comment(run)))
        return out

    def _bitfield(self, m) -> Optional[int]:
        if m.bitfield_size:
            return m.bitfield_size
        t = self.spec[self.spec.skip_modifiers(m.type)]
        if isinstance(t, Int) and t.bits and t.bits != t.size * 8:
            return t.bits
        return None

    def _body(self, comp: Composite, scope: str, owner: str, pad: Iterator[int],
              indent: int) -> Tuple[List[str], int, int]:
        ind = "    " * indent
        lines: List[str] = []
        align = 1
        if isinstance(comp, Union):
            members = comp.members
            # An anonymous struct made only of bitfields, overlaying another member of the union,
            # adds nothing a plain integer does not: drop it (perf_event_attr, mmap page).
            if len(members) > 1:
                members = tuple(m for m in members if not self._bitfield_only(m))
            biggest = 0
            for m in members:
                if m.offset or self._bitfield(m):
                    raise GenError(f"{scope}: union member {m.name or '(anon)'} is a bitfield")
                decl, size, a = self._decl(m.name, m.type, scope, owner, pad, indent)
                lines += decl
                biggest = max(biggest, size)
                align = max(align, a)
            if comp.size > biggest:
                lines.append(f"{ind}uint8_t __pad{next(pad)}[{comp.size}];\n")
        else:
            cursor = 0
            for name, tid, off, synthetic in self._members(comp, owner):
                if synthetic is not None:
                    size = a = tid  # for a bitfield run, the unit size
                    decl = [f"{ind}uint{size * 8}_t {name};  /* {synthetic} */\n"]
                else:
                    decl, size, a = self._decl(name, tid, scope, owner, pad, indent)
                if off < cursor:
                    raise GenError(f"{scope}.{name or '(anon)'} overlaps the previous field")
                if off > cursor:
                    lines.append(f"{ind}uint8_t __pad{next(pad)}[{off - cursor}];\n")
                if off % a:
                    raise GenError(f"{scope}.{name or '(anon)'} at offset {off} is not naturally "
                                   f"aligned ({a}); packed structs are not supported")
                lines += decl
                cursor = off + size
                align = max(align, a)
            if comp.size > cursor:
                lines.append(f"{ind}uint8_t __pad{next(pad)}[{comp.size - cursor}];\n")
        if comp.size % align:
            raise GenError(f"{scope}: size {comp.size} is not a multiple of its alignment {align}")
        return lines, comp.size, align

    def _bitfield_only(self, m) -> bool:
        if m.name:
            return False
        t = self.spec[self.spec.skip_modifiers(m.type)]
        return isinstance(t, Struct) and all(self._bitfield(mm) for mm in t.members)

    def _decl(self, name: str, tid: int, scope: str, owner: str, pad: Iterator[int],
              indent: int) -> Tuple[List[str], int, int]:
        """Declaration lines, size and alignment of one member."""
        spec = self.spec
        ind = "    " * indent
        rid = spec.skip_modifiers(tid)
        t = spec[rid]
        if isinstance(t, Array):
            dims = []
            while isinstance(t, Array):
                dims.append(t.nelems)
                rid = spec.skip_modifiers(t.type)
                t = spec[rid]
            suffix = "".join(f"[{n}]" for n in dims)
            count = 1
            for n in dims:
                count *= n
            if isinstance(t, (Struct, Union)):
                cname = t.name or f"{scope}_{name}"
                self.emit(cname, rid, cname)
                kw = "struct" if isinstance(t, Struct) else "union"
                return [f"{ind}{kw} {cname} {name}{suffix};\n"], t.size * count, spec.alignof(rid)
            ctype, size = self._scalar(rid)
            return [f"{ind}{ctype} {name}{suffix};\n"], size * count, size
        if isinstance(t, (Struct, Union)):
            kw = "struct" if isinstance(t, Struct) else "union"
            if t.name or name:
                cname = t.name or f"{scope}_{name}"
                self.emit(cname, rid, t.name or owner)
                return [f"{ind}{kw} {cname} {name};\n"], t.size, spec.alignof(rid)
            inner, size, a = self._body(t, scope, owner, pad, indent + 1)
            return [f"{ind}{kw} {{\n", *inner, f"{ind}}};\n"], size, a
        if t.kind == Kind.PTR:
            raise GenError(f"{scope}.{name} is a kernel pointer, not expressible in a user ABI")
        ctype, size = self._scalar(rid)
        return [f"{ind}{ctype} {name};\n"], size, size


def _run_comment(run: List[Tuple[str, int, int]]) -> str:
    named = [f"{n}:{w}" for n, _b, w in run if n and not n.startswith("__")]
    if len(named) > 4:
        named = named[:2] + ["..."] + named[-1:]
    return "bitfields " + " ".join(named)


def _attr_member(spec: Spec, attr: Union, selector: str):
    """The member of union bpf_attr that ``selector`` names."""
    if selector.startswith("@"):
        want = selector[1:]
        for m in attr.members:
            if m.name:
                continue
            t = spec[spec.skip_modifiers(m.type)]
            if isinstance(t, Struct) and want in _field_names(spec, t):
                return m
        return None
    for m in attr.members:
        if m.name == selector:
            return m
    return None


def _field_names(spec: Spec, comp: Composite) -> set:
    names = set()
    for m in comp.members:
        if m.name:
            names.add(m.name)
        else:
            t = spec[spec.skip_modifiers(m.type)]
            if isinstance(t, (Struct, Union)):
                names |= _field_names(spec, t)
    return names


def build_cdef(spec: Spec, consts: Consts) -> Tuple[str, Dict[str, Tuple[str, str]]]:
    """The cdef text and LAYOUT_SOURCES (cdef struct -> (BTF type name, selector))."""
    em = CdefEmitter(spec)
    attr_ids = spec.find("bpf_attr", Kind.UNION)
    if not attr_ids:
        raise GenError("BTF has no union bpf_attr")
    attr = spec[attr_ids[0]]
    sources: Dict[str, Tuple[str, str]] = {}
    matched = set()
    for cname, selector in ATTR_STRUCTS:
        m = _attr_member(spec, attr, selector)  # type: ignore[arg-type]
        if m is None:
            print(f"gen_sys: warning: union bpf_attr has no member {selector}; "
                  f"struct {cname} not generated", file=sys.stderr)
            continue
        matched.add(id(m))
        em.emit(cname, m.type, cname)
        sources[cname] = ("bpf_attr", selector)
    for m in attr.members:  # type: ignore[union-attr]
        if id(m) not in matched:
            print(f"gen_sys: warning: bpf_attr member {m.name or '(anon)'} has no entry in "
                  "ATTR_STRUCTS", file=sys.stderr)
    for name, required in PLAIN_STRUCTS:
        ids = spec.find(name, Kind.STRUCT)
        if not ids:
            if required:
                raise GenError(f"BTF has no struct {name}")
            continue
        em.emit(name, ids[0], name)
        sources[name] = (name, "")
    bits = em.bitfield_runs.get("perf_event_attr.flags")
    if not bits:
        raise GenError("perf_event_attr has no bitfield run named flags")
    consts.bitfields = list(bits)  # PERF_ATTR_FLAG_* constants
    text = "/* " + HEADER + " */\n\n" + "\n".join(em.defs) + "\n" + FUNCTIONS
    return text, sources


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def render_cdef_module(cdef: str, sources: Dict[str, Tuple[str, str]], source: str,
                       sha: str) -> str:
    out = io.StringIO()
    w = out.write
    w(f"# {HEADER}.\n# Source: {source}\n")
    w('"""cffi declarations of the kernel ABI used by pybpf.sys (generated from kernel BTF).\n\n'
      "One struct per bpf(2) command (split out of ``union bpf_attr``), the info structs\n"
      "and the perf structs.  Explicit ``__padN`` fields make cffi's natural layout equal\n"
      "the kernel's; runs of bitfields are one plain integer.\n"
      '"""\n\n')
    w(f"BTF_SHA256 = {sha!r}\n\n")
    w("# cdef struct name -> (BTF type, union bpf_attr member selector) it was generated from.\n")
    w("LAYOUT_SOURCES = {\n")
    for k, v in sources.items():
        w(f"    {k!r}: {v!r},\n")
    w("}\n\n")
    w('CDEF = """\\\n' + cdef + '"""\n')
    return out.getvalue()


def _source_type(spec: Spec, btf_name: str, selector: str) -> int:
    """The BTF type id a LAYOUT_SOURCES entry names."""
    if btf_name == "bpf_attr":
        attr = spec[spec.find_one("bpf_attr", Kind.UNION)]
        return _attr_member(spec, attr, selector).type  # type: ignore[union-attr, arg-type]
    return spec.find_one(btf_name, Kind.STRUCT)


def generate(btf_path: str) -> Dict[str, str]:
    """Generate every output file; returns {path relative to the repo root: text}."""
    with open(btf_path, "rb") as f:
        raw = f.read()
    sha = hashlib.sha256(raw).hexdigest()
    spec = Spec.parse(raw, file=btf_path)
    source = f"kernel BTF sha256:{sha}"
    consts = Consts(spec)
    consts.build()
    cdef, sources = build_cdef(spec, consts)
    gen_ffi.check_layout(spec, cdef, {k: _source_type(spec, *v) for k, v in sources.items()})
    ffi_text = gen_ffi.render_ffi_module(cdef)
    return {
        "pybpf/consts.py": consts.render(source),
        "pybpf/sys/_cdef.py": render_cdef_module(cdef, sources, source, sha),
        "pybpf/sys/_ffi.py": ffi_text,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux", help="kernel BTF file to read")
    ap.add_argument("--out-dir", default=ROOT, help="repository root to write into")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if the committed files differ from the output")
    args = ap.parse_args(argv)
    try:
        files = generate(args.btf)
    except (GenError, gen_ffi.LayoutError, OSError) as e:
        print(f"gen_sys: {e}", file=sys.stderr)
        return 2
    stale = []
    for rel, text in files.items():
        path = os.path.join(args.out_dir, rel)
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        if old == text:
            continue
        stale.append(rel)
        if not args.check:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if args.check:
        for rel in stale:
            print(f"gen_sys: {rel} is out of date", file=sys.stderr)
        return 1 if stale else 0
    for rel in stale:
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
