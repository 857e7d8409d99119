"""BPF_F_MMAPABLE arrays and global data as live memory."""

from __future__ import annotations

import os

import pytest

import pybpf
from pybpf.link.tracepoint import attach_raw_tracepoint
from pybpf.maps import Map, MapMemory
from pybpf.spec import MapSpec
from pybpf.consts import MapType
from tests.conftest import fd_count

pytestmark = pytest.mark.kernel


@pytest.fixture
def spec(bpf_objects):
    s = pybpf.load_collection_spec(bpf_objects["maps_kinds"])
    s.variables["target_tgid"].value = os.getpid()
    s.variables["step"].value = 3
    return s


def _var(coll, name):
    v = coll.spec.variables[name]
    return coll.maps[v.section].memory().value(v.offset, v.size, v.codec, name)


def test_global_data_changes_as_the_program_runs(spec, pin_dir):
    with pybpf.load(spec, pin_root=pin_dir) as coll:
        ticks = _var(coll, "ticks")
        assert ticks.memory.writable and ticks.value == 0
        with attach_raw_tracepoint(coll.programs["tick"], "sys_enter"):
            before = ticks.value
            for _ in range(10):
                os.getppid()
            after = ticks.value                       # no system call to read it
            assert after - before == 10
            ticks.value = 1000                        # user space writes, the program goes on
            os.getppid()
            assert ticks.value == 1001
        # the link's own close() was traced too; a map lookup sees the same memory
        assert coll.variables["ticks"].value == ticks.value >= 1001


def test_bss_data_and_rodata(spec, pin_dir):
    with pybpf.load(spec, pin_root=pin_dir) as coll:
        counter, pair, step = _var(coll, "counter"), _var(coll, "pair_var"), _var(coll, "step")
        assert pair.value == (1, 2) and step.value == 3
        for _ in range(4):
            coll.programs["bump"].test_run()
        assert counter.value == 12 and pair.value.a == 41 and _var(coll, "last_step").value == 3
        pair.value = {"a": 100, "b": 7}
        coll.programs["bump"].test_run()
        assert pair.value == (110, 7) and coll.variables["pair_var"].value == (110, 7)
        assert counter.raw == (15).to_bytes(8, "little")
        assert not step.memory.writable                  # .rodata is frozen: mapped read-only
        with pytest.raises(pybpf.BPFError, match="read-only"):
            step.value = 4


def test_mmapable_array(spec, pin_dir):
    with pybpf.load(spec, pin_root=pin_dir) as coll:
        a = coll.maps["marr"]
        mem = a.memory()
        assert len(mem) == 64 and mem.elem_size == 16 and mem.length == 64 * 16
        mem[3] = (5, 6)
        assert a[3] == (5, 6)                                      # kernel sees the write
        a[4] = (7, 8)
        assert mem[4] == (7, 8) and mem[-60] == (7, 8)             # we see the kernel's
        assert bytes(mem.element(4)) == (7).to_bytes(8, "little") + (8).to_bytes(8, "little")
        assert mem.values()[:5] == [(0, 0)] * 3 + [(5, 6), (7, 8)]
        with pytest.raises(IndexError):
            mem[64]
        assert a.memory() is mem                                   # one mapping per map


def test_mmapable_array_numpy(spec, pin_dir):
    np = pytest.importorskip("numpy")
    with pybpf.load(spec, pin_root=pin_dir) as coll:
        a = coll.maps["marr"]
        arr = a.memory().numpy()
        arr["a"][:] = np.arange(64)                                # vectorised write
        assert a[10] == (10, 0) and int(arr["a"].sum()) == sum(range(64))
        del arr


def test_memory_needs_mmapable_and_is_released():
    base = fd_count()
    with Map.create(MapSpec("plain", MapType.ARRAY, 4, 4, 4)) as m:
        with pytest.raises(pybpf.NotSupportedError, match="BPF_F_MMAPABLE"):
            m.memory()
    with Map.create(MapSpec("odd", MapType.ARRAY, 4, 12, 3, flags=0x400)) as m:
        mem = m.memory()
        assert isinstance(mem, MapMemory) and mem.elem_size == 16    # values 8-byte aligned
        mem.write(16, b"\1" * 12)
        assert m[1] == b"\1" * 12
        with pytest.raises(pybpf.BPFError, match="outside"):
            mem.read(40, 16)
    assert mem.closed and fd_count() == base
    with pytest.raises(pybpf.BPFError, match="closed"):
        mem[0]
