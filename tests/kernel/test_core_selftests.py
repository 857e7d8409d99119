"""Conformance: the kernel's own CO-RE selftests (Linux 6.1 prog_tests/core_reloc.c) run through pybpf.

Every case of the selftest's table that needs no kernel module is run the way
``run_core_reloc_tests()`` runs it, with pybpf in libbpf's place: load
``test_core_reloc_*.bpf.o`` with the case's ``btf__core_reloc_*.bpf.o`` as
target BTF (libbpf's ``btf_custom_path``; the running kernel's BTF when the
case names none), write the case's input bytes and our pid/tgid into
``.bss``'s ``struct data``, attach the raw tracepoint (or ``tp_btf``), make a
syscall, and compare ``data.out`` byte for byte with the expected output.
Cases marked ``.fails`` must fail to load, with a CO-RE cause.

The sources, objects and the case table (input/output bytes computed by gcc
from the selftest's own C initializers) come from
``tools/build_core_selftests.py``; ``test_core_reloc_btfgen`` repeats the
selftest of the same name: the target BTF is first minimised with
``bpftool gen min_core_btf``.  A line "CO-RE selftests: N/M passed" ends the
session.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import pybpf
from pybpf.btf import Kind
from pybpf.btf.types import Array, Composite, AnyEnum, FuncProto, Ptr
from pybpf.kbtf import load_kernel_btf
from tests.conftest import fd_count
from tools.build_core_selftests import DEFAULT_BUILD, BuildError, build, load_layouts, prepare

pytestmark = pytest.mark.kernel

OBJ = DEFAULT_BUILD / "obj"
COMM = b"test_progs"  # the selftest binary's name, which the "kernel" case reads from task->comm
_PR_SET_NAME, _PR_GET_NAME = 15, 16


# -- the case table --------------------------------------------------------------------------

def _have_bpf() -> bool:
    return os.geteuid() == 0 and os.path.exists("/sys/kernel/btf/vmlinux")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    try:
        # Extraction and the gcc-computed table are cached; the first run pulls
        # linux-source-6.1 with apt (root only: otherwise these tests are skipped anyway).
        cases = [c for c in prepare() if not c["needs_testmod"]] if _have_bpf() else []
    except BuildError:
        cases = []  # the core_objects fixture repeats the build and reports the error
    if not cases:
        metafunc.parametrize("case", [pytest.param(None, id="unavailable")])
        return
    metafunc.parametrize("case", [pytest.param(c, id=c["case_name"]) for c in cases])
    if "btfgen" in metafunc.function.__name__:
        _Summary.expected["btfgen"] = sum(bool(c["btf_src_file"]) and not c["run_btfgen_fails"]
                                          for c in cases)
    else:
        _Summary.expected["plain"] = len(cases)


@pytest.fixture(scope="session")
def core_objects() -> Path:
    """Every object the table names, compiled (clang-19) into tests/core_selftests/build/obj."""
    build()
    return OBJ


class _Summary:
    """A pytest plugin counting this module's outcomes and printing them at the end."""

    expected: Dict[str, int] = {}

    def __init__(self) -> None:
        self.passed: Dict[str, List[str]] = {"plain": [], "btfgen": []}
        self.failed: Dict[str, List[str]] = {"plain": [], "btfgen": []}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "test_core_selftests.py::" not in report.nodeid or "[" not in report.nodeid:
            return
        variant = "btfgen" if "test_core_reloc_btfgen" in report.nodeid else "plain"
        name = report.nodeid.split("[", 1)[1][:-1]
        if report.when == "call" and report.passed:
            self.passed[variant].append(name)
        elif report.failed:
            self.failed[variant].append(name)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for variant, label in (("plain", "CO-RE selftests"), ("btfgen", "CO-RE selftests (btfgen)")):
            total = self.expected.get(variant)
            if not total or not (self.passed[variant] or self.failed[variant]):
                continue
            line = f"{label}: {len(self.passed[variant])}/{total} passed"
            if self.failed[variant]:
                line += " (failed: " + ", ".join(self.failed[variant]) + ")"
            terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def _summary(request: pytest.FixtureRequest) -> None:
    pm = request.config.pluginmanager
    if not pm.has_plugin("pybpf-core-selftests"):
        pm.register(_Summary(), "pybpf-core-selftests")


