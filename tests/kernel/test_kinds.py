"""Every SEC() kind of tests/progs/kinds.bpf.c parses; the kinds this kernel supports load;
trampoline kinds give a NotSupportedError that says why (and load in the guest kernels)."""

from __future__ import annotations

import ctypes
import os

import pytest

import pybpf
from pybpf.progs.loader import TRAMPOLINE_KINDS

pytestmark = pytest.mark.kernel

TRAMPOLINE_PROGS = ["k_fentry", "k_fexit", "k_fmod_ret", "k_lsm", "k_lsm_s"]


@pytest.fixture(scope="module")
def kinds_spec(bpf_objects):
    return pybpf.load_collection_spec(bpf_objects["kinds"])


def _only(spec, name):
    s = spec.copy()
    for p in s.programs.values():
        p.autoload = p.name == name
    return s


def _host_programs(spec):
    return [n for n, p in spec.programs.items() if p.attach_kind not in TRAMPOLINE_KINDS]


def test_every_kind_parses(kinds_spec):
    assert len(kinds_spec.programs) == 40
    sections = {p.section for p in kinds_spec.programs.values()}
    assert "tp_btf/sched_switch" in sections and "?lsm.s/file_open" in sections
    assert kinds_spec.programs["k_lsm_s"].sleepable and not kinds_spec.programs["k_lsm"].autoload


def _load_or_unsupported(spec, name):
    """Load one program: on the development kernel every kind must load; on the older
    guest kernels a kind the kernel lacks must raise NotSupportedError saying so."""
    try:
        with pybpf.load(_only(spec, name)) as coll:
            info = coll.programs[name].info()
            assert info.name == name[:15] and info.type == spec.programs[name].prog_type
            return True
    except pybpf.NotSupportedError:
        if os.environ.get("PYBPF_VMTEST") != "1":
            raise
        return False


def test_supported_kinds_load(kinds_spec):
    names = _host_programs(kinds_spec)
    assert len(names) == 35
    loaded = [n for n in names if _load_or_unsupported(kinds_spec, n)]
    if os.environ.get("PYBPF_VMTEST") != "1":
        assert loaded == names


def test_all_host_kinds_load_together(kinds_spec):
    if os.environ.get("PYBPF_VMTEST") == "1":
        pytest.skip("older guest kernels lack some kinds; test_supported_kinds_load covers them")
    with pybpf.load(kinds_spec) as coll:   # '?' sections (trampolines) are not autoloaded
        assert set(coll.programs) == set(_host_programs(kinds_spec))
        assert coll.programs["k_syscall"].test_run().retval == 7


@pytest.mark.skipif(os.environ.get("PYBPF_VMTEST") == "1", reason="the guest kernels allow trampolines")
@pytest.mark.parametrize("name", TRAMPOLINE_PROGS)
def test_trampolines_refused_here_with_reason(kinds_spec, name):
    with pytest.raises(pybpf.NotSupportedError) as ei:
        pybpf.load(_only(kinds_spec, name))
    msg = str(ei.value)
    assert name in msg and "EPERM" in msg and "trampoline" in msg and "tools/vmtest" in msg


@pytest.mark.needs_trampoline
@pytest.mark.parametrize("name", TRAMPOLINE_PROGS)
def test_trampolines_load(kinds_spec, name):
    from pybpf.privileges import kernel_version
    if name == "k_lsm_s" and kernel_version() < (5, 11, 0):
        with pytest.raises(pybpf.BPFError):     # sleepable LSM arrived in 5.11
            pybpf.load(_only(kinds_spec, name))
        return
    with pybpf.load(_only(kinds_spec, name)) as coll:
        assert coll.programs[name].info().name == name[:15]


def test_tracepoint_and_raw_tp_attach_and_fire(kinds_spec):
    libc = ctypes.CDLL(None, use_errno=True)
    with pybpf.load(_only(kinds_spec, "k_tp")) as coll:
        link = coll.programs["k_tp"].attach()
        before = coll.variables["hits"].value
        for _ in range(10):
            libc.syscall(39)  # getpid, bypassing any libc caching
        assert coll.variables["hits"].value >= before + 10
        link.close()
        after = coll.variables["hits"].value
        libc.syscall(39)
        assert coll.variables["hits"].value == after
    with pybpf.load(_only(kinds_spec, "k_raw_tp")) as coll:
        links = coll.attach_all()
        assert len(links) == 1 and links[0].kind == "raw_tp"
        os.getppid()
        assert coll.variables["hits"].value > 0


def test_tp_btf_attach(kinds_spec):
    with pybpf.load(_only(kinds_spec, "k_tp_btf")) as coll:
        with coll.programs["k_tp_btf"].attach() as link:
            assert link.kind == "tp_btf"
