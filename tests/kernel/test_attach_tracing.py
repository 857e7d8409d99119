"""Tracing attach kinds, each triggered by the test: uprobes/uretprobes (a C program the test
builds, PIE and non-PIE, its shared library, and libc), USDT probes with arguments and
semaphores, perf_event sampling, iterators, kprobes (guests; a clear error here) and
trampolines -- fentry/fexit/fmod_ret/lsm/freplace (guests).

Programs: tests/progs/attach_tracing.bpf.c, attach_usdt.bpf.c, attach_freplace.bpf.c;
user-space targets: tests/progs/usdt/*.c, built with gcc by the ``targets`` fixture.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import pybpf
from pybpf.errors import BPFError, NotSupportedError
from pybpf.link import elfsym, iter as iter_link, kprobe, perf_event, tracing, uprobe, usdt
from tests.conftest import ROOT, fd_count

TARGET_SRC = ROOT / "tests" / "progs" / "usdt"
SDT_H = "sys/sdt.h"
N = 7   # calls each target makes


def _kernel_release():
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int(minor.split("-")[0])


# -- fixtures -------------------------------------------------------------------------------

def _gcc(*args: str) -> None:
    r = subprocess.run(["gcc", "-O2", *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"gcc {' '.join(args)} failed:\n{r.stderr}")


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> Dict[str, Path]:
    """The user-space targets: uprobe_target as PIE and non-PIE, its library, usdt_target."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the uprobe/USDT targets")
    d = tmp_path_factory.mktemp("targets")
    lib = d / "libpybpftarget.so"
    _gcc("-shared", "-fPIC", "-o", str(lib), str(TARGET_SRC / "libtarget.c"))
    out = {"lib": lib}
    for name, flags in (("pie", ["-fPIE", "-pie"]), ("nopie", ["-fno-PIE", "-no-pie"])):
        exe = d / f"uprobe_target_{name}"
        _gcc(*flags, "-o", str(exe), str(TARGET_SRC / "uprobe_target.c"), f"-L{d}",
             "-lpybpftarget", f"-Wl,-rpath,{d}")
        out[name] = exe
    try:
        _gcc("-o", str(d / "usdt_target"), str(TARGET_SRC / "usdt_target.c"))
        out["usdt"] = d / "usdt_target"
    except RuntimeError as e:
        if SDT_H not in str(e):
            raise
    return out


@pytest.fixture(scope="module")
def tracing_spec(bpf_objects):
    return pybpf.load_collection_spec(bpf_objects["attach_tracing"])


@pytest.fixture
def coll(tracing_spec) -> Iterator[pybpf.Collection]:
    with pybpf.load(tracing_spec) as c:
        yield c


class Child:
    """A target process that waits for one byte on stdin before doing its work."""

    def __init__(self, *argv: object):
        self.proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid

    def run(self) -> str:
        out, err = self.proc.communicate(b"x", timeout=10)
        assert self.proc.returncode == 0, err
        return out.decode()

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def _only(spec, *names):
    s = spec.copy()
    for p in s.programs.values():
        p.autoload = p.name in names
    return s


def _tracefs_pybpf_events() -> List[str]:
    root = "/sys/kernel/tracing" if os.path.exists("/sys/kernel/tracing/events") else "/sys/kernel/debug/tracing"
    out = []
    for f in ("uprobe_events", "kprobe_events"):
        try:
            out += [l for l in Path(root, f).read_text().splitlines() if f"pybpf_{os.getpid()}_" in l]
        except OSError:
            pass
    return out


# -- ELF symbols and binaries (no kernel) -------------------------------------------------------