# -- running one case ------------------------------------------------------------------------

def _type_id_expected(case: Dict, output: bytes, target: Optional[Path]) -> bytes:
    """What the selftest's setup_type_id_case_{success,failure}() write into the expected output.

    Local ids are those of the program object's own BTF; target ids those of
    the target BTF (the ``failure`` setup expects 0 for every target id).
    """
    layout = load_layouts()["core_reloc_type_id_output"]["fields"]
    local = load_kernel_btf(OBJ / case["bpf_obj_file"])
    exp: Dict[str, int] = {f: -1 for f in ("local_anon_struct", "local_anon_union", "local_anon_enum",
                                            "local_anon_func_proto_ptr", "local_anon_void_ptr",
                                            "local_anon_arr")}
    for tid, t in local.types():
        if t.name:
            continue
        if isinstance(t, Composite) and t.members and t.members[0].name == "marker_field":
            exp["local_anon_struct" if t.kind == Kind.STRUCT else "local_anon_union"] = tid
        elif t.kind == Kind.ENUM and isinstance(t, AnyEnum) and t.values \
                and t.values[0].name == "MARKER_ENUM_VAL":
            exp["local_anon_enum"] = tid
        elif isinstance(t, Ptr):
            pointee = local.type(t.type)
            if isinstance(pointee, FuncProto):
                ret = local.type(pointee.return_type)
                if ret.kind == Kind.INT and ret.name == "_Bool":
                    exp["local_anon_func_proto_ptr"] = tid
            elif pointee.kind == Kind.UNKN:
                exp["local_anon_void_ptr"] = tid
        elif isinstance(t, Array):
            elem = local.type(t.type)
            if elem.kind == Kind.INT and elem.name == "_Bool":
                exp["local_anon_arr"] = tid
    named = {"struct": ("a_struct", Kind.STRUCT), "union": ("a_union", Kind.UNION),
             "enum": ("an_enum", Kind.ENUM), "int": ("int", Kind.INT),
             "struct_typedef": ("named_struct_typedef", Kind.TYPEDEF),
             "func_proto_typedef": ("func_proto_typedef", Kind.TYPEDEF),
             "arr_typedef": ("arr_typedef", Kind.TYPEDEF)}
    targ = load_kernel_btf(target) if case["setup"] == "setup_type_id_case_success" else None
    for field, (name, kind) in named.items():
        exp[f"local_{field}"] = local.find_one(name, kind)
        exp[f"targ_{field}"] = targ.find_one(name, kind) if targ is not None else 0
    out = bytearray(output)
    for field, value in exp.items():
        off, size = layout[field]
        out[off:off + size] = value.to_bytes(size, "little", signed=True)
    return bytes(out)


@contextlib.contextmanager
def _comm(name: bytes) -> Iterator[None]:
    """Run with this thread's (the group leader's) comm set to ``name``, as in test_progs."""
    libc = ctypes.CDLL(None, use_errno=True)
    old = ctypes.create_string_buffer(16)
    libc.prctl(_PR_GET_NAME, old, 0, 0, 0)
    libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(_PR_SET_NAME, old, 0, 0, 0)


def _spec(case: Dict) -> pybpf.CollectionSpec:
    # The test reads and writes .bss raw, as the selftest mmaps it.
    return pybpf.load_collection_spec(OBJ / case["bpf_obj_file"])


