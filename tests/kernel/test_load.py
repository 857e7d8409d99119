"""Foundation kernel tests: load clang-built objects through raw bpf(2) and check behaviour."""

from __future__ import annotations

import json
import struct
import subprocess
import time

import pytest

import pybpf
from pybpf.consts import MapType, ProgType
from tests.conftest import fd_count

pytestmark = pytest.mark.kernel

XDP_DROP, XDP_PASS = 1, 2
PKT = bytes(64)  # an all-zero Ethernet frame is enough for test_run of XDP


@pytest.fixture
def basic(bpf_objects, pin_dir):
    spec = pybpf.load_collection_spec(bpf_objects["basic"])
    spec.variables["multiplier"].value = 5
    with pybpf.load(spec, pin_root=pin_dir) as coll:
        yield coll


def test_globals_subprograms_and_callbacks(basic):
    r = basic.programs["compute"].test_run()
    assert r.retval == 42
    res = basic.maps["results"]
    assert res[0] == 7 * 5            # .data * .rodata knob set before load, via a static subprog
    assert res[1] == 105              # global (non-inlined) subprogram
    assert res[2] == 4                # bpf_loop callback (ld_imm64 pseudo func) bumped .bss 4 times
    assert res[3] == 11 + 13          # custom .data.custom + .rodata.custom sections
    assert basic.variables["data_var"].value == 8
    assert basic.variables["bss_counter"].value == 4
    assert basic.variables["multiplier"].value == 5
    basic.variables["data_var"].value = 100        # .data is writable after load
    basic.programs["compute"].test_run()
    assert res[0] == 500 and basic.variables["data_var"].value == 101


def test_rodata_is_frozen(basic):
    with pytest.raises(pybpf.BPFError, match="frozen"):
        basic.variables["multiplier"].value = 9
    with pytest.raises(pybpf.SyscallError):
        basic.maps[".rodata"].update_raw(b"\0" * 4, bytes(basic.maps[".rodata"].value_size))


def test_btf_struct_values(basic):
    basic.programs["fill_recs"].test_run()
    recs = basic.maps["recs"]
    v = recs[{"a": 1, "b": 2}]
    assert v.count == 5 and v.name == "hello" and v.color.name == "BLUE"
    assert (v.p.a, v.p.b) == (3, 4) and v.small == [1, 2, 3]
    assert v.sign == -3 and v.flag == 1
    key_cls = type(next(iter(recs.keys())))
    recs[key_cls(a=7, b=8)] = {"count": 9, "color": "GREEN", "name": "py"}
    assert recs[(7, 8)].count == 9 and recs[(7, 8)].color == 2 and recs[(7, 8)].name == "py"
    assert (7, 8) in recs and (9, 9) not in recs
    assert sorted((k.a, k.b) for k, _ in recs.items()) == [(1, 2), (7, 8)]
    del recs[(7, 8)]
    with pytest.raises(pybpf.KeyNotFoundError):
        recs[(7, 8)]
    with pytest.raises(KeyError):
        del recs[(7, 8)]
    with pytest.raises(pybpf.KeyExistsError):
        recs.update((1, 2), v, flags=1)  # BPF_NOEXIST on an existing key
    raw = recs.lookup_raw(recs.key_codec.encode((1, 2)))
    assert isinstance(raw, bytes) and len(raw) == recs.value_size


def test_tail_calls(basic):
    # jmp_init was filled from the ELF (.values = { [1] = &tail_target }).
    assert basic.programs["tail_entry2"].test_run(PKT).retval == XDP_DROP
    assert basic.maps["results"][5] == 555
    # jmp_table starts empty: the tail call falls through, until user space fills it.
    assert basic.programs["tail_entry"].test_run(PKT).retval == XDP_PASS
    basic.maps["jmp_table"].update_raw(struct.pack("I", 1), struct.pack("I", basic.programs["tail_target"].fd))
    assert basic.programs["tail_entry"].test_run(PKT).retval == XDP_DROP


def test_percpu_values(basic):
    from pybpf.maps import possible_cpus
    pcpu = basic.maps["pcpu"]
    vals = pcpu[0]
    assert isinstance(vals, list) and len(vals) == possible_cpus()
    pcpu[1] = list(range(possible_cpus()))
    assert pcpu[1] == list(range(possible_cpus()))