def test_function_offsets_match_the_program_headers(targets):
    from elftools.elf.elffile import ELFFile
    for key in ("pie", "nopie", "lib"):
        func = "pybpf_lib_mul" if key == "lib" else "pybpf_target_add"
        with elfsym.ElfImage(str(targets[key])) as img:
            loc = img.find_function(func)
            assert img.is_pie_or_lib == (key != "nopie")
        with open(targets[key], "rb") as f:     # independent oracle: pyelftools
            elf = ELFFile(f)
            sym = elf.get_section_by_name(".symtab").get_symbol_by_name(func)[0]
            seg = next(s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"
                       and s["p_vaddr"] <= sym["st_value"] < s["p_vaddr"] + s["p_filesz"])
        assert loc.address == sym["st_value"]
        assert loc.offset == sym["st_value"] - seg["p_vaddr"] + seg["p_offset"]
    with elfsym.ElfImage(str(targets["nopie"])) as img:
        assert img.find_function("pybpf_target_add").address >= 0x400000   # non-PIE: absolute


def test_libc_symbols_versions_and_errors():
    libc = elfsym.resolve_binary("libc.so.6")
    with elfsym.ElfImage(libc) as img:
        plain = img.find_function("getppid")
        assert plain.offset == img.find_function("getppid@@GLIBC_2.2.5").offset
        assert img.find_function("memcpy").offset == img.find_function("memcpy@@GLIBC_2.14").offset
        assert img.find_function("memcpy@GLIBC_2.2.5").offset != img.find_function("memcpy").offset
        with pytest.raises(BPFError, match="no function 'pybpf_no_such_function'"):
            img.find_function("pybpf_no_such_function")
    with pytest.raises(pybpf.ParseError):
        elfsym.ElfImage("/proc/self/status")


def test_resolve_binary():
    libc = elfsym.resolve_binary("libc.so.6")
    mapped = {m.path for m in elfsym.proc_maps(os.getpid())}
    assert os.path.realpath(libc) in {os.path.realpath(p) for p in mapped}
    by_pid = elfsym.resolve_binary("libc.so.6", os.getpid())
    assert os.path.samefile(by_pid, libc) and by_pid in mapped
    assert "libc.so.6" in elfsym.ld_so_cache()
    assert os.path.samefile(elfsym.resolve_binary("sh"), shutil.which("sh"))
    with pytest.raises(BPFError, match="not found"):
        elfsym.resolve_binary("libpybpf-does-not-exist.so.1")


def test_uprobe_target_strings():
    assert uprobe.parse_uprobe_target("/usr/lib/libc.so.6:malloc") == ("/usr/lib/libc.so.6", "malloc", 0)
    assert uprobe.parse_uprobe_target("libc.so.6:malloc+0x10") == ("libc.so.6", "malloc", 16)
    assert uprobe.parse_uprobe_target("/bin/x:0x1234") == ("/bin/x", None, 0x1234)
    assert uprobe.parse_uprobe_target("/a:b/c:func@@V_1") == ("/a:b/c", "func@@V_1", 0)
    with pytest.raises(BPFError):
        uprobe.parse_uprobe_target("no-colon")


def test_usdt_notes_and_argument_specs(targets):
    if "usdt" not in targets:
        pytest.skip("sys/sdt.h missing: apt-get install systemtap-sdt-dev (tools/setup-env)")
    with elfsym.ElfImage(str(targets["usdt"])) as img:
        probes = {p.name: p for p in usdt.read_usdt_probes(img)}
    assert set(probes) == {"args", "guarded"}
    assert all(p.provider == "pybpf_test" and p.semaphore and p.semaphore_offset for p in probes.values())
    assert len(probes["args"].args.split()) == 6 and probes["args"].args.endswith("-4@$-7")
    A = usdt.UsdtArg
    assert usdt.parse_usdt_arg("-4@%eax") == A(usdt.ARG_REG, 0, 80, True, 32)
    assert usdt.parse_usdt_arg("8@16(%rsp)") == A(usdt.ARG_REG_DEREF, 16, 152, False, 0)
    assert usdt.parse_usdt_arg("-1@-9(%rbp)") == A(usdt.ARG_REG_DEREF, -9, 32, True, 56)
    assert usdt.parse_usdt_arg("2@(%r12)") == A(usdt.ARG_REG_DEREF, 0, 24, False, 48)
    assert usdt.parse_usdt_arg("-4@$-7") == A(usdt.ARG_CONST, -7, 0, True, 32)
    assert usdt.parse_usdt_arg("-8@[sp, 16]", usdt.EM_AARCH64) == A(usdt.ARG_REG_DEREF, 16, 248, True, 0)
    assert usdt.parse_usdt_arg("4@x3", usdt.EM_AARCH64) == A(usdt.ARG_REG, 0, 24, False, 32)
    with pytest.raises(NotSupportedError, match="indexed"):
        usdt.parse_usdt_arg("8@(%rdx,%rax,8)")
    with pytest.raises(BPFError, match="bad size"):
        usdt.parse_usdt_arg("3@%eax")
    packed = usdt.pack_usdt_spec([usdt.parse_usdt_arg("-4@$-7")], cookie=9)
    assert len(packed) == usdt.SPEC_SIZE == 208
    assert struct.unpack_from("=QihBb", packed) == (2 ** 64 - 7, usdt.ARG_CONST, 0, 1, 32)
    assert struct.unpack_from("=Qh", packed, 192) == (9, 1)


