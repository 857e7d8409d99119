"""Map operations on 1M-entry maps beside libbpf's build/maps_bench (issue 5).

Same sizes, key formula and batch sizes as src/maps_bench.c: HASH of 1,000,000
entries, key u64 = i * 2654435761 + 1, value {u64 a = i, u64 b = ~i}; ARRAY of
1,000,000 such values created BPF_F_MMAPABLE.  pybpf's maps have BTF codecs (built
with pybpf.btf.marshal) so the "decoded" rows produce Python records.
"""

from __future__ import annotations

import array
import statistics
import time
from typing import Callable, Dict, List, Tuple

ANCHOR_TARGETS = ["build/maps_bench"]

N = 1_000_000
BATCHES = (1024, 8192, 65536)
U64 = (1 << 64) - 1


def _btf():
    from pybpf.btf import Spec
    from pybpf.btf.marshal import marshal
    from pybpf.btf.types import Int, IntEncoding, Member, Struct
    return Spec.parse(marshal([Int("unsigned long long", 8, IntEncoding.NONE, 0, 64),
                               Struct("val", 16, (Member("a", 1, 0), Member("b", 1, 64))),
                               Int("unsigned int", 4, IntEncoding.NONE, 0, 32)]))


def run(ctx) -> None:
    """Each rep runs libbpf's harness once (-n 1) and then every pybpf measurement once,
    so that both see the same machine load; rows are medians over the reps."""
    from pybpf.consts import Cmd, MapFlags, MapType
    from pybpf.maps import BatchCursor, Map
    from pybpf.maps.memory import MapMemory
    from pybpf.spec import MapSpec

    reps = max(3, min(ctx.reps, 5))
    btf = _btf()
    hspec = MapSpec("bench_hash", MapType.HASH, 8, 16, N, btf=btf, key_type_id=1, value_type_id=2)
    aspec = MapSpec("bench_array", MapType.ARRAY, 4, 16, N, flags=MapFlags.MMAPABLE, btf=btf,
                    key_type_id=3, value_type_id=2)
    keys = array.array("Q", ((i * 2654435761 + 1) & U64 for i in range(N))).tobytes()
    vals = array.array("Q", (x for i in range(N) for x in (i, ~i & U64))).tobytes()
    idx = array.array("I", range(N)).tobytes()
    py_items = {(i * 2654435761 + 1) & U64: (i, ~i & U64) for i in range(N)}
    key_list = [keys[i * 8:i * 8 + 8] for i in range(N)]
    int_keys = list(py_items)
    kout, vout = bytearray(8 * (N + 65536)), bytearray(16 * (N + 65536))
    try:
        import numpy  # noqa: F401
        have_numpy = True
    except ImportError:
        have_numpy = False

    ours: Dict[str, List[float]] = {}
    theirs: Dict[str, List[float]] = {}
    rows: List[Tuple[str, str, str]] = []     # (our name, unit, libbpf metric)

    def ms(fn: Callable[[], object]) -> float:
        # The result is released after the clock stops: freeing a million records is not
        # part of producing them (and libbpf's harness keeps its buffers too).
        t = time.perf_counter()
        out = fn()
        dt = (time.perf_counter() - t) * 1e3
        del out
        return dt

    def record(name: str, unit: str, value: float, lib_metric: str = "") -> None:
        if name not in ours:
            rows.append((name, unit, lib_metric))
        ours.setdefault(name, []).append(value)

    for r in range(reps):
        lib = ctx.libbpf("build/maps_bench", "-n", "1", "-rep", str(r))
        for k, v in lib.items():
            theirs.setdefault(k, []).append(v)

        # -- HASH fill -------------------------------------------------------------------
        with Map.create(hspec) as m:
            record(f"HASH {N}: fill, update_batch_raw (1 call, packed bytes)", "ms",
                   ms(lambda: m.update_batch_raw(keys, vals, N)),
                   f"HASH {N}: fill, bpf_map_update_batch (1 call)")
        with Map.create(hspec) as m:
            record(f"HASH {N}: fill, update_batch(dict of Python values)", "ms",
                   ms(lambda: m.update_batch(py_items)),
                   f"HASH {N}: fill, bpf_map_update_batch (1 call)")

        h = Map.create(hspec)
        h.update_batch_raw(keys, vals, N)

        # -- HASH dumps ------------------------------------------------------------------
        def dump_into(batch: int) -> None:
            total, cur = 0, BatchCursor()
            km, vm = memoryview(kout), memoryview(vout)
            while not cur.done:
                total += h.lookup_batch_into(cur, km[total * 8:], vm[total * 16:], batch)
            assert total == N
        for b in BATCHES:
            record(f"HASH {N}: full dump, lookup_batch batch={b} (bytes)", "ms",
                   ms(lambda: dump_into(b)), f"HASH {N}: full dump, bpf_map_lookup_batch batch={b}")
        best = f"HASH {N}: full dump, bpf_map_lookup_batch batch=65536"
        record(f"HASH {N}: full dump, dump_raw() (auto batch, bytes)", "ms",
               ms(lambda: h.dump_raw()), best)
        record(f"HASH {N}: full dump, dump_lists() decoded (ints, records)", "ms",
               ms(lambda: h.dump_lists()), best)
        record(f"HASH {N}: full dump, dump() decoded to a dict of records", "ms",
               ms(lambda: h.dump()), best)
        if have_numpy:
            record(f"HASH {N}: full dump, dump_numpy()", "ms", ms(lambda: h.dump_numpy()), best)
        if r < 2:   # ~10 s each: two reps are enough
            h._batch_ok[Cmd.MAP_LOOKUP_BATCH] = False   # the per-key fallback, forced
            record(f"HASH {N}: full dump, per-key fallback (next_key + lookup, bytes)", "ms",
                   ms(lambda: h.dump_raw()), f"HASH {N}: full dump, get_next_key + lookup_elem")
            h._batch_ok.clear()

        # -- single lookups --------------------------------------------------------------
        def lookups_raw() -> None:
            lk = h.lookup_raw
            for k in key_list:
                lk(k)

        def lookups_decoded() -> None:
            lk = h.lookup
            for k in int_keys:
                lk(k)
        lat = f"HASH {N}: bpf_map_lookup_elem latency ({N} lookups)"
        record(f"HASH {N}: lookup_raw(bytes key) latency", "ns/op", ms(lookups_raw) * 1e6 / N, lat)
        record(f"HASH {N}: m[int key] decoded latency", "ns/op", ms(lookups_decoded) * 1e6 / N, lat)
        h.close()

        # -- ARRAY -----------------------------------------------------------------------
        with Map.create(aspec) as a:
            record(f"ARRAY {N}: fill, update_batch_raw (1 call)", "ms",
                   ms(lambda: a.update_batch_raw(idx, vals, N)),
                   f"ARRAY {N}: fill, bpf_map_update_batch (1 call)")
            record(f"ARRAY {N}: full dump, dump_raw() (auto batch, bytes)", "ms",
                   ms(lambda: a.dump_raw()), f"ARRAY {N}: full dump, bpf_map_lookup_batch batch=65536")

            def mmap_copy() -> None:
                mem = MapMemory(a, writable=False)
                data = bytes(mem.view)
                mem.close()
                assert len(data) == 16 * N
            record(f"ARRAY {N}: full dump, mmap + copy + munmap", "ms", ms(mmap_copy),
                   f"ARRAY {N}: full dump, mmap + memcpy + munmap")
            if have_numpy:
                arr = a.memory().numpy()
                arr["a"].sum()      # warm, as the harness does
                record(f"ARRAY {N}: sum of values via persistent mmap (numpy)", "ms",
                       ms(lambda: int(arr["a"].sum())),
                       f"ARRAY {N}: sum of values via persistent mmap")
                del arr
            mem = a.memory()
            record(f"ARRAY {N}: all values decoded from the mapping", "ms", ms(mem.values))
            del mem

    med = statistics.median
    for name, unit, lib_metric in rows:
        lib_vals = theirs.get(f"maps:{lib_metric}") if lib_metric else None
        ctx.row(name, unit, med(ours[name]), med(lib_vals) if lib_vals else None)
