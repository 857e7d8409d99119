"""Map element operations on the prepared element block: values, errors, threads, close.

The single-element methods (``m[k]``, ``lookup``, ``lookup_raw``, ``update``,
``delete``, ``in``) go through one prepared ``pybpf.sys.ElemBlock`` per map and
fall back to the pooled ``pybpf.sys`` functions when another thread holds it.
"""

from __future__ import annotations

import threading

import pytest

import pybpf
from pybpf.btf import Spec
from pybpf.btf.codec import CodecError
from pybpf.btf.marshal import marshal
from pybpf.btf.types import Int, IntEncoding, Member, Struct
from pybpf.consts import MapType, UpdateFlags
from pybpf.maps import Map
from pybpf.spec import MapSpec

pytestmark = pytest.mark.kernel


def _typed_hash(max_entries: int = 256) -> Map:
    btf = Spec.parse(marshal([Int("unsigned long long", 8, IntEncoding.NONE, 0, 64),
                              Struct("val", 16, (Member("a", 1, 0), Member("b", 1, 64)))]))
    return Map.create(MapSpec("typed", MapType.HASH, 8, 16, max_entries, btf=btf,
                              key_type_id=1, value_type_id=2))


def test_typed_element_round_trip_and_misses():
    with _typed_hash() as m:
        m[1] = (10, 11)
        m.update(2, {"a": 20}, UpdateFlags.NOEXIST)
        assert m[1] == (10, 11) and m[1].b == 11 and m[2] == (20, 0)
        assert m.lookup_raw((1).to_bytes(8, "little")) == \
            (10).to_bytes(8, "little") + (11).to_bytes(8, "little")
        assert 1 in m and 3 not in m
        assert m.get(3, "absent") == "absent"
        with pytest.raises(pybpf.KeyNotFoundError) as ei:
            m[3]
        assert "map typed" in str(ei.value) and "BPF_MAP_LOOKUP_ELEM" in str(ei.value)
        with pytest.raises(pybpf.KeyExistsError):
            m.update(1, (0, 0), UpdateFlags.NOEXIST)
        m.update(1, (12, 13), UpdateFlags.EXIST)
        assert m[1] == (12, 13)
        del m[1]
        with pytest.raises(pybpf.KeyNotFoundError) as ei:
            del m[1]
        assert "BPF_MAP_DELETE_ELEM" in str(ei.value)
        # The largest key takes the packed fast path; out-of-range ints get the codec's error.
        m[(1 << 64) - 1] = (1, 1)
        assert m[(1 << 64) - 1] == (1, 1)
        with pytest.raises(CodecError):
            m[1 << 64] = (1, 1)
        with pytest.raises(CodecError):
            m[-1]


def test_raw_methods_check_sizes():
    with Map.create(MapSpec("raw", MapType.HASH, 4, 8, 16)) as m:
        m.update_raw(b"\1\0\0\0", b"\2" * 8)
        assert m.lookup_raw(bytearray(b"\1\0\0\0")) == b"\2" * 8
        assert m.lookup_raw(memoryview(b"\1\0\0\0")) == b"\2" * 8
        with pytest.raises(CodecError, match="key must be 4 bytes, got 3"):
            m.lookup_raw(b"\1\0\0")
        with pytest.raises(CodecError, match="value must be 8 bytes, got 9"):
            m.update_raw(b"\1\0\0\0", b"\2" * 9)
        with pytest.raises(CodecError, match="bytes-like"):
            m.lookup_raw(1.5)
        out = bytearray(8)
        m.lookup_into(b"\1\0\0\0", out)
        assert out == b"\2" * 8
        m.delete_raw(b"\1\0\0\0")
        with pytest.raises(pybpf.KeyNotFoundError):
            m.lookup_raw(b"\1\0\0\0")


def test_percpu_values_through_the_block():
    with Map.create(MapSpec("pc", MapType.PERCPU_HASH, 4, 4, 8)) as m:
        m.update(7, [i.to_bytes(4, "little") for i in range(m.ncpu)])
        assert m[7] == [i.to_bytes(4, "little") for i in range(m.ncpu)]
        assert len(m.lookup_raw((7).to_bytes(4, "little"))) == 8 * m.ncpu


def _typed_array(max_entries: int) -> Map:
    btf = Spec.parse(marshal([Int("unsigned int", 4, IntEncoding.NONE, 0, 32),
                              Int("unsigned long long", 8, IntEncoding.NONE, 0, 64),
                              Struct("val", 16, (Member("a", 2, 0), Member("b", 2, 64)))]))
    return Map.create(MapSpec("typed_arr", MapType.ARRAY, 4, 16, max_entries, btf=btf,
                              key_type_id=1, value_type_id=3))


def test_threads_share_a_map():
    """Writers and readers in several threads: every read sees a value some writer wrote
    for that key (a = key, b = key * 3 + round), never another key's bytes.

    An array, not a hash: the kernel's hash maps hand a replaced element back for reuse
    at once, so a lookup racing updates can copy another key's value (a C loop of raw
    bpf(2) calls shows it too, with and without BPF_F_NO_PREALLOC).  An array's slots
    are fixed, so another key's bytes could only come from pybpf's own buffers."""
    with _typed_array(1024) as m:
        for k in range(64):
            m[k] = (k, k * 3)
        errors = []

        def writer(rnd: int) -> None:
            for _ in range(200):
                for k in range(64):
                    m[k] = (k, k * 3 + rnd)

        def reader() -> None:
            for _ in range(300):
                for k in range(64):
                    v = m[k]
                    if v.a != k or not 0 <= v.b - 3 * k <= 4:
                        errors.append((k, v))
                    if m.lookup_raw(k.to_bytes(4, "little"))[:8] != k.to_bytes(8, "little"):
                        errors.append((k, "raw"))

        threads = [threading.Thread(target=writer, args=(r,)) for r in range(4)]
        threads += [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


def test_closed_map_refuses_element_calls():
    m = _typed_hash()
    m[1] = (1, 2)
    m.close()
    for op in (lambda: m[1], lambda: m.lookup_raw(bytes(8)), lambda: m.update(1, (0, 0)),
               lambda: m.delete(1), lambda: 1 in m, m.dump, lambda: m.fd):
        with pytest.raises(pybpf.SyscallError, match=f"map {m.name} was closed"):
            op()
    m.close()   # idempotent


def test_sockmap_fd_values_are_value_size_wide():
    import socket
    with Map.create(MapSpec("sm8", MapType.SOCKMAP, 4, 8, 2)) as m:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            m[0] = a.fileno()       # an 8-byte value: the kernel reads a u64 fd
            assert m.lookup_raw((0).to_bytes(4, "little")) is not None
            del m[0]
        finally:
            a.close()
            b.close()