# -- uprobes ----------------------------------------------------------------------------------

@pytest.mark.kernel
@pytest.mark.parametrize("legacy", [None, True], ids=["pmu", "tracefs"])
@pytest.mark.parametrize("build", ["pie", "nopie"])
def test_uprobe_uretprobe_on_program_and_libc(coll, targets, build, legacy):
    exe = targets[build]
    v = coll.variables
    v["target_pid"].value = 0       # (the first variable access may map the data section)
    before = fd_count()
    with Child(exe, N) as child:
        v["target_pid"].value = child.pid
        links = [
            uprobe.attach_uprobe(coll.programs["on_entry"], str(exe), "pybpf_target_add",
                                 legacy=legacy),
            uprobe.attach_uprobe(coll.programs["on_return"], str(exe), "pybpf_target_add",
                                 retprobe=True, legacy=legacy),
            # SEC("uprobe/libc.so.6:getppid") auto-attach, restricted to the child
            coll.programs["count_getppid"].attach(pid=child.pid, legacy=legacy),
        ]
        if legacy:
            assert len(_tracefs_pybpf_events()) == 3
        try:
            assert links[2].kind == "uprobe" and "getppid" in links[2].target
            out = child.run()
        finally:
            for l in links:
                l.close()
    assert _tracefs_pybpf_events() == [] and fd_count() == before
    assert out.strip() == str(sum(i + 100 + 1 + 3 * i for i in range(N)))
    assert (v["calls"].value, v["returns"].value) == (N, N)
    assert (v["last_arg0"].value, v["last_arg1"].value, v["last_ret"].value) == (N - 1, 100, N + 99)
    assert dict(coll.maps["per_pid"].items()) == {child.pid: N}     # the pid filter held


@pytest.mark.kernel
def test_uprobe_cookie(tracing_spec, targets):
    if _kernel_release() < (5, 15):
        pytest.skip("BPF cookies (bpf_get_attach_cookie) need Linux 5.15")
    with pybpf.load(_only(tracing_spec, "on_entry_cookie")) as c, Child(targets["pie"], 1) as child:
        c.variables["target_pid"].value = child.pid
        with c.programs["on_entry_cookie"].attach(path=str(targets["pie"]),
                                                  func="pybpf_target_add", cookie=0xC00C1E):
            child.run()
        assert c.variables["cookie"].value == 0xC00C1E


@pytest.mark.kernel
def test_uprobe_on_shared_library_and_by_offset(coll, targets):
    v = coll.variables
    with elfsym.ElfImage(str(targets["lib"])) as img:
        mul = img.find_function("pybpf_lib_mul").offset
    with Child(targets["pie"], N) as child:
        v["target_pid"].value = child.pid
        with uprobe.attach_uprobe(coll.programs["on_entry"], str(targets["lib"]), None, mul,
                                  pid=child.pid), \
             coll.programs["on_return"].attach(path=str(targets["lib"]), func="pybpf_lib_mul"):
            child.run()
    assert (v["calls"].value, v["returns"].value) == (N, N)
    assert (v["last_arg0"].value, v["last_arg1"].value, v["last_ret"].value) == (N - 1, 3, 3 * (N - 1))


