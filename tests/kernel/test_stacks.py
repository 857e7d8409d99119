"""Stack traces of a known user function and of the system call path, symbolised.

A small C program (built here with gcc, frame pointers on) calls getppid from
``stack_leaf <- stack_middle <- stack_outer <- main``; a raw_tp/sys_enter program
filtered on its pid records its user stack (plain and build-id) and kernel stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import pybpf
from pybpf.link.tracepoint import attach_raw_tracepoint
from pybpf.symbols import (
    ElfSymbols, FoldedStacks, Frame, KernelSymbols, StackTraces, Symbolizer, read_build_id,
    read_build_id_stack, read_stack, read_maps,
)

pytestmark = pytest.mark.kernel

TARGET_C = r"""
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

__attribute__((noinline)) long stack_leaf(void)
{
	long ret;
#if defined(__x86_64__)
	/* the system call instruction itself is in stack_leaf: no libc frame in between */
	__asm__ volatile ("syscall" : "=a"(ret) : "0"((long)SYS_getppid) : "rcx", "r11", "memory");
#else
	ret = syscall(SYS_getppid);
#endif
	return ret;
}

__attribute__((noinline)) long stack_middle(void)
{
	long r = stack_leaf();
	__asm__ volatile ("" ::: "memory");
	return r + 1;
}

__attribute__((noinline)) long stack_outer(void)
{
	long r = stack_middle();
	__asm__ volatile ("" ::: "memory");
	return r + 1;
}

