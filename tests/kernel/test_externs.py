"""Extern symbols: .kconfig values and __ksym kernel symbols, resolved at load time.

Programs: tests/progs/externs.bpf.c (.kconfig) and tests/progs/externs_ksym.bpf.c
(typeless, typed, kfunc, __weak).  Values are compared with uname, the kernel's
config and /proc/kallsyms; the instructions with libbpf's (test oracle).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess

import attrs
import pytest

import pybpf
from pybpf.errors import LinkError
from pybpf.externs import (KsymResolver, kallsyms_lookup, kconfig_data, kernel_version,
                           read_kernel_config)
from pybpf.kbtf import load_kernel_btf, load_module_btf, module_btf_names
from pybpf.progs.loader import prepare_insns
from tests.conftest import fd_count
from tests.kernel.libbpf_oracle import LIBBPF, libbpf_insns

kernel = pytest.mark.kernel


def need(*kfuncs: str) -> None:
    """Skip unless the kernel has syscall programs (5.14) and these kfuncs (kernel BTF)."""
    btf = load_kernel_btf()
    prog_types = btf.type(btf.find_one("bpf_prog_type", pybpf.btf.Kind.ENUM)).values
    if not any(v.name == "BPF_PROG_TYPE_SYSCALL" for v in prog_types):
        pytest.skip("this kernel has no syscall programs (5.14+)")
    missing = [k for k in kfuncs if not btf.find(k, pybpf.btf.Kind.FUNC)]
    if missing:
        pytest.skip(f"this kernel lacks the kfuncs {', '.join(missing)}")


def _standard_kconfig() -> bool:
    release = os.uname().release
    return os.path.exists(f"/boot/config-{release}") or os.path.exists("/proc/config.gz")


@pytest.fixture
def kconfig(monkeypatch):
    """The running kernel's config; in tools/vmtest guests (no /boot, no /proc/config.gz)
    the config file of the guest kernel's package, through $PYBPF_KCONFIG."""
    if not _standard_kconfig():
        release = os.uname().release
        cached = os.path.expanduser(f"~/.cache/pybpf-vmtest/kernels/{release}/boot/config-{release}")
        if not os.path.exists(cached):
            pytest.skip("this kernel's config is not readable (no /boot/config-*, /proc/config.gz)")
        monkeypatch.setenv("PYBPF_KCONFIG", cached)
    return read_kernel_config()


@kernel
def test_kconfig_values_match_the_running_kernel(bpf_objects, kconfig):
    need()
    from pybpf import features
    config = kconfig
    with pybpf.load(bpf_objects["externs"]) as coll:
        assert coll.programs["read_kconfig"].test_run().retval == 0
        v = coll.variables["values"].value
    major, minor, patch = (int(x) for x in re.match(r"(\d+)\.(\d+)\.(\d+)", os.uname().release).groups())
    assert v.version == (major << 16) + (minor << 8) + min(patch, 255) == kernel_version()
    assert v.hz == int(config["CONFIG_HZ"])
    assert v.nr_cpus == int(config["CONFIG_NR_CPUS"])
    assert v.bpf_syscall == (config.get("CONFIG_BPF_SYSCALL") == "y")
    assert v.jit == {"y": 1, "m": 2}.get(config.get("CONFIG_BPF_JIT", "n"), 0)
    assert v.jit_always_on == (ord("y") if config.get("CONFIG_BPF_JIT_ALWAYS_ON") == "y" else 0)
    assert v.localversion == config.get("CONFIG_LOCALVERSION", '""').strip('"')[:15]
    assert (v.missing_bool, v.missing_tristate, v.missing_int) == (0, 0, 0)
    wrapper = {"x86_64": "__x64_sys_bpf", "aarch64": "__arm64_sys_bpf"}.get(os.uname().machine)
    if wrapper:
        assert v.wrapper == bool(kallsyms_lookup([wrapper], allow_zero=True))
    assert v.cookie == features.have_feature("bpf_cookie")


@kernel
def test_kconfig_map_is_a_frozen_internal_map(bpf_objects, kconfig):
    need()
    spec = pybpf.load_collection_spec(bpf_objects["externs"])
    ms = spec.maps[".kconfig"]
    assert ms.kind == pybpf.spec.MapKind.KCONFIG and ms.freeze and ms.value_size == 49
    assert spec.kernel_map_names[".kconfig"] == "externs.kconfig"
    with pybpf.load(spec) as coll:
        m = coll.maps[".kconfig"]
        assert m.lookup_raw(b"\0\0\0\0")[24:28] == struct.pack("=I", kernel_version())
        with pytest.raises(pybpf.SyscallError):
            m.update_raw(b"\0\0\0\0", bytes(49))        # frozen: user space cannot change it