@pytest.mark.kernel
def test_uprobe_multi_pattern(tracing_spec, targets):
    if _kernel_release() < (6, 6):
        pytest.skip("uprobe.multi links need Linux 6.6")
    with pybpf.load(_only(tracing_spec, "on_multi")) as c, Child(targets["nopie"], N) as child:
        c.variables["target_pid"].value = child.pid
        with c.programs["on_multi"].attach(path=str(targets["nopie"]), pattern="pybpf_target_*",
                                           pid=child.pid) as link, \
             uprobe.attach_uprobe_multi(c.programs["on_multi"], str(targets["lib"]),
                                        funcs=["pybpf_lib_mul"], pid=child.pid):
            assert link.kind == "uprobe.multi" and link.info()["type"] == 12   # UPROBE_MULTI
            child.run()
        assert c.variables["calls"].value == 2 * N
        assert c.variables["last_arg0"].value == N - 1


@pytest.mark.kernel
def test_uprobe_errors_name_the_problem(coll, targets):
    prog = coll.programs["on_entry"]
    with pytest.raises(BPFError, match="no function 'nope'"):
        uprobe.attach_uprobe(prog, str(targets["pie"]), "nope")
    with pytest.raises(BPFError, match="no target in its section name"):
        prog.attach()
    with pytest.raises(BPFError, match="does not exist"):
        uprobe.attach_uprobe(prog, "/nonexistent/binary", "main")


# -- USDT -------------------------------------------------------------------------------------

def _kernel_has_bpf_cookie() -> bool:
    return _kernel_release() >= (5, 15)


@pytest.fixture(scope="module")
def usdt_spec(bpf_objects, targets):
    """attach_usdt.bpf.o, built with libbpf's usdt.bpf.h as is (its .kconfig extern
    LINUX_HAS_BPF_COOKIE and __hidden global functions are handled by the loader)."""
    if "usdt" not in targets:
        pytest.skip("sys/sdt.h missing: apt-get install systemtap-sdt-dev (tools/setup-env)")
    return pybpf.load_collection_spec(bpf_objects["attach_usdt"])


@pytest.mark.kernel
def test_usdt_arguments_and_semaphores(usdt_spec, targets):
    exe = str(targets["usdt"])
    before = fd_count()
    with pybpf.load(usdt_spec) as c, Child(exe, N) as child:
        v = c.variables
        v["target_pid"].value = child.pid
        with c.programs["on_args"].attach(path=exe, provider="pybpf_test", name="args",
                                          pid=child.pid, cookie=0xABC) as link:
            assert link.kind == "usdt" and len(link.links) == 1
            out = child.run()
        assert out.split() == ["1", "0"]       # only the attached probe's semaphore was raised
        assert v["args_hits"].value == N and v["guarded_hits"].value == 0
        assert v["args"].value == [-5, 65000, -123456 - (N - 1), (1 << 40) | (N - 1),
                                   v["args"].value[4], -7]
        assert v["args"].value[4] != 0 and v["msg"].value == "hello usdt"
        assert (v["arg_cnt"].value, v["cookie"].value) == (6, 0xABC)
    assert fd_count() == before


@pytest.mark.kernel
def test_usdt_semaphore_guarded_probe_and_section_target(usdt_spec, targets):
    exe = str(targets["usdt"])
    spec = usdt_spec.copy()
    spec.programs["on_guarded"].attach_to = f"{exe}:pybpf_test:guarded"   # as SEC("usdt/PATH:P:N")
    with pybpf.load(spec) as c, Child(exe, N) as child:
        c.variables["target_pid"].value = child.pid
        with c.programs["on_guarded"].attach(pid=child.pid), \
             usdt.attach_usdt(c.programs["on_args"], exe, "pybpf_test", "args", pid=child.pid):
            map_id = c.maps["__bpf_usdt_specs"].info().id
            assert usdt._SPEC_IDS._used[map_id] == {0, 1}
            out = child.run()
        assert out.split() == ["1", "1"]
        assert c.variables["guarded_hits"].value == N and c.variables["guarded_last"].value == N - 1
        assert usdt._SPEC_IDS._used[map_id] == set()      # released on close
        with pytest.raises(BPFError, match="no USDT probe pybpf_test:nope"):
            usdt.attach_usdt(c.programs["on_args"], exe, "pybpf_test", "nope")


