"""The generated kernel ABI (pybpf/sys/_cdef.py, pybpf/consts.py) against the running kernel's BTF.

cffi's ABI mode cannot check struct layouts, so this test does: every field the
kernel's BTF has must sit at the same byte offset, with the same size, in the
cffi struct.  When the running kernel's BTF is the one the files were generated
from, sizes must match exactly and regenerating must reproduce the files.
Needs only a readable /sys/kernel/btf/vmlinux (no privileges).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from typing import Tuple

import pytest

from pybpf import consts
from pybpf.btf import Kind, Spec, Struct, Union
from pybpf.sys import _cdef
from pybpf.sys._libc import ffi
from tools.gen_ffi import btf_leaves  # the generator's own walk of BTF members

VMLINUX = "/sys/kernel/btf/vmlinux"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(not os.access(VMLINUX, os.R_OK), reason="no kernel BTF")


@pytest.fixture(scope="module")
def raw() -> bytes:
    with open(VMLINUX, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def spec(raw: bytes) -> Spec:
    return Spec.parse(raw, file=VMLINUX)


@pytest.fixture(scope="module")
def same_btf(raw: bytes) -> bool:
    return hashlib.sha256(raw).hexdigest() == _cdef.BTF_SHA256


def _attr_member_type(spec: Spec, selector: str) -> int:
    attr = spec[spec.find_one("bpf_attr", Kind.UNION)]
    for m in attr.members:  # type: ignore[union-attr]
        if selector.startswith("@"):
            if m.name:
                continue
            t = spec[spec.skip_modifiers(m.type)]
            if isinstance(t, Struct) and selector[1:] in _names(spec, t):
                return m.type
        elif m.name == selector:
            return m.type
    pytest.skip(f"this kernel's bpf_attr has no {selector}")


def _names(spec: Spec, t) -> set:
    out = set()
    for m in t.members:
        if m.name:
            out.add(m.name)
        else:
            sub = spec[spec.skip_modifiers(m.type)]
            if isinstance(sub, (Struct, Union)):
                out |= _names(spec, sub)
    return out


def _cffi_field(cname: str, path: Tuple[str, ...]):
    """(offset, size) of a field path in the cffi struct, or None when it is not there."""
    ct = ffi.typeof(f"struct {cname}")
    for p in path:
        fields = dict(ct.fields) if ct.kind in ("struct", "union") else {}
        if p not in fields:
            return None
        ct = fields[p].type
    return ffi.offsetof(f"struct {cname}", *path), ffi.sizeof(ct)


def _btf_type(spec: Spec, btf_name: str, selector: str) -> int:
    if btf_name == "bpf_attr":
        return _attr_member_type(spec, selector)
    ids = spec.find(btf_name, Kind.STRUCT)
    if not ids:
        pytest.skip(f"this kernel has no struct {btf_name}")
    return ids[0]


@pytest.mark.parametrize("cname", sorted(_cdef.LAYOUT_SOURCES))
def test_struct_layout_matches_kernel_btf(spec: Spec, same_btf: bool, cname: str) -> None:
    btf_name, selector = _cdef.LAYOUT_SOURCES[cname]
    tid = _btf_type(spec, btf_name, selector)
    missing = []
    checked = 0
    for path, off, size in btf_leaves(spec, tid):
        got = _cffi_field(cname, path)
        if got is None:
            missing.append(".".join(path))
            continue
        assert got == (off, size), f"struct {cname}.{'.'.join(path)}: cffi (offset, size) " \
                                   f"{got} != kernel BTF {(off, size)}"
        checked += 1
    assert checked, f"no field of struct {cname} found in the kernel BTF"
    if same_btf:
        assert not missing, f"struct {cname} lacks {missing}"
        assert ffi.sizeof(f"struct {cname}") == spec.sizeof(tid)


def test_every_bpf_attr_member_has_a_struct(spec: Spec, same_btf: bool) -> None:
    if not same_btf:
        pytest.skip("kernel BTF differs from the one the cdef was generated from")
    attr = spec[spec.find_one("bpf_attr", Kind.UNION)]
    covered = {_attr_member_type(spec, sel) for name, (btf, sel) in _cdef.LAYOUT_SOURCES.items()
               if btf == "bpf_attr"}
    assert {m.type for m in attr.members} == covered  # type: ignore[union-attr]


def test_perf_event_attr_flag_bits(spec: Spec) -> None:
    t = spec[spec.find_one("perf_event_attr", Kind.STRUCT)]
    first = next(m for m in t.members if m.bitfield_size)  # type: ignore[union-attr]
    assert ffi.offsetof("struct perf_event_attr", "flags") == first.offset // 8
    start = first.offset
    for m in t.members:  # type: ignore[union-attr]
        if not m.bitfield_size or m.name.startswith("__"):
            continue
        bit = m.offset - start
        if m.bitfield_size == 1:
            want = 1 << (63 - bit if sys.byteorder == "big" else bit)
            assert getattr(consts, f"PERF_ATTR_FLAG_{m.name.upper()}") == want, m.name
        else:
            assert getattr(consts, f"PERF_ATTR_{m.name.upper()}_MASK") == (1 << m.bitfield_size) - 1


@pytest.mark.parametrize("cls,enum_name,prefix", [
    (consts.Cmd, "bpf_cmd", "BPF_"),
    (consts.MapType, "bpf_map_type", "BPF_MAP_TYPE_"),
    (consts.ProgType, "bpf_prog_type", "BPF_PROG_TYPE_"),
    (consts.AttachType, "bpf_attach_type", "BPF_"),
    (consts.LinkType, "bpf_link_type", "BPF_LINK_TYPE_"),
    (consts.FuncId, "bpf_func_id", "BPF_FUNC_"),
    (consts.PerfType, "perf_type_id", "PERF_TYPE_"),
    (consts.PerfSwId, "perf_sw_ids", "PERF_COUNT_SW_"),
    (consts.PerfSample, "perf_event_sample_format", "PERF_SAMPLE_"),
    (consts.PerfRecord, "perf_event_type", "PERF_RECORD_"),
])
def test_enums_match_kernel_btf(spec: Spec, same_btf: bool, cls, enum_name: str,
                                prefix: str) -> None:
    e = spec[spec.find_one(enum_name, Kind.ENUM)]
    btf = {v.name[len(prefix):]: v.value for v in e.values  # type: ignore[union-attr]
           if v.name.startswith(prefix)}
    for name, member in cls.__members__.items():
        if name in btf:
            assert member.value == btf[name], f"{cls.__name__}.{name}"
        else:
            assert not same_btf, f"{cls.__name__}.{name} is not in the kernel BTF"
    if same_btf:
        for name in btf:
            assert name.startswith("_") or name == "MAX" or name.startswith("MAX_") or \
                name in cls.__members__, f"{prefix}{name} missing from {cls.__name__}"


def test_flag_constants(spec: Spec) -> None:
    anon = {}
    for tid in range(1, len(spec)):
        if spec.kind_of(tid) == Kind.ENUM and not spec[tid].name:
            for v in spec[tid].values:  # type: ignore[union-attr]
                anon.setdefault(v.name, v.value)
    for name, member in consts.MapFlags.__members__.items():
        if f"BPF_F_{name}" in anon:
            assert member.value == anon[f"BPF_F_{name}"]
    assert consts.UpdateFlags.ANY == 0 and consts.UpdateFlags.NOEXIST == 1
    assert consts.UpdateFlags.EXIST == 2 and consts.UpdateFlags.F_LOCK == 4
    assert consts.MapFlags.MMAPABLE == 1 << 10
    assert consts.BPF_RINGBUF_BUSY_BIT == 1 << 31 and consts.BPF_RINGBUF_HDR_SZ == 8
    # hand-table #defines (uapi bpf.h / perf_event.h)
    assert consts.BPF_PSEUDO_MAP_FD == 1 and consts.BPF_PSEUDO_MAP_VALUE == 2
    assert consts.BPF_PSEUDO_CALL == 1 and consts.BPF_PSEUDO_KFUNC_CALL == 2
    assert consts.BPF_OBJ_NAME_LEN == 16 and consts.BPF_TAG_SIZE == 8
    assert consts.ProgLoadFlags.SLEEPABLE == 1 << 4
    assert consts.PerfFlag.FD_CLOEXEC == 8
    if os.uname().machine in ("x86_64", "aarch64", "riscv64", "s390x"):
        assert consts.PERF_EVENT_IOC_ENABLE == 0x2400
        assert consts.PERF_EVENT_IOC_SET_BPF == 0x40042408
        assert consts.PERF_EVENT_IOC_ID == 0x80082407


def test_consts_is_pure_python() -> None:
    import ast
    with open(consts.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "enum", "os", "sys"}


def test_generator_reproduces_committed_files(same_btf: bool) -> None:
    if not same_btf:
        pytest.skip("kernel BTF differs from the one the files were generated from")
    path = os.path.join(ROOT, "tools", "gen_sys.py")
    mod_spec = importlib.util.spec_from_file_location("_gen_sys_under_test", path)
    gen = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
    mod_spec.loader.exec_module(gen)  # type: ignore[union-attr]
    files = gen.generate(VMLINUX)
    for rel, text in files.items():
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            assert f.read() == text, f"{rel} is stale: run tools/gen_sys.py"


def test_out_of_line_module_matches_cdef() -> None:
    import cffi
    inline = cffi.FFI()
    inline.cdef(_cdef.CDEF)
    for cname in _cdef.LAYOUT_SOURCES:
        assert inline.sizeof(f"struct {cname}") == ffi.sizeof(f"struct {cname}")
