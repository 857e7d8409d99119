"""Map kinds from user space: per-CPU, queue/stack, bloom filter, LRU, local storage,
map-in-map, freeze."""

from __future__ import annotations

import os
import socket

import pytest

import pybpf
from pybpf.consts import MapType, UpdateFlags
from pybpf.maps import Map, possible_cpus
from pybpf.spec import MapSpec

pytestmark = pytest.mark.kernel


@pytest.fixture
def coll(bpf_objects, pin_dir):
    with pybpf.load(bpf_objects["maps_kinds"], pin_root=pin_dir) as c:
        yield c


def test_percpu_values(coll):
    ncpu = possible_cpus()
    pc = coll.maps["pchash"]
    assert pc.percpu and pc.ncpu == ncpu
    assert pc.value_stride == 8 and pc.value_bytes == 8 * ncpu   # u32 slots rounded up to 8
    pc[1] = list(range(10, 10 + ncpu))
    pc[2] = 5                                                     # one value for every CPU
    assert pc[1] == list(range(10, 10 + ncpu)) and pc[2] == [5] * ncpu
    assert pc.lookup_sum(1) == sum(range(10, 10 + ncpu)) and pc.lookup_sum(2) == 5 * ncpu
    raw = pc.lookup_raw((1).to_bytes(4, "little"))
    assert [int.from_bytes(raw[i * 8:i * 8 + 4], "little") for i in range(ncpu)] == \
        list(range(10, 10 + ncpu))
    assert pc.dump() == {1: list(range(10, 10 + ncpu)), 2: [5] * ncpu}
    assert pc.dump(sum_cpus=True) == {1: sum(range(10, 10 + ncpu)), 2: 5 * ncpu}
    with pytest.raises(pybpf.BPFError, match=f"needs {ncpu} items"):
        pc[3] = [1] * (ncpu + 1)

    arr = coll.maps["pcarr"]
    arr[0] = [(i, 100 + i) for i in range(ncpu)]
    total = arr.lookup_sum(0)
    assert type(total).__name__ == "val"
    assert (total.a, total.b) == (sum(range(ncpu)), sum(100 + i for i in range(ncpu)))
    assert arr.dump(sum_cpus=True)[0] == total and arr.dump(sum_cpus=True)[1] == (0, 0)


def test_percpu_numpy(coll):
    pytest.importorskip("numpy")
    pc = coll.maps["pchash"]
    pc[7] = list(range(pc.ncpu))
    keys, values = pc.dump_numpy()
    assert keys.tolist() == [7] and values.shape == (1, pc.ncpu)
    assert values.sum(axis=1).tolist() == [sum(range(pc.ncpu))]


@pytest.mark.parametrize("kind", ["queue", "stack"])
def test_queue_and_stack(coll, kind):
    q = coll.maps[kind]
    for v in (1, 2, 3, 4):
        q.push(v)
    with pytest.raises(pybpf.SyscallError) as e:
        q.push(5)
    assert e.value.errno == 7                                    # E2BIG: full
    q.push(5, UpdateFlags.EXIST)                                 # overwrite the oldest
    fifo = kind == "queue"
    assert q.peek() == (2 if fifo else 5)
    assert [q.pop() for _ in range(4)] == ([2, 3, 4, 5] if fifo else [5, 4, 3, 2])
    assert q.pop(None) is None and q.peek(None) is None
    with pytest.raises(pybpf.KeyNotFoundError):
        q.pop()
    with pytest.raises(pybpf.NotSupportedError, match="no keys"):
        list(q.items())


def test_bloom_filter(coll):
    b = coll.maps["bloom"]
    assert b.map_extra == 3
    for v in (7, 8, 1000):
        b.push(v)
    assert 7 in b and 8 in b and 1000 in b
    assert 9 not in b and 1234 not in b and 0 not in b          # zero seed: deterministic
    with pytest.raises(pybpf.NotSupportedError):
        b.pop()


def test_lru_evicts(coll):
    lru = coll.maps["lru"]
    for k in range(32):
        lru[k] = k * 10
    present = lru.dump()
    assert 1 <= len(present) <= 4 and present[31] == 310
    assert all(v == k * 10 for k, v in present.items())


def test_task_cgroup_and_socket_storage(coll):
    pidfd = os.pidfd_open(os.getpid())
    try:
        t = coll.maps["tstore"]
        t[pidfd] = 42
        assert t[pidfd] == 42 and pidfd in t
        del t[pidfd]
        assert pidfd not in t
        with pytest.raises(pybpf.NotSupportedError, match="cannot be walked"):
            t.dump()
    finally:
        os.close(pidfd)

    with socket.socket() as s:
        sk = coll.maps["skstore"]
        sk[s.fileno()] = 7
        assert sk[s.fileno()] == 7

    cg2 = _cgroup2_root()
    fd = os.open(cg2, os.O_RDONLY | os.O_DIRECTORY)
    try:
        cs = coll.maps["cstore"]
        cs[fd] = 9
        assert cs[fd] == 9
        del cs[fd]
    finally:
        os.close(fd)


def _cgroup2_root() -> str:
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, path, fstype = line.split()[:3]
            if fstype == "cgroup2":
                return path
    pytest.fail("no cgroup2 mount")


def test_map_in_map(coll):
    outer, inner_a = coll.maps["outer"], coll.maps["inner_a"]
    assert outer.inner_id(0) == inner_a.info().id                 # slot filled from the ELF
    inner_a[0] = 5
    extra = outer.create_inner("extra")
    try:
        extra[0] = 77
        outer.set_inner(2, extra)
        assert outer.inner_id(2) == extra.info().id == outer[2]   # lookups give inner ids
        with outer.inner(2) as reopened:
            assert reopened.info().id == extra.info().id and reopened[0] == 77
        coll.programs["read_inner"].test_run()
        assert coll.maps["results"].dump() == {0: 5, 1: 2 ** 64 - 1, 2: 77, 3: 2 ** 64 - 1}
        del outer[2]
        coll.programs["read_inner"].test_run()
        assert coll.maps["results"][2] == 2 ** 64 - 1
        hm = coll.maps["outer_hash"]
        hm.set_inner(1234, extra)
        assert hm.inner_id(1234) == extra.info().id and hm.dump() == {1234: extra.info().id}
    finally:
        extra.close()
    with pytest.raises(pybpf.NotSupportedError):
        inner_a.set_inner(0, extra)


def test_standalone_map_in_map_creates_its_template():
    inner = MapSpec("in", MapType.ARRAY, 4, 4, 2)
    with Map.create(MapSpec("out", MapType.HASH_OF_MAPS, 4, 4, 2, inner_map=inner)) as out:
        with out.create_inner() as i:
            i[1] = 3
            out.set_inner(7, i)
            with out.inner(7) as back:
                assert back[1] == (3).to_bytes(4, "little")   # no BTF: bytes


def test_freeze():
    with Map.create(MapSpec("frozen", MapType.ARRAY, 4, 8, 2, flags=0x400)) as m:
        m[0] = b"\1" * 8
        m.freeze()
        with pytest.raises(pybpf.PermissionDeniedError):
            m[1] = b"\2" * 8
        assert m[0] == b"\1" * 8
        mem = m.memory()
        assert not mem.writable and mem.element(0).tobytes() == b"\1" * 8
        with pytest.raises(pybpf.BPFError, match="read-only"):
            mem[0] = b"\3" * 8
        with pytest.raises(pybpf.BPFError, match="read-only"):
            m.memory(writable=True)