# -- perf_event sampling ------------------------------------------------------------------------

def _spin_until(counter, want: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            pass
        n = counter()
        if n >= want:
            break
    return n


@pytest.mark.kernel
@pytest.mark.parametrize("rate", [{"freq": 1000}, {"period": 1_000_000}], ids=["freq", "period"])
def test_perf_event_sampling_counts_a_busy_loop(coll, rate):
    samples = lambda: coll.maps["per_pid"].lookup(os.getpid(), 0)   # noqa: E731
    before = fd_count()
    with coll.programs["on_sample"].attach(**rate) as group:
        assert isinstance(group, perf_event.LinkGroup)
        assert len(group.links) == len(perf_event.online_cpus())
        prog_id = coll.programs["on_sample"].info().id
        for l in group.links:      # BPF perf links from 5.15; the ioctl before
            assert l.is_bpf_link == (_kernel_release() >= (5, 15))
            assert not l.is_bpf_link or l.info()["prog_id"] == prog_id
        assert _spin_until(samples, 20) >= 20
    n = samples()
    time.sleep(0.02)
    assert samples() == n                        # detached: no more samples
    assert fd_count() == before


@pytest.mark.kernel
def test_perf_event_per_process_and_argument_errors(coll):
    prog = coll.programs["on_sample"]
    with pytest.raises(BPFError, match="freq"):
        prog.attach()
    with pytest.raises(BPFError, match="exactly one"):
        perf_event.attach_perf_event(prog, freq=10, period=10)
    with perf_event.attach_perf_event(prog, freq=1000, pid=os.getpid()) as group:
        assert len(group.links) == 1
        assert _spin_until(lambda: coll.maps["per_pid"].lookup(os.getpid(), 0), 10) >= 10


# -- iterators --------------------------------------------------------------------------------

@pytest.mark.kernel
def test_iter_task_lists_this_process(coll):
    before = fd_count()
    with coll.programs["dump_task"].attach() as link:
        assert isinstance(link, iter_link.IterLink) and link.info()["type"] == 4   # BPF_LINK_TYPE_ITER
        first = link.read_text().splitlines()
        with link.open() as f:                   # a fresh walk, streamed
            second = [l.decode() for l in f]
    assert first[0] == "tgid comm" and second[0] == "tgid comm\n"
    comm = Path("/proc/self/comm").read_text().strip()
    assert f"{os.getpid()} {comm}" in first
    assert len(first) > 3 and fd_count() == before


@pytest.mark.kernel
def test_iter_over_a_map(coll):
    m = coll.maps["per_pid"]
    for k in (1, 2, 3):
        m[k] = k * 10
    with iter_link.attach_iter(coll.programs["dump_per_pid"], map=m) as link:
        assert sorted(link.read().split()) == [b"1=10", b"2=20", b"3=30"]
    with pytest.raises(pybpf.SyscallError):       # a map iterator needs its map
        iter_link.attach_iter(coll.programs["dump_per_pid"])


# -- kprobes ----------------------------------------------------------------------------------

@pytest.mark.kernel
@pytest.mark.skipif(os.environ.get("PYBPF_VMTEST") == "1", reason="the guest kernels have kprobes")
def test_kprobes_refused_here_naming_config_kprobes(coll):
    if kprobe.kprobes_available():
        pytest.skip("this kernel has kprobes")
    for name, attach in (("kp_nanosleep", lambda p: p.attach()),
                         ("krp_nanosleep", lambda p: kprobe.attach_kprobe(p, "do_nanosleep", retprobe=True)),
                         ("ks_getppid", lambda p: p.attach())):
        with pytest.raises(NotSupportedError) as ei:
            attach(coll.programs[name])
        msg = str(ei.value)
        assert "CONFIG_KPROBES" in msg and "tools/vmtest" in msg, msg
    with pybpf.load(_only(coll.spec, "kpm_nanosleep")) as c:   # fprobe-based: its own option
        with pytest.raises(NotSupportedError, match="CONFIG_FPROBE"):
            c.programs["kpm_nanosleep"].attach()


def _nanosleeps(n: int) -> None:
    for _ in range(n):
        time.sleep(0.0005)


@pytest.mark.kernel
@pytest.mark.needs_kprobes
@pytest.mark.parametrize("legacy", [None, True], ids=["pmu", "tracefs"])
def test_kprobe_kretprobe_count_nanosleep(coll, legacy):
    v = coll.variables
    v["target_pid"].value = os.getpid()
    with kprobe.attach_kprobe(coll.programs["kp_nanosleep"], "do_nanosleep", legacy=legacy), \
         kprobe.attach_kprobe(coll.programs["krp_nanosleep"], "do_nanosleep", retprobe=True,
                              legacy=legacy):
        _nanosleeps(N)
    assert v["calls"].value >= N and v["returns"].value >= N and v["last_ret"].value == 0
    calls = v["calls"].value
    _nanosleeps(2)
    assert v["calls"].value == calls and _tracefs_pybpf_events() == []


@pytest.mark.kernel
@pytest.mark.needs_kprobes
def test_kprobe_auto_attach_and_ksyscall(coll):
    v = coll.variables
    v["target_pid"].value = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)
    with coll.programs["ks_getppid"].attach() as link:
        assert link.kind == "ksyscall" and "getppid" in link.target
        for _ in range(N):
            libc.syscall(110)    # getppid, bypassing any caching
    assert v["calls"].value >= N
    with coll.programs["kp_nanosleep"].attach() as link:
        assert link.target == "do_nanosleep"