def test_pinned_by_name_is_reused(bpf_objects, pin_dir):
    for expected in (1, 2):
        with pybpf.load(bpf_objects["basic"], pin_root=pin_dir) as coll:
            coll.programs["fill_recs"].test_run()
            assert coll.maps["pinned_counter"][0] == expected
    assert (pin_dir / "pinned_counter").exists()


def test_legacy_maps_section(bpf_objects):
    with pybpf.load(bpf_objects["legacy"]) as coll:
        coll.programs["bump"].test_run()
        assert coll.maps["legacy_counts"][struct.pack("I", 2)] == struct.pack("Q", 9)


def test_verifier_error_names_program_and_source_line(bpf_objects):
    with pytest.raises(pybpf.VerifierError) as ei:
        pybpf.load(bpf_objects["reject"])
    e = ei.value
    assert e.program == "bad_deref"
    assert any("map_value_or_null" in l for l in e.log)
    assert e.source_line and "*v += 1" in e.source_line
    text = str(e)
    assert "bad_deref" in text and "*v += 1" in text and "map_value_or_null" in text
    assert "processed" in e.format_log()


def test_failure_leaves_nothing_behind(bpf_objects):
    before = fd_count()
    ids_before = set(_ids("map"))
    with pytest.raises(pybpf.VerifierError):
        pybpf.load(bpf_objects["reject"])
    assert fd_count() == before
    _poll_gone(lambda: set(_ids("map")) - ids_before)


def test_load_close_500_times_keeps_fd_count(bpf_objects):
    spec = pybpf.load_collection_spec(bpf_objects["basic"])
    spec.maps["pinned_counter"].pinning = pybpf.Pinning.NONE
    before = fd_count()
    for _ in range(500):
        with pybpf.load(spec) as coll:
            assert coll.programs
    assert fd_count() == before


def test_bpftool_oracle(basic):
    """Names, types and BTF ids of what pybpf loaded match what bpftool reports."""
    # Query one id at a time: bpftool 7.1's full listing leaks btf_id from one map into the
    # next map without BTF (it does not clear its info buffer between entries).
    for name, prog in basic.programs.items():
        info = prog.info()
        bt = _bpftool("prog", "show", "id", str(info.id))
        assert bt["name"] == prog.spec.kernel_name == info.name
        assert bt["type"] == {"SYSCALL": "syscall", "XDP": "xdp", "RAW_TRACEPOINT": "raw_tracepoint",
                              "TRACEPOINT": "tracepoint"}[ProgType(info.type).name]
        assert bt.get("btf_id", 0) == info.btf_id != 0
        assert set(bt.get("map_ids", [])) == set(info.map_ids)
    for name, m in basic.maps.items():
        info = m.info()
        bt = _bpftool("map", "show", "id", str(info.id))
        assert bt["name"] == info.name == basic.spec.kernel_map_names[name]
        assert bt["type"] == MapType(info.type).name.lower()
        assert bt["bytes_key"] == m.key_size and bt["bytes_value"] == m.value_size
        assert bt.get("btf_id", 0) == info.btf_id


def _bpftool(*args: str):
    out = subprocess.run(["bpftool", "--json", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def _ids(kind: str):
    return [x["id"] for x in _bpftool(kind, "show")]


def _poll_gone(leftover, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while leftover() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not leftover()


def test_map_in_map(basic):
    outer = basic.maps["outer"]
    assert outer.type == MapType.ARRAY_OF_MAPS
    basic.programs["use_inner"].test_run()
    assert basic.maps["inner_a"][1] == 1000          # slot 0 was filled from the ELF
    assert 1 not in basic.maps["inner_b"]
    outer.update_raw(struct.pack("I", 1), struct.pack("I", basic.maps["inner_b"].fd))
    basic.programs["use_inner"].test_run()
    assert basic.maps["inner_b"][1] == 1001
    inner_id = struct.unpack("I", outer.lookup_raw(struct.pack("I", 0)))[0]
    assert inner_id == basic.maps["inner_a"].info().id


def test_run_stats(basic):
    prog = basic.programs["compute"]
    with pybpf.enable_run_stats():
        for _ in range(3):
            prog.test_run()
        info = prog.info()
    assert info.run_cnt >= 3 and info.run_time_ns > 0
