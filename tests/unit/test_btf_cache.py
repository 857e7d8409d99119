"""BTF indexing, split BTF and the on-disk index cache (pybpf.btf.cache, pybpf.kbtf).

No root needed: vmlinux BTF is world-readable; tests that need it skip without it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from pybpf.btf import (Const, Func, FuncProto, Int, IntEncoding, Kind, Linkage, Member, Param, Ptr,
                       Spec, Struct, Typedef)
from pybpf.btf.cache import IndexCache, TypeIndex, blob_identity
from pybpf.btf.marshal import marshal
from pybpf.errors import ParseError
from pybpf.kbtf import VMLINUX_BTF, load_kernel_btf

HAVE_VMLINUX = os.access(VMLINUX_BTF, os.R_OK)

BASE_TYPES = [
    Int("int", 4, IntEncoding.SIGNED, 0, 32),                        # 1
    Struct("task", 16, (Member("pid", 1, 0, 0), Member("next", 3, 64, 0))),  # 2
    Ptr("", 2),                                                      # 3
    Typedef("pid_t", 1),                                             # 4
    Struct("task___v2", 4, (Member("pid", 1, 0, 0),)),               # 5
]
SPLIT_TYPES = [
    Struct("mod_state", 8, (Member("owner", 3, 0, 0),)),             # 6
    Typedef("int", 1),            # 7: a name the base's string table already holds
    FuncProto("", 1, (Param("t", 3),)),                              # 8
    Func("mod_func", 8, Linkage.GLOBAL),                             # 9
    Const("", 6),                                                    # 10
]


def _split_pair():
    base_raw = marshal(BASE_TYPES)
    base = Spec.parse(base_raw, file="base")
    full = marshal(BASE_TYPES + SPLIT_TYPES, strings=base.strings_raw)
    _m, _v, _f, hl, toff, tlen, soff, slen = struct.unpack_from("<HBBIIIII", full, 0)
    base_tlen = struct.unpack_from("<I", base_raw, 12)[0]
    types = full[hl + toff + base_tlen:hl + toff + tlen]
    strs = full[hl + soff + len(base.strings_raw):hl + soff + slen]
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs))
    return base, hdr + types + strs


def test_split_btf_ids_names_and_strings_continue_the_base():
    base, raw = _split_pair()
    split = Spec.parse(raw, base=base, file="module")
    assert split.start_id == 6 and len(split) == 11
    assert split.type(6) == SPLIT_TYPES[0] and split.type(9).name == "mod_func"
    assert split.type(2) is base.type(2)                        # ids below start_id: the base's
    assert split.find("mod_state") == [6]
    assert split.find("int") == [1, 7]                          # base first, then own
    assert split.find("int", Kind.TYPEDEF) == [7]
    assert split.find("task") == [2] and split.find("nope") == []
    assert split.kind_of(10) == Kind.CONST and split.kind_of(1) == Kind.INT
    assert sorted(split.names()) == ["int", "mod_func", "mod_state"]
    assert split.type_name(10) == "const struct mod_state"
    assert split.skip_modifiers(10) == 6 and split.sizeof(6) == 8


def test_kind_of_agrees_with_decoded_types():
    base, raw = _split_pair()
    split = Spec.parse(raw, base=base)
    for tid in range(1, len(split)):
        assert split.kind_of(tid) == split.type(tid).kind
    with pytest.raises(ParseError):
        split.kind_of(len(split))


def test_names_inside_other_strings_and_non_utf8_names():
    # name offsets may point into the middle of another string (suffix sharing),
    # and names need not be UTF-8: both must still be found.
    raw = bytearray(marshal([Int("unsigned int", 4, IntEncoding.NONE, 0, 32),
                             Typedef("xx", 1), Typedef("caf\u00e9", 1)]))
    s = Spec.parse(bytes(raw))
    hl, soff = 24, struct.unpack_from("<I", raw, 16)[0]
    strtab = bytes(raw[hl + soff:])
    int_off = strtab.index(b"unsigned int")
    tlen = struct.unpack_from("<I", raw, 12)[0]
    struct.pack_into("<I", raw, hl + 16, int_off + len("unsigned "))     # typedef "int" -> suffix
    cafe = strtab.index("caf\u00e9".encode())
    raw[hl + soff + cafe + 3] = 0xE9                                      # Latin-1, not UTF-8
    raw[hl + soff + cafe + 4] = ord("s")
    s = Spec.parse(bytes(raw))
    assert s.type(2).name == "int" and s.find("int") == [2] and s.find("unsigned int") == [1]
    odd = s.type(3).name
    assert odd == "caf\u00e9s" and s.find(odd) == [3]
    assert tlen and sorted(s.names_containing("int")) == ["int", "unsigned int"]


def test_names_containing_finds_flavors():
    s = Spec.parse(marshal(BASE_TYPES))
    assert s.names_containing("___") == ["task___v2"]
    assert s.names_containing("zzz") == []


def test_index_round_trip_through_the_cache(tmp_path):
    raw = marshal(BASE_TYPES + [Struct(f"s{i}", 4, (Member("m", 1, 0, 0),)) for i in range(300)])
    built = Spec.parse(raw)
    cache = IndexCache(tmp_path)
    key = blob_identity(raw)
    assert cache.load(key) is None
    assert cache.save(key, built.index)
    index = cache.load(key)
    assert isinstance(index, TypeIndex) and list(index.offsets) == list(built.index.offsets)
    warm = Spec.parse(raw, index=index)
    for name in ["int", "task", "pid_t", "s0", "s299", "missing", "task___v2"]:
        assert warm.find(name) == built.find(name)
    assert [warm.type(i) for i in range(1, len(warm))] == [built.type(i) for i in range(1, len(built))]
    assert cache.load(blob_identity(raw, b"other")) is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "empty"])
def test_corrupt_cache_is_ignored(tmp_path, damage):
    raw = marshal(BASE_TYPES)
    cache = IndexCache(tmp_path)
    key = blob_identity(raw)
    cache.save(key, Spec.parse(raw).index)
    path = cache.path(key)
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[-3] ^= 0x40
    elif damage == "truncate":
        blob = blob[:-4]
    elif damage == "magic":
        blob[0:8] = b"NOTINDEX"
    else:
        blob = bytearray()
    path.write_bytes(bytes(blob))
    assert cache.load(key) is None


def test_index_of_another_blob_is_refused():
    small = Spec.parse(marshal(BASE_TYPES))
    other = marshal(BASE_TYPES + SPLIT_TYPES[:1])
    with pytest.raises(ParseError, match="cached type index does not fit"):
        Spec.parse(other, index=small.index)


def test_load_kernel_btf_file_writes_then_uses_the_cache(tmp_path, monkeypatch):
    raw = marshal(BASE_TYPES + [Struct(f"s{i}", 4, (Member("m", 1, 0, 0),)) for i in range(400)])
    path = tmp_path / "custom.btf"
    path.write_bytes(raw)
    cache = IndexCache(tmp_path / "cache")
    first = load_kernel_btf(path, cache=cache)
    expect = first.find("s123")
    assert expect == [6 + 123] and len(list((tmp_path / "cache").glob("btf-*.idx"))) == 1
    del first
    monkeypatch.setattr(Spec, "_walk", lambda self: pytest.fail("the index should come from the cache"))
    second = load_kernel_btf(str(path), cache=cache)
    assert second.find("s123") == expect and second.type(second.find("s7")[0]).name == "s7"


def test_unwritable_cache_directory_is_harmless(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    raw = marshal(BASE_TYPES + [Struct(f"s{i}", 4, (Member("m", 1, 0, 0),)) for i in range(400)])
    path = tmp_path / "x.btf"
    path.write_bytes(raw)
    spec = load_kernel_btf(path, cache=IndexCache(blocker / "sub"))    # cannot mkdir under a file
    assert spec.find("s1")


def test_elf_with_btf_section_as_target(bpf_objects_or_skip):
    spec = load_kernel_btf(bpf_objects_or_skip)
    assert spec.find("int")


@pytest.fixture
def bpf_objects_or_skip():
    build = Path(__file__).resolve().parents[1] / "progs" / "build"
    objs = sorted(build.glob("*.bpf.o"))
    if not objs:
        pytest.skip("no compiled test objects (run the kernel tests once)")
    return objs[0]


@pytest.mark.skipif(not HAVE_VMLINUX, reason="no /sys/kernel/btf/vmlinux")
def test_vmlinux_cold_and_warm_agree(tmp_path):
    names = ["task_struct", "sk_buff", "file", "int", "bpf_prog", "nf_conn___init", "no_such_type"]
    cache = IndexCache(tmp_path)
    cold = load_kernel_btf(None, cache=cache)
    expect = {n: cold.find(n) for n in names}
    flavored = cold.names_containing("___")
    kinds = {i: cold.kind_of(i) for i in range(1, len(cold), 997)}
    n = len(cold)
    del cold
    assert len(list(tmp_path.glob("btf-*.idx"))) == 1
    warm = load_kernel_btf(None, cache=cache)
    assert len(warm) == n
    assert {nm: warm.find(nm) for nm in names} == expect
    assert {i: warm.kind_of(i) for i in kinds} == kinds
    assert warm.type(expect["task_struct"][0]).name == "task_struct"
    assert warm.names_containing("___") == flavored
    assert bool(expect["nf_conn___init"]) == ("nf_conn___init" in flavored)