@pytest.mark.kernel
@pytest.mark.needs_kprobes
def test_kprobe_multi(tracing_spec):
    try:
        c = pybpf.load(_only(tracing_spec, "kpm_nanosleep"))
    except BPFError as e:
        pytest.skip(f"kprobe.multi programs do not load here (5.18+): {e}")
    with c:
        c.variables["target_pid"].value = os.getpid()
        try:
            link = kprobe.attach_kprobe_multi(c.programs["kpm_nanosleep"], "do_nano*")
        except NotSupportedError as e:
            pytest.skip(str(e))
        with link:
            assert link.kind == "kprobe.multi" and link.info()["type"] == 8   # KPROBE_MULTI
            _nanosleeps(N)
        assert c.variables["calls"].value >= N


# -- trampolines (guests) ------------------------------------------------------------------------

@pytest.mark.kernel
@pytest.mark.needs_trampoline
def test_fentry_fexit_count_nanosleep(tracing_spec):
    with pybpf.load(_only(tracing_spec, "fentry_nanosleep", "fexit_nanosleep")) as c:
        c.variables["target_pid"].value = os.getpid()
        with c.programs["fentry_nanosleep"].attach() as l1, \
             tracing.attach_tracing(c.programs["fexit_nanosleep"]) as l2:
            assert (l1.kind, l2.kind, l1.target) == ("fentry", "fexit", "do_nanosleep")
            _nanosleeps(N)
        assert c.variables["calls"].value >= N and c.variables["returns"].value >= N
        assert c.variables["last_ret"].value == 0


def _marker(tmp_path: Path) -> Path:
    m = tmp_path / f"pybpf-marker-{os.getpid()}"
    m.write_text("marker\n")
    return m


@pytest.mark.kernel
@pytest.mark.needs_trampoline
def test_fmod_ret_makes_open_of_marker_fail(tracing_spec, tmp_path):
    marker, other = _marker(tmp_path), tmp_path / "other"
    other.write_text("x")
    with pybpf.load(_only(tracing_spec, "deny_marker_open")) as c:
        c.variables["marker"].value = marker.name.encode()
        with c.programs["deny_marker_open"].attach():
            with pytest.raises(PermissionError):
                open(marker).close()
            open(other).close()
        open(marker).close()                      # detached: allowed again
        assert c.variables["calls"].value >= 1


def _cgroup2_root() -> str:
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == "cgroup2":
                return parts[1]
    pytest.skip("no cgroup2 mount")


