"""CO-RE against the running kernel: real task_struct, file and sk_buff fields read by
BPF programs, checked against /proc; and how an unsatisfiable relocation is explained.

Programs: tests/progs/core_kernel.bpf.c, tests/progs/core_missing.bpf.c (with
tests/progs/core_target_btf.bpf.o as a custom target BTF that lacks
task_struct.real_parent).
"""

from __future__ import annotations

import gc
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pybpf
import pybpf.sys
from pybpf.btf import Kind, Spec
from pybpf.consts import ProgType
from pybpf.kbtf import (VMLINUX_BTF, load_kernel_btf, load_module_btf, module_btf_fd,
                        module_btf_names)

pytestmark = pytest.mark.kernel

CHILD = r"""
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, b"pybpf-core-kid", 0, 0, 0)      # PR_SET_NAME
fd = os.open(sys.argv[1], os.O_RDONLY)
print(fd, flush=True)
for line in sys.stdin:                                      # one getppid() burst per line
    for _ in range(50):
        os.getppid()
    print("ok", flush=True)
"""


def _cgroup2_root() -> Path | None:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return Path(fields[1])
    return None


@pytest.fixture
def child_in_cgroup(tmp_path):
    """A child process with a known comm, an open file, and (cgroup v2) its own cgroup."""
    target = tmp_path / "pybpf-core-target.txt"
    target.write_text("x")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(target)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    cgdir = None
    try:
        fd = int(child.stdout.readline())
        root = _cgroup2_root()
        if root is not None:
            cgdir = root / f"pybpf-core-{os.getpid()}"
            cgdir.mkdir(exist_ok=True)
            (cgdir / "cgroup.procs").write_text(str(child.pid))
        yield child, fd, target, cgdir
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        if cgdir is not None:
            cgdir.rmdir()


def _burst(child) -> None:
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "ok"


