"""Batch map operations: equal to per-key iteration, resumable cursors, automatic sizing,
and the per-key fallback for maps (or kernels) without batch commands."""

from __future__ import annotations

import pytest

import pybpf
from pybpf.consts import Cmd, MapType
from pybpf.maps import BatchCursor, Map
from pybpf.spec import MapSpec

pytestmark = pytest.mark.kernel

U64 = 2 ** 64 - 1


def _per_key(m: Map) -> dict:
    """The reference: BPF_MAP_GET_NEXT_KEY + LOOKUP_ELEM, decoded."""
    return {m.key_codec.decode(k): m._decode_value(m.lookup_raw(k)) for k in m.keys_raw()}


@pytest.fixture
def coll(bpf_objects, pin_dir):
    with pybpf.load(bpf_objects["maps_kinds"], pin_root=pin_dir) as c:
        yield c


def _fill(m: Map, n: int) -> dict:
    want = {i * 2654435761 + 1: (i, ~i & U64) for i in range(n)}
    assert m.update_batch(want) == n
    return want


def test_batch_dump_equals_per_key_iteration(coll):
    h = coll.maps["hmap"]
    want = _fill(h, 3000)
    assert h.batch_supported is None          # not tried yet
    got = h.dump()
    assert h.batch_supported is True
    assert got == _per_key(h) == {k: h.value_codec.decode(h.value_codec.encode(v))
                                  for k, v in want.items()}
    assert all(type(v).__name__ == "val" and v.a == (k - 1) // 2654435761 for k, v in got.items())
    keys, values, n = h.dump_raw()
    assert n == 3000 and len(keys) == 3000 * 8 and len(values) == 3000 * 16
    assert dict(h.items()) == got and sorted(h.keys()) == sorted(want) and len(h) == 3000
    ks, vs = h.dump_lists()
    assert dict(zip(ks, vs)) == got and len(ks) == 3000


def test_resumable_cursor_in_small_batches(coll):
    h = coll.maps["hmap"]
    want = _fill(h, 1000)
    cur = BatchCursor()
    chunks = []
    while not cur.done:
        chunk = h.lookup_batch(cur, 64)
        assert len(chunk) <= 64
        chunks.append(chunk)
    got = [kv for c in chunks for kv in c]
    assert len(got) == 1000 and {k for k, _ in got} == set(want)
    assert len(chunks) >= 1000 // 64
    assert h.lookup_batch(cur, 64) == []          # a finished cursor stays finished


def test_lookup_batch_into_caller_buffers(coll):
    h = coll.maps["hmap"]
    _fill(h, 500)
    keys, values = bytearray(600 * 8), bytearray(600 * 16)
    cur = BatchCursor()
    n = h.lookup_batch_into(cur, keys, values, 600)
    assert n == 500 and cur.done
    got = dict(zip(h.key_codec.decode_many(keys, n), h.value_codec.decode_many(values, n)))
    assert got == _per_key(h)
    for bad, what in ((bytes(600 * 8), "read-only"), (None, "bytes-like")):
        with pytest.raises(pybpf.BPFError, match=what):   # checked before any call
            h.lookup_batch_into(BatchCursor(), bad, values, 600)


def test_batch_too_small_for_a_bucket_is_reported(coll):
    h = coll.maps["hmap"]
    _fill(h, 4000)                 # 4000 entries in 4096 buckets: some hold several
    with pytest.raises(pybpf.BPFError, match="bigger batch"):
        cur = BatchCursor()
        while not cur.done:
            h.lookup_batch(cur, 1)
    assert len(h.dump()) == 4000   # automatic sizing grows past full buckets


def test_drain_and_delete_batch(coll):
    h = coll.maps["hmap"]
    want = _fill(h, 2000)
    doomed = list(want)[:500]
    assert h.delete_batch(doomed) == 500
    assert set(h.dump()) == set(want) - set(doomed)
    with pytest.raises(pybpf.KeyNotFoundError):
        h.delete_batch(doomed[:1])
    drained = h.drain()
    assert set(drained) == set(want) - set(doomed)
    assert h.dump() == {} and _per_key(h) == {}


def test_fallback_matches_batch(coll):
    """Forcing the per-key fallback on the same map gives the same results."""
    h = coll.maps["hmap"]
    want = _fill(h, 1500)
    batched = h.dump()
    h._batch_ok.update({Cmd.MAP_LOOKUP_BATCH: False, Cmd.MAP_LOOKUP_AND_DELETE_BATCH: False,
                        Cmd.MAP_UPDATE_BATCH: False, Cmd.MAP_DELETE_BATCH: False})
    assert h.dump() == batched
    cur, got = BatchCursor(), []
    while not cur.done:
        got += h.lookup_batch(cur, 100)
    assert dict(got) == batched and len(got) == 1500
    assert h.delete_batch(list(want)[:100]) == 100
    assert h.update_batch({1: (7, 8)}) == 1 and h[1] == (7, 8)
    assert len(h.drain()) == 1401 and len(h) == 0


def test_walk_lookup_writes_into_the_callers_buffers_and_resumes(coll):
    """pybpf.sys.map_walk_lookup (the fallback's engine): next key and value land in the
    caller's buffers, a walk resumes after the key it returns, the end is reported, and
    per-CPU values come whole (every CPU's slot)."""
    from pybpf import sys as bsys
    h = coll.maps["hmap"]
    want = _fill(h, 50)
    kb, vb = bytearray(8 * 7), bytearray(16 * 7)
    got, last, done, calls = {}, None, False, 0
    while not done:
        n, last, done = bsys.map_walk_lookup(h.fd, last, kb, vb, 7, 8, 16, context="map hmap")
        calls += 1
        got.update(zip(h.key_codec.decode_many(kb, n), h.value_codec.decode_many(vb, n)))
    assert got == want and calls == 8          # 7 full walks + one that finds 1 and the end
    assert bsys.map_walk_lookup(h.fd, None, kb, vb, 0, 8, 16) == (0, None, False)
    with pytest.raises(ValueError, match="too small"):
        bsys.map_walk_lookup(h.fd, None, kb, vb, 8, 8, 16)
    pc = coll.maps["pchash"]
    pc.update(3, [i + 1 for i in range(pc.ncpu)])
    kb, vb = bytearray(pc.key_size * 4), bytearray(pc.value_bytes * 4)
    n, last, done = bsys.map_walk_lookup(pc.fd, None, kb, vb, 4, pc.key_size, pc.value_bytes)
    assert (n, done) == (1, True) and last == kb[:pc.key_size]
    assert pc._decode_value(vb[:pc.value_bytes]) == pc[3]


def test_map_without_batch_support_falls_back_once():
    """Stack trace maps have no batch commands: detected once (ENOTSUPP), then per key."""
    with Map.create(MapSpec("nobatch", MapType.DEVMAP_HASH, 4, 4, 8)) as m:
        m[5] = 1          # ifindex 1: loopback
        m[9] = 1
        assert m.dump() == {(5).to_bytes(4, "little"): (1).to_bytes(4, "little"),
                            (9).to_bytes(4, "little"): (1).to_bytes(4, "little")}
        assert m.batch_supported is False
        assert sorted(k for k, _ in m.items_raw()) == [(5).to_bytes(4, "little"),
                                                       (9).to_bytes(4, "little")]


def test_array_batch(coll):
    a = coll.maps["marr"]
    assert a.update_batch({i: (i, 2 * i) for i in range(64)}) == 64
    got = a.dump()
    assert got == {i: (i, 2 * i) for i in range(64)} == _per_key(a)
    with pytest.raises(pybpf.SyscallError):
        a.drain()                  # array elements cannot be deleted


def test_numpy_dump(coll):
    np = pytest.importorskip("numpy")
    h = coll.maps["hmap"]
    want = _fill(h, 1000)
    keys, values = h.dump_numpy()
    assert keys.dtype == np.dtype("<u8") and values.dtype.names == ("a", "b")
    got = dict(zip(keys.tolist(), zip(values["a"].tolist(), values["b"].tolist())))
    assert got == want


def test_lpm_trie(coll):
    lpm = coll.maps["lpm"]
    lpm["10.0.0.0/8"] = 1
    lpm["10.1.0.0/16"] = 2
    assert lpm["10.1.2.3"] == 2 and lpm["10.2.0.1"] == 1 and lpm.get("11.0.0.0", None) is None
    assert lpm[(16, b"\x0a\x01\x07\x07")] == 2
    keys = {(k.prefixlen, k.addr): v for k, v in lpm.dump().items()}
    assert keys == {(8, b"\x0a\0\0\0"): 1, (16, b"\x0a\x01\0\0"): 2}
    del lpm["10.0.0.0/8"]
    assert lpm.get("10.2.0.1", None) is None
    with pytest.raises(pybpf.BPFError, match="prefix length"):
        lpm[(40, b"\x0a")] = 3


def _big_typed_hash(n: int) -> Map:
    from pybpf.btf import Spec
    from pybpf.btf.marshal import marshal
    from pybpf.btf.types import Int, IntEncoding, Member, Struct
    btf = Spec.parse(marshal([Int("unsigned long long", 8, IntEncoding.NONE, 0, 64),
                              Struct("val", 16, (Member("a", 1, 0), Member("b", 1, 64)))]))
    return Map.create(MapSpec("big", MapType.HASH, 8, 16, n, btf=btf, key_type_id=1,
                              value_type_id=2))


@pytest.fixture
def small_chunks(monkeypatch):
    """Read-ahead chunks of 256 entries (the minimum), so a 20k-entry map takes ~80."""
    import pybpf.maps.batch as batch
    monkeypatch.setattr(batch, "_CHUNK_BYTES", 256 * 24)


def test_read_ahead_dump_equals_per_key(small_chunks):
    with _big_typed_hash(20000) as h:
        want = _fill(h, 20000)
        seen = []
        import pybpf.maps.batch as batch
        total = batch.read_ahead(h, lambda kb, vb, n: seen.append((bytes(kb), bytes(vb), n)))
        assert total == 20000 and len(seen) > 40 and sum(n for *_, n in seen) == 20000
        assert all(len(kb) == n * 8 and len(vb) == n * 16 for kb, vb, n in seen)
        got = h.dump()
        assert got == _per_key(h) and set(got) == set(want)
        assert all(v == (want[k][0], want[k][1]) for k, v in got.items())
        ks, vs = h.dump_lists()
        assert dict(zip(ks, vs)) == got and len(ks) == 20000
        assert not [t for t in __import__("threading").enumerate()
                    if t.name.startswith("pybpf-read-")]


def test_read_ahead_drain_and_consumer_error(small_chunks):
    import threading
    import pybpf.maps.batch as batch
    with _big_typed_hash(20000) as h:
        want = _fill(h, 20000)
        calls = []

        def boom(kb, vb, n):
            calls.append(n)
            if len(calls) == 3:
                raise RuntimeError("consumer failed")

        with pytest.raises(RuntimeError, match="consumer failed"):
            batch.read_ahead(h, boom)
        assert len(calls) == 3
        assert not [t for t in threading.enumerate() if t.name.startswith("pybpf-read-")]
        assert len(h) == 20000                       # a plain read removes nothing
        drained = h.drain()
        assert set(drained) == set(want) and len(h) == 0 and _per_key(h) == {}