@pytest.mark.kernel
@pytest.mark.needs_trampoline
def test_lsm_denies_marker_open_in_test_cgroup_only(tracing_spec, tmp_path):
    lsms = Path("/sys/kernel/security/lsm")
    if lsms.exists() and "bpf" not in lsms.read_text().split(","):
        pytest.skip(f"the bpf LSM is not active ({lsms.read_text().strip()}); boot with lsm=...,bpf")
    marker = _marker(tmp_path)
    cg = Path(_cgroup2_root()) / f"pybpf-test-lsm-{os.getpid()}"
    cg.mkdir()
    try:
        def cat_in_cgroup() -> int:
            def join() -> None:
                (cg / "cgroup.procs").write_text("0")
            return subprocess.run(["cat", str(marker)], preexec_fn=join, capture_output=True).returncode

        with pybpf.load(_only(tracing_spec, "lsm_deny_in_cgroup")) as c:
            c.variables["marker"].value = marker.name.encode()
            c.variables["target_cgroup"].value = os.stat(cg).st_ino
            with c.programs["lsm_deny_in_cgroup"].attach() as link:
                assert link.kind == "lsm"
                assert cat_in_cgroup() != 0        # denied inside the cgroup
                open(marker).close()               # allowed outside it
            assert cat_in_cgroup() == 0            # allowed again after detach
            assert c.variables["calls"].value >= 1
    finally:
        for _ in range(100):       # the cgroup empties once its last process is reaped
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.01)


@pytest.mark.kernel
@pytest.mark.needs_trampoline
def test_sleepable_lsm_attach(tracing_spec, tmp_path):
    marker = _marker(tmp_path)
    try:
        c = pybpf.load(_only(tracing_spec, "lsm_s_count"))
    except pybpf.NotSupportedError as e:
        assert "sleepable" in str(e)
        pytest.skip(f"this kernel has no sleepable file_open LSM hook (5.11+): {e}")
    with c:
        c.variables["marker"].value = marker.name.encode()
        c.variables["target_pid"].value = os.getpid()
        with tracing.attach_lsm(c.programs["lsm_s_count"]):
            open(marker).close()
        assert c.variables["calls"].value == 1


def _load_extension(bpf_objects, target: "pybpf.Program") -> "pybpf.Collection":
    """drop_verdict loaded against ``target``'s pybpf_verdict (set_attach_target)."""
    spec = pybpf.load_collection_spec(bpf_objects["attach_freplace"])
    spec.programs["drop_verdict"].set_attach_target(target, "pybpf_verdict")
    return pybpf.load(spec)


@pytest.mark.kernel
@pytest.mark.needs_trampoline
def test_freplace_replaces_a_global_function(tracing_spec, bpf_objects):
    packet = bytes(64)
    with pybpf.load(_only(tracing_spec, "freplace_target")) as c:
        target = c.programs["freplace_target"]
        assert target.test_run(packet).retval == 2                     # XDP_PASS
        with _load_extension(bpf_objects, target) as ext_coll:
            ext = ext_coll.programs["drop_verdict"]
            with ext.attach() as link:
                assert link.kind == "freplace" and link.target == "pybpf_verdict"
                assert target.test_run(packet).retval == 1             # XDP_DROP
            assert target.test_run(packet).retval == 2
            with tracing.attach_freplace(ext, target, "pybpf_verdict"):  # explicit target
                assert target.test_run(packet).retval == 1
        assert target.test_run(packet).retval == 2


@pytest.mark.kernel
def test_freplace_target_btf_id(coll):
    btf_id = tracing.target_func_btf_id(coll.programs["freplace_target"], "pybpf_verdict")
    assert btf_id > 0
    with pytest.raises(BPFError, match="no function 'nope'"):
        tracing.target_func_btf_id(coll.programs["freplace_target"], "nope")


@pytest.mark.kernel
def test_freplace_without_target_is_explained(bpf_objects):
    with pytest.raises(BPFError, match="set_attach_target"):
        pybpf.load(bpf_objects["attach_freplace"])