def test_task_struct_and_file_fields_match_proc(bpf_objects, child_in_cgroup):
    child, fd, target, cgdir = child_in_cgroup
    spec = pybpf.load_collection_spec(bpf_objects["core_kernel"])
    spec.variables["target_tgid"].value = child.pid
    spec.variables["target_fd"].value = fd
    spec.programs["skb_fields"].autoload = False
    spec.programs["core_facts"].autoload = False
    with pybpf.load(spec) as coll, coll.programs["task_fields"].attach():
        deadline = time.monotonic() + 10
        while not coll.variables["task"].value.done and time.monotonic() < deadline:
            _burst(child)
        got = coll.variables["task"].value
    assert got.done
    stat = Path(f"/proc/{child.pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    assert got.pid == child.pid and got.tgid == child.pid
    assert got.ppid == os.getpid() == int(fields[1])
    assert got.comm == Path(f"/proc/{child.pid}/comm").read_text().strip() == "pybpf-core-kid"
    assert got.start_boottime // (10**9 // os.sysconf("SC_CLK_TCK")) == int(fields[19])
    assert got.ino == os.stat(f"/proc/{child.pid}/fd/{fd}").st_ino == target.stat().st_ino
    assert got.fname == target.name
    if cgdir is not None:
        assert got.cgroup_id == cgdir.stat().st_ino


def test_sk_buff_fields_match_the_packet(bpf_objects):
    if not load_kernel_btf().find("bpf_cast_to_kern_ctx", Kind.FUNC):
        pytest.skip("this kernel has no bpf_cast_to_kern_ctx kfunc (6.3+)")
    spec = pybpf.load_collection_spec(bpf_objects["core_kernel"])
    spec.programs["task_fields"].autoload = False
    spec.programs["core_facts"].autoload = False
    # test_run classifies the frame against the loopback device (address 0): another
    # host's unicast address makes pkt_type (a 3-bit bitfield) PACKET_OTHERHOST, 3.
    pkt = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + bytes(50)
    skb_ctx = bytearray(192)                             # struct __sk_buff: mark is the 3rd u32
    struct.pack_into("=I", skb_ctx, 8, 0x5A5A)
    with pybpf.load(spec) as coll:
        r = coll.programs["skb_fields"].test_run(pkt, ctx_in=bytes(skb_ctx))
        assert r.retval == 0
        got = coll.variables["skb_seen"].value
    assert got.done and got.len == len(pkt)
    assert got.protocol == 0x0008                        # htons(ETH_P_IP), as the kernel stores it
    assert got.pkt_type == 3
    assert got.mark == 0x5A5A


def test_type_and_enum_facts_match_kernel_btf(bpf_objects):
    kbtf = load_kernel_btf()
    if not any(v.name == "BPF_PROG_TYPE_SYSCALL"
               for v in kbtf.type(kbtf.find_one("bpf_prog_type", Kind.ENUM)).values):
        pytest.skip("this kernel has no syscall programs (5.14+)")
    spec = pybpf.load_collection_spec(bpf_objects["core_kernel"])
    spec.programs["task_fields"].autoload = False
    spec.programs["skb_fields"].autoload = False
    task_id = kbtf.find_one("task_struct", Kind.STRUCT)
    comm = kbtf.type(task_id).member("comm")
    with pybpf.load(spec) as coll:
        coll.programs["core_facts"].test_run()
        f = coll.variables["facts"].value
    assert f.task_struct_size == kbtf.sizeof(task_id)
    assert (f.has_task_struct, f.has_no_such_type) == (1, 0)
    assert (f.syscall_prog_type, f.has_syscall_prog_type) == (int(ProgType.SYSCALL), 1)
    assert (f.comm_size, f.comm_offset) == (kbtf.sizeof(comm.type), comm.offset // 8)


def test_missing_field_on_a_dead_path_loads(bpf_objects):
    target = bpf_objects["core_target_btf"]
    spec = pybpf.load_collection_spec(bpf_objects["core_missing"])
    with pybpf.load(spec, kernel_btf=target) as coll:
        assert "guarded" in coll.programs


def test_missing_field_on_a_live_path_is_explained(bpf_objects):
    target = bpf_objects["core_target_btf"]
    spec = pybpf.load_collection_spec(bpf_objects["core_missing"])
    spec.programs["guarded"].autoload = False
    spec.programs["unguarded"].autoload = True
    with pytest.raises(pybpf.VerifierError) as ei:
        pybpf.load(spec, kernel_btf=target)
    e = ei.value
    assert e.program == "unguarded"
    [note] = [n for n in e.notes if "poisoned by CO-RE" in n]
    assert "task_struct.real_parent: field 'real_parent' not found in struct task_struct" in note
    assert str(target) in note                        # which target BTF lacked it
    assert "of program unguarded" in note and "instruction " in note
    assert "core_missing.bpf.c:" in note              # the source line
    assert note in str(e)


def _live_vmlinux_specs() -> list:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, Spec) and o.file == VMLINUX_BTF]


def test_load_keeps_no_kernel_btf(bpf_objects):
    """After load, nothing of vmlinux BTF stays resident unless the caller holds a Spec."""
    before = {id(s) for s in _live_vmlinux_specs()}     # held by earlier tests' fixtures, if any
    spec = pybpf.load_collection_spec(bpf_objects["core_kernel"])
    for name in ("skb_fields", "core_facts"):          # kfunc / syscall program: newer kernels
        spec.programs[name].autoload = False
    with pybpf.load(spec) as coll:
        assert coll.programs
    assert {id(s) for s in _live_vmlinux_specs()} == before
    held = load_kernel_btf()
    with pybpf.load(spec, kernel_btf=held):
        pass
    assert {id(s) for s in _live_vmlinux_specs()} == before | {id(held)}


@pytest.mark.skipif(not module_btf_names(), reason="this kernel has no modules with BTF; the guest "
                    "kernels of tools/vmtest do")
def test_module_btf_is_split_on_vmlinux():
    vmlinux = load_kernel_btf()
    for name in module_btf_names()[:8]:
        mod = load_module_btf(name, vmlinux)
        assert mod.base is vmlinux and mod.start_id == len(vmlinux) and len(mod) > mod.start_id
        own = next(iter(mod.names()))
        assert any(i >= mod.start_id for i in mod.find(own))
        assert mod.find("task_struct") == vmlinux.find("task_struct")   # falls through to the base
        with module_btf_fd(name) as fd:
            assert pybpf.sys.btf_info(fd.fileno())["name"] == name