int main(void)
{
	char c;

	printf("%d\n", (int)SYS_getppid);
	fflush(stdout);
	if (read(0, &c, 1) != 1)	/* go: the tracer is attached */
		return 1;
	stack_outer();
	printf("done\n");
	fflush(stdout);
	return read(0, &c, 1) == 1 ? 0 : 2;	/* stay alive until symbolised */
}
"""

VARIANTS = {
    "pie": ["-fPIE", "-pie"],                           # load bias, .symtab
    "nopie-stripped": ["-no-pie", "-rdynamic", "-s"],   # fixed address, .dynsym only
}
EXPECTED = ["stack_leaf", "stack_middle", "stack_outer", "main"]


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("gcc is needed to build the stack test program")
    d = tmp_path_factory.mktemp("stacks")
    src = d / "stack_target.c"
    src.write_text(TARGET_C)
    out = {}
    for name, flags in VARIANTS.items():
        exe = d / f"stack_target_{name.replace('-', '_')}"
        subprocess.run([gcc, "-g", "-O0", "-fno-omit-frame-pointer", "-fno-inline",
                        "-Wl,--build-id", *flags, "-o", str(exe), str(src)], check=True)
        out[name] = exe
    return out


def _run_traced(bpf_objects, exe: Path):
    """Run ``exe`` under the stack program; returns (collection, process, sample)."""
    proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        nr = int(proc.stdout.readline())
        spec = pybpf.load_collection_spec(bpf_objects["stack_trace"])
        spec.variables["target_tgid"].value = proc.pid
        spec.variables["target_syscall"].value = nr
        coll = pybpf.load(spec)
        try:
            with attach_raw_tracepoint(coll.programs["on_sys_enter"], "sys_enter"):
                proc.stdin.write(b"x")
                proc.stdin.flush()
                assert proc.stdout.readline() == b"done\n"
            assert coll.variables["n_samples"].value == 1
            sample = coll.maps["samples"][0]
        except BaseException:
            coll.close()
            raise
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return coll, proc, sample


def _finish(proc):
    proc.stdin.write(b"x")
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_user_and_kernel_stacks_symbolise(bpf_objects, targets, variant):
    exe = targets[variant]
    coll, proc, sample = _run_traced(bpf_objects, exe)
    try:
        assert sample.pid == proc.pid and sample.comm == exe.name[:15]
        assert sample.user_id >= 0 and sample.kernel_id >= 0
        sym = Symbolizer()
        stacks = StackTraces(coll.maps["stacks"], sym)
        user = stacks.user(sample.user_id, proc.pid)
        assert [f.symbol for f in user[:4]] == EXPECTED
        assert all(f.module == str(exe) for f in user[:4])
        assert user[0].build_id == read_build_id(exe)
        # libc called main (frames past main depend on libc's unwind info: not checked)
        kernel = StackTraces(coll.maps["kstacks"], sym).kernel(sample.kernel_id)
        names = [f.symbol for f in kernel]
        # innermost first: the BPF program itself (kallsyms lists it in [bpf]), the
        # tracepoint, the system call entry
        assert names[0].startswith("bpf_prog_") and names[0].endswith("_on_sys_enter")
        assert kernel[0].module == "[bpf]"
        assert "do_syscall_64" in names[1:]
        assert kernel[names.index("do_syscall_64")].module == "[kernel]"
        assert names[-1].startswith("entry_SYSCALL_64")

        folded = FoldedStacks()
        key = folded.add(sample.comm, user, kernel)
        assert key.startswith(f"{sample.comm};") and \
            ";main;stack_outer;stack_middle;stack_leaf;" in key and "do_syscall_64" in key
        assert key.index("stack_leaf") < key.index("do_syscall_64")   # user, then kernel
        assert folded.lines() == [f"{key} 1"]
    finally:
        _finish(proc)
        coll.close()


def test_build_id_stacks(bpf_objects, targets):
    exe = targets["pie"]
    coll, proc, sample = _run_traced(bpf_objects, exe)
    try:
        entries = read_build_id_stack(coll.maps["bid_stacks"], sample.build_id_id)
        bid = read_build_id(exe)
        assert bid is not None and len(bid) == 20
        assert [e[0] for e in entries[:4]] == [1, 1, 1, 1]          # BPF_STACK_BUILD_ID_VALID
        assert all(e[1] == bid for e in entries[:4])
        # file offsets: symbolise with no process at all (it could have exited)
        sym = Symbolizer()
        sym.elf(str(exe))                                           # known by its build id
        frames = sym.build_id(entries)
        assert [f.symbol for f in frames[:4]] == EXPECTED
        # and by searching the process's mappings for the build id
        assert [f.symbol for f in Symbolizer().build_id(entries, proc.pid)[:4]] == EXPECTED
        with pytest.raises(pybpf.BPFError, match="build-id"):
            read_stack(coll.maps["bid_stacks"], sample.build_id_id)
    finally:
        _finish(proc)
        coll.close()


def test_stack_id_errors_and_missing(bpf_objects):
    with pybpf.load(bpf_objects["stack_trace"]) as coll:
        assert read_stack(coll.maps["stacks"], 5) == []            # never recorded
        with pytest.raises(pybpf.BPFError, match="stack id -14"):
            read_stack(coll.maps["stacks"], -14)
        with pytest.raises(pybpf.NotSupportedError):
            read_stack(coll.maps["samples"], 0)
        assert coll.maps["stacks"].batch_supported is None
        assert coll.maps["stacks"].dump() == {}                    # per-key fallback: no batch ops
        assert coll.maps["stacks"].batch_supported is False


def test_kallsyms_and_elf_readers(targets):
    ks = KernelSymbols.load()
    addr = ks.address("do_syscall_64")
    assert addr and ks.lookup(addr) == ("do_syscall_64", 0, "")
    assert ks.lookup(addr + 4)[:2] == ("do_syscall_64", 4)

    pie = ElfSymbols.from_path(targets["pie"])
    stripped = ElfSymbols.from_path(targets["nopie-stripped"])
    assert pie.pie and not stripped.pie
    for elf in (pie, stripped):
        a = elf.address("stack_middle")
        assert a is not None and elf.lookup(a + 1) == ("stack_middle", 1)
        assert elf.lookup(elf.address("main")) == ("main", 0)
    assert stripped.address("stack_leaf") >= 0x400000          # linked at a fixed address
    with pytest.raises(pybpf.ParseError):
        ElfSymbols(str(targets["pie"]), b"\x7fELF\x02\x01" + bytes(10))

    maps = read_maps(os.getpid())
    assert any(m.path.endswith("python3") or "python" in m.path for m in maps if m.is_file)


def test_folded_format():
    f = FoldedStacks(annotate_kernel=True)
    f.add("app", user=[Frame(1, "leaf"), Frame(2, "main")], kernel=[Frame(3, "k;2"), Frame(4, "k1")])
    f.add("app", user=["leaf", "main"], kernel=["k;2", "k1"], count=4)
    f.add(None, user=[Frame(9, None, 0x10, "/usr/lib/libx.so")])
    assert f.lines() == ["[libx.so+0x10] 1", "app;main;leaf;k1_[k];k:2_[k] 5"]