def _is_core_failure(e: BaseException) -> bool:
    """A load failure caused by CO-RE: pybpf refused a relocation, or the verifier hit a
    poisoned instruction (libbpf's behaviour for an unresolvable field access)."""
    return isinstance(e, pybpf.CORERelocationError) or (
        isinstance(e, pybpf.VerifierError) and "poisoned by CO-RE" in str(e))


def _diff(expected: bytes, got: bytes) -> str:
    rows = [f"output byte #{j}: EXP 0x{e:02x} GOT 0x{g:02x}"
            for j, (e, g) in enumerate(zip(expected, got)) if e != g]
    return "input/output data don't match:\n" + "\n".join(rows[:40])


def _run_case(case: Dict, target: Optional[Path]) -> None:
    spec = _spec(case)
    fds = fd_count()
    if case["fails"]:
        with pytest.raises(pybpf.BPFError) as ei:
            pybpf.load(spec, kernel_btf=target).close()
        assert _is_core_failure(ei.value), f"failed, but not because of CO-RE: {ei.value}"
        assert fd_count() == fds, "a failed load left fds open"
        return
    expected = bytes.fromhex(case["output"])
    if case["setup"] in ("setup_type_id_case_success", "setup_type_id_case_failure"):
        expected = _type_id_expected(case, expected, target)
    elif case["setup"] is not None:
        pytest.fail(f"unknown setup helper {case['setup']} in core_reloc.c")
    data = load_layouts()["data"]["fields"]
    assert threading.current_thread() is threading.main_thread()
    my_pid_tgid = os.getpid() | (threading.get_native_id() << 32)  # as core_reloc.c computes it
    with pybpf.load(spec, kernel_btf=target) as coll:
        bss = coll.maps[".bss"]
        buf = bytearray(bss.value_size)
        inp = bytes.fromhex(case["input"])
        buf[:len(inp)] = inp
        off, size = data["my_pid_tgid"]
        if off + size <= len(buf):  # objects whose `data` ends at `out` do not check the pid
            buf[off:off + size] = my_pid_tgid.to_bytes(size, "little")
        bss.update_raw(b"\0\0\0\0", bytes(buf))
        prog = coll.programs[case["prog_name"]]
        with _comm(COMM):
            link = prog.attach(case["raw_tp_name"]) if case["raw_tp_name"] else prog.attach()
            try:
                time.sleep(1e-6)  # usleep(1): a syscall that fires sys_enter in this thread
            finally:
                link.close()
        value = bss.lookup_raw(b"\0\0\0\0")
    assert fd_count() == fds, "closing the collection left fds open"
    off, size = data["skip"]
    if len(value) >= off + size and any(value[off:off + size]):
        pytest.skip("the program set data.skip (built without BPF_TYPE_MATCHES support)")
    off = data["out"][0]
    got = value[off:off + len(expected)]
    assert got == expected, _diff(expected, got)


def test_core_reloc(case: Dict, core_objects: Path) -> None:
    """One case of prog_tests/core_reloc.c's test_core_reloc()."""
    if case is None:
        pytest.skip("the case table could not be built here")
    _run_case(case, core_objects / case["btf_src_file"] if case["btf_src_file"] else None)


def test_core_reloc_btfgen(case: Dict, core_objects: Path, tmp_path: Path) -> None:
    """One case of test_core_reloc_btfgen(): the target BTF minimised by bpftool first."""
    if case is None:
        pytest.skip("the case table could not be built here")
    if not case["btf_src_file"] or case["run_btfgen_fails"]:
        pytest.skip("test_core_reloc_btfgen skips this case (no target file, or run_btfgen_fails)")
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        pytest.skip("bpftool (gen min_core_btf) is not installed")
    minimal = tmp_path / "core_reloc.btf"
    r = subprocess.run([bpftool, "gen", "min_core_btf", str(core_objects / case["btf_src_file"]),
                        str(minimal), str(core_objects / case["bpf_obj_file"])],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"bpftool gen min_core_btf failed: {r.stderr}"
    _run_case(case, minimal)