def test_kconfig_encoding_rules(bpf_objects):
    """libbpf's rules for turning config text into values (no kernel needed)."""
    spec = pybpf.load_collection_spec(bpf_objects["externs"])
    refs = [r for p in spec.programs.values() for r in p.extern_refs]
    base = {"CONFIG_HZ": "0x64", "CONFIG_NR_CPUS": "010", "CONFIG_BPF_SYSCALL": "y",
            "CONFIG_BPF_JIT": "m", "CONFIG_BPF_JIT_ALWAYS_ON": "n",
            "CONFIG_LOCALVERSION": '"-a-very-long-local-version"'}
    data = kconfig_data(spec.btf, refs, config=base)
    assert struct.unpack_from("=Q", data, 0)[0] == 8               # octal, as strtoull(.., 0)
    assert struct.unpack_from("=i", data, 12)[0] == 100            # hex
    assert struct.unpack_from("=i", data, 8)[0] == 2               # tristate m
    assert data[28:30] == b"n\x01"                                 # char 'n', bool y
    assert data[33:49] == b"-a-very-long-lo\0"                     # truncated to char[16]
    for bad, why in (({"CONFIG_HZ": "y"}, "implies bool, tristate or char"),
                     ({"CONFIG_BPF_SYSCALL": "m"}, "implies tristate or char"),
                     ({"CONFIG_HZ": "0x100000000"}, "does not fit 4 bytes"),
                     ({"CONFIG_HZ": "12abc"}, "not a valid integer"),
                     ({"CONFIG_HZ": '"str"'}, "implies a char array")):
        with pytest.raises(LinkError, match=why):
            kconfig_data(spec.btf, refs, config={**base, **bad})
    strong = [attrs.evolve(r, weak=False) if r.name == "CONFIG_PYBPF_NOT_AN_INT" else r for r in refs]
    with pytest.raises(LinkError, match="kernel config has no CONFIG_PYBPF_NOT_AN_INT"):
        kconfig_data(spec.btf, strong, config=base)


@kernel
def test_typeless_ksym_is_the_kallsyms_address(bpf_objects):
    need("bpf_task_from_pid", "bpf_task_release")
    before = fd_count()
    with pybpf.load(bpf_objects["externs_ksym"]) as coll:
        coll.programs["ksym_addrs"].test_run()
        got = coll.variables["addrs"].value
    assert got.schedule == kallsyms_lookup(["schedule"])["schedule"] != 0
    assert got.absent == 0                                  # __weak and absent
    assert fd_count() == before


@kernel
def test_kfunc_calls_and_weak_kfuncs(bpf_objects):
    need("bpf_task_from_pid", "bpf_task_release")
    with pybpf.load(bpf_objects["externs_ksym"]) as coll:
        r = coll.programs["kfunc_task"].test_run(ctx_in=struct.pack("5i", os.getpid(), 0, 0, 0, 0))
    pid, tgid, task_pid, have_present, have_missing = struct.unpack("5i", r.ctx_out)
    assert r.retval == 0
    assert tgid == task_pid == os.getpid()
    assert (have_present, have_missing) == (1, 0)          # bpf_ksym_exists()


@kernel
def test_unguarded_absent_weak_kfunc_is_explained(bpf_objects):
    need()
    spec = pybpf.load_collection_spec(bpf_objects["externs_ksym"])
    for p in spec.programs.values():
        p.autoload = p.name == "call_missing_kfunc"
    with pytest.raises(pybpf.VerifierError) as ei:
        pybpf.load(spec)
    [note] = ei.value.notes
    assert "calls kfunc bpf_pybpf_no_such_kfunc, declared __weak and absent" in note
    assert "externs_ksym.bpf.c:" in note and "bpf_ksym_exists(bpf_pybpf_no_such_kfunc)" in note


@kernel
def test_typed_ksym_variable(bpf_objects):
    need()
    spec = pybpf.load_collection_spec(bpf_objects["externs_ksym"])
    for p in spec.programs.values():
        p.autoload = p.name == "typed_ksym"
    kbtf = load_kernel_btf()
    assert kbtf.find("runqueues", pybpf.btf.Kind.VAR)
    if kallsyms_lookup(["runqueues"], allow_zero=True):
        with pybpf.load(spec) as coll:
            r = coll.programs["typed_ksym"].test_run(ctx_in=struct.pack("i", -7))
            assert struct.unpack("i", r.ctx_out)[0] == 0       # runqueues of CPU 0: rq->cpu
    else:
        # Kernels without CONFIG_KALLSYMS_ALL (this host) list no data symbols: the
        # verifier cannot find the variable's address, and the error says so.
        with pytest.raises(pybpf.VerifierError) as ei:
            pybpf.load(spec)
        assert any("'runqueues' is in the kernel's BTF but its address is not" in n
                   for n in ei.value.notes)


@kernel
def test_strong_missing_ksym_is_a_link_error(bpf_objects):
    spec = pybpf.load_collection_spec(bpf_objects["externs_ksym"])
    prog = spec.programs["ksym_addrs"]
    prog.extern_refs = [attrs.evolve(r, weak=False) for r in prog.extern_refs]
    for p in spec.programs.values():
        p.autoload = p is prog
    with pytest.raises(LinkError, match="pybpf_no_such_symbol.*not in /proc/kallsyms"):
        pybpf.load(spec)


@kernel
@pytest.mark.skipif(LIBBPF is None, reason="libbpf.so.1 (test oracle) not installed")
@pytest.mark.parametrize("obj", ["externs", "externs_ksym"])
def test_instructions_match_libbpf(bpf_objects, obj):
    if obj == "externs" and not _standard_kconfig():
        pytest.skip("libbpf needs /boot/config-* or /proc/config.gz for .kconfig externs")
    need(*(("bpf_task_from_pid", "bpf_task_release") if obj == "externs_ksym" else ()))
    path = str(bpf_objects[obj])
    theirs = libbpf_insns(path)
    spec = pybpf.load_collection_spec(path)
    with KsymResolver(lambda: load_kernel_btf(None)) as resolver:
        for name, p in spec.programs.items():
            if not p.autoload:
                continue
            ksyms = resolver.resolve_all(name, p.btf, p.extern_refs)
            ours = bytes(prepare_insns(p, {}, lambda: load_kernel_btf(None), ksyms=ksyms)[0])
            assert ours.hex() == theirs[name].hex(), name


def _kfunc_home(name: str):
    """'' when vmlinux has kfunc ``name``, a module name when a loaded module has it, else None."""
    if load_kernel_btf().find(name, pybpf.btf.Kind.FUNC):
        return ""
    for module in module_btf_names():
        spec = load_module_btf(module)
        if any(i >= spec.start_id for i in spec.find(name, pybpf.btf.Kind.FUNC)):
            return module
    return None


@kernel
def test_kfunc_from_vmlinux_or_a_module(bpf_objects):
    home = _kfunc_home("bpf_skb_ct_lookup")
    if home is None and os.environ.get("PYBPF_VMTEST") == "1":
        subprocess.run(["modprobe", "nf_conntrack"], check=False, capture_output=True)
        home = _kfunc_home("bpf_skb_ct_lookup")
    if home is None:
        pytest.skip("no bpf_skb_ct_lookup kfunc (nf_conntrack) in this kernel")
    spec = pybpf.load_collection_spec(bpf_objects["externs_module"])
    prog = spec.programs["ct_lookup"]
    with KsymResolver(lambda: load_kernel_btf(None)) as resolver:
        ksyms = resolver.resolve_all(prog.name, prog.btf, prog.extern_refs)
        lookup = ksyms["bpf_skb_ct_lookup"]
        assert lookup.module == home and lookup.btf_id
        if home:     # a module kfunc: its BTF fd sits in fd_array, the call's off indexes it
            assert lookup.fd_index == 1 and resolver.fd_array[1] == lookup.btf_fd
            insns = prepare_insns(prog, {}, lambda: load_kernel_btf(None), ksyms=ksyms)[0]
            call = next(r.insn for r in prog.extern_refs if r.name == "bpf_skb_ct_lookup")
            assert struct.unpack_from("=h", insns, call * 8 + 2)[0] == 1
    pkt = bytes(14) + bytes([0x45]) + bytes(33)
    with pybpf.load(spec) as coll:
        assert coll.programs["ct_lookup"].test_run(pkt).retval == 0
        found, error = coll.variables["ct_found"].value, coll.variables["ct_error"].value
    assert found == 0 and error < 0           # the module function ran: no such connection


@pytest.mark.needs_modules
def test_module_btf_and_module_kfunc(bpf_objects):
    """In the guest kernels (modules, module BTF): split BTF of a module parses on top of
    vmlinux, and a kfunc that lives in a module is called through fd_array."""
    from pybpf.privileges import kernel_version
    if kernel_version() < (5, 11, 0):
        pytest.skip("module BTF (CONFIG_DEBUG_INFO_BTF_MODULES) arrived in 5.11")
    subprocess.run(["modprobe", "nf_conntrack"], check=False, capture_output=True)
    names = module_btf_names()
    assert names, "the guest kernel exposes module BTF under /sys/kernel/btf"
    spec = load_module_btf(names[0])
    assert spec.base is not None and len(spec) > spec.start_id
    assert _kfunc_home("bpf_skb_ct_lookup"), "nf_conntrack is a module in the Debian kernels"
    test_kfunc_from_vmlinux_or_a_module(bpf_objects)
