"""CO-RE rules on hand-built BTF: names, compatibility, candidates, modules, errors."""

from __future__ import annotations

import struct
from typing import Optional, Sequence, Tuple

import pytest

from pybpf.btf import Kind, Spec
from pybpf.btf.ext import COREReloKind as K, CORERelo
from pybpf.core import (
    CandidateCache, essential_name, fields_compatible, find_candidates, relocate,
    types_compatible, types_match,
)
from pybpf.errors import CORERelocationError


class BTF:
    """A tiny BTF writer for tests: ``add_*`` return type ids, ``spec()`` parses the result."""

    def __init__(self, base: Optional[Spec] = None):
        self.base = base
        self.next_id = len(base) if base is not None else 1
        self.strs = bytearray(b"\0")
        self.types = bytearray()

    def _s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        return off + (self.base._str_len_total if self.base is not None else 0)

    def _t(self, name: str, kind: Kind, vlen: int, size_type: int, extra: bytes = b"",
           kflag: bool = False) -> int:
        info = (int(kflag) << 31) | (int(kind) << 24) | vlen
        self.types += struct.pack("<III", self._s(name), info, size_type) + extra
        self.next_id += 1
        return self.next_id - 1

    def int_(self, name: str, size: int, signed: bool = False) -> int:
        return self._t(name, Kind.INT, 0, size, struct.pack("<I", (int(signed) << 24) | size * 8))

    def ptr(self, t: int) -> int:
        return self._t("", Kind.PTR, 0, t)

    def array(self, t: int, n: int, index: int = 0) -> int:
        return self._t("", Kind.ARRAY, 0, 0, struct.pack("<III", t, index or t, n))

    def comp(self, name: str, size: int, members: Sequence[Tuple], union: bool = False) -> int:
        """members: (name, type, bit_offset[, bitfield_size])"""
        kflag = any(len(m) > 3 and m[3] for m in members)
        extra = b"".join(struct.pack("<III", self._s(m[0]), m[1],
                                     (m[3] << 24 | m[2]) if kflag else m[2]) for m in members)
        return self._t(name, Kind.UNION if union else Kind.STRUCT, len(members), size, extra, kflag)

    def enum(self, name: str, values: Sequence[Tuple[str, int]], size: int = 4,
             signed: bool = False) -> int:
        extra = b"".join(struct.pack("<Ii", self._s(n), v) for n, v in values)
        return self._t(name, Kind.ENUM, len(values), size, extra, signed)

    def enum64(self, name: str, values: Sequence[Tuple[str, int]], signed: bool = False) -> int:
        extra = b"".join(struct.pack("<III", self._s(n), v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF)
                         for n, v in values)
        return self._t(name, Kind.ENUM64, len(values), 8, extra, signed)

    def fwd(self, name: str, union: bool = False) -> int:
        return self._t(name, Kind.FWD, 0, 0, kflag=union)

    def typedef(self, name: str, t: int) -> int:
        return self._t(name, Kind.TYPEDEF, 0, t)

    def const(self, t: int) -> int:
        return self._t("", Kind.CONST, 0, t)

    def float_(self, name: str, size: int) -> int:
        return self._t(name, Kind.FLOAT, 0, size)

    def proto(self, ret: int, params: Sequence[int]) -> int:
        extra = b"".join(struct.pack("<II", 0, p) for p in params)
        return self._t("", Kind.FUNC_PROTO, len(params), ret, extra)

    def spec(self, file: Optional[str] = None) -> Spec:
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types),
                          len(self.strs))
        return Spec.parse(hdr + bytes(self.types) + bytes(self.strs), base=self.base, file=file)


def relo(type_id: int, access: str, kind: K, insn: int = 0) -> CORERelo:
    return CORERelo(insn * 8, type_id, access, kind)


# -- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,ess", [
    ("task_struct", "task_struct"), ("task_struct___v2", "task_struct"), ("a___b___c", "a___b"),
    ("a____b", "a____b"), ("a___", "a___"), ("___a", "___a"), ("x___y_", "x"), ("", ""),
    ("a___b____c", "a"),
])
def test_essential_name(name, ess):
    assert essential_name(name) == ess


# -- compatibility relations ------------------------------------------------------------------

@pytest.fixture
def pair():
    """(local builder, target builder) with a few basic types at the same ids."""
    sides = []
    for _ in range(2):
        b = BTF()
        b.ids = {"int": b.int_("int", 4, True), "u8": b.int_("unsigned char", 1),  # type: ignore[attr-defined]
                 "long": b.int_("long", 8, True)}
        sides.append(b)
    return sides


def test_fields_compatible_rules(pair):
    lb, tb = pair
    l_arr, t_arr = lb.array(lb.ids["int"], 4), tb.array(tb.ids["u8"], 9)
    l_ptr, t_ptr = lb.ptr(lb.ids["int"]), tb.ptr(tb.ids["long"])
    l_s = lb.comp("s", 4, [("x", lb.ids["int"], 0)])
    t_u = tb.comp("u", 8, [("y", tb.ids["long"], 0)], union=True)
    l_e, t_e, t_e2 = lb.enum("e", [("A", 1)]), tb.enum64("e___x", [("A", 1)]), tb.enum("f", [("A", 1)])
    l_anon_e = lb.enum("", [("A", 1)])
    l_f, t_f = lb.float_("float", 4), tb.float_("double", 8)
    l_td = lb.typedef("myint", lb.const(lb.ids["int"]))
    L, T = lb.spec(), tb.spec()
    assert fields_compatible(L, lb.ids["int"], T, tb.ids["long"])      # ints of any size and sign
    assert fields_compatible(L, l_td, T, tb.ids["u8"])                 # through typedef/const
    assert fields_compatible(L, l_arr, T, t_arr)                       # arrays: element types
    assert fields_compatible(L, l_ptr, T, t_ptr)                       # any pointers
    assert fields_compatible(L, l_s, T, t_u)                           # struct <-> union
    assert fields_compatible(L, l_e, T, t_e)                           # enum <-> enum64, flavors
    assert not fields_compatible(L, l_e, T, t_e2)                      # different enum names
    assert fields_compatible(L, l_anon_e, T, t_e2)                     # anonymous enum: any
    assert fields_compatible(L, l_f, T, t_f)                           # floats
    assert not fields_compatible(L, lb.ids["int"], T, t_ptr)
    assert not fields_compatible(L, l_ptr, T, tb.ids["long"])
    assert not fields_compatible(L, l_arr, T, t_ptr)


def test_types_compatible_rules(pair):
    lb, tb = pair
    lp = lb.proto(lb.ids["int"], [lb.ptr(lb.ids["int"]), lb.ids["long"]])
    tp = tb.proto(tb.ids["long"], [tb.ptr(tb.ids["u8"]), tb.ids["int"]])
    tp1 = tb.proto(tb.ids["long"], [tb.ids["int"]])
    l_s, t_s, t_u = lb.comp("s", 4, []), tb.comp("s", 40, []), tb.comp("s", 4, [], union=True)
    l_fl, t_fl = lb.float_("float", 4), tb.float_("float", 4)
    l_arr, t_arr = lb.array(lb.ptr(l_s), 2), tb.array(tb.ptr(t_s), 7)
    L, T = lb.spec(), tb.spec()
    assert types_compatible(L, lp, T, tp)
    assert not types_compatible(L, lp, T, tp1)      # arity
    assert types_compatible(L, l_s, T, t_s)         # structs: by kind only
    assert not types_compatible(L, l_s, T, t_u)
    assert types_compatible(L, l_arr, T, t_arr)
    assert not types_compatible(L, l_fl, T, t_fl)   # libbpf does not handle FLOAT here


def test_types_match_rules(pair):
    lb, tb = pair
    l_in = lb.comp("in", 4, [("a", lb.ids["int"], 0)])
    t_in = tb.comp("in", 16, [("z", tb.ids["long"], 0), ("a", tb.ids["int"], 64)])
    t_in_bad = tb.comp("in___bad", 4, [("a", tb.ids["u8"], 0)])
    t_in_union = tb.comp("in___u", 4, [("a", tb.ids["int"], 0)], union=True)
    l_fwd_user = lb.comp("user", 8, [("p", lb.ptr(lb.fwd("in")), 0)])
    l_ufwd_user = lb.comp("user___u", 8, [("p", lb.ptr(lb.fwd("in", union=True)), 0)])
    t_user = tb.comp("user", 8, [("p", tb.ptr(t_in), 0)])
    t_int8 = tb.int_("int", 8, True)
    t_uint = tb.int_("int", 4, False)
    l_e = lb.enum("e", [("A", 1), ("B", 2)])
    t_e64 = tb.enum64("e", [("B___x", 9), ("A", 0), ("C", 3)])
    t_e_small = tb.enum("e___small", [("A", 1), ("B", 2)], size=2)
    l_arr, t_arr, t_arr_bad = lb.array(lb.ids["int"], 3), tb.array(tb.ids["int"], 3), tb.array(tb.ids["int"], 4)
    L, T = lb.spec(), tb.spec()
    assert types_match(L, lb.ids["int"], T, tb.ids["int"])
    assert not types_match(L, lb.ids["int"], T, t_int8)       # size
    assert not types_match(L, lb.ids["int"], T, t_uint)       # signedness
    assert not types_match(L, lb.ids["int"], T, tb.ids["long"])  # name
    assert types_match(L, l_in, T, t_in)                      # extra target members are fine
    assert not types_match(L, l_in, T, t_in_bad)              # member type differs in size
    assert not types_match(L, l_in, T, t_in_union)            # struct is not union
    assert types_match(L, l_fwd_user, T, t_user)              # fwd behind pointer matches struct
    assert not types_match(L, l_ufwd_user, T, t_user)         # ... but a union fwd does not
    assert not types_match(L, l_e, T, t_e64)                  # enum sizes differ (4 vs 8)
    assert not types_match(L, l_e, T, t_e_small)
    assert types_match(L, l_arr, T, t_arr) and not types_match(L, l_arr, T, t_arr_bad)


def test_enum_match_by_names_not_values():
    lb, tb = BTF(), BTF()
    le = lb.enum("e", [("A", 1), ("B", 2)])
    te = tb.enum("e", [("B___x", 9), ("A", 0), ("C", 3)])
    te2 = tb.enum("e___2", [("A", 0)])
    L, T = lb.spec(), tb.spec()
    assert types_match(L, le, T, te) and not types_match(L, le, T, te2)


# -- relocating hand-built objects ------------------------------------------------------------

def _sample():
    """Local: struct s { int a; union { int b; long c; }; int arr[4]; enum e ev; } and friends."""
    lb = BTF()
    i = lb.int_("int", 4, True)
    lg = lb.int_("long", 8, True)
    anon = lb.comp("", 8, [("b", i, 0), ("c", lg, 0)], union=True)
    e = lb.enum("e", [("E1", 1), ("E2", 2)], signed=True)
    s = lb.comp("s", 32, [("a", i, 0), ("", anon, 64), ("arr", lb.array(i, 4), 128),
                          ("ev", e, 224)])
    anon_s = lb.comp("", 4, [("x", i, 0)])
    return lb.spec("local.o"), dict(int=i, s=s, e=e, anon=anon_s)


def _vmlinux(extra=None):
    tb = BTF()
    i = tb.int_("int", 4, True)
    lg = tb.int_("long", 8, True)
    e = tb.enum("e", [("E2", 20), ("E1", -10)], signed=True)
    s = tb.comp("s", 64, [("pad", lg, 0), ("arr", tb.array(i, 2), 64),
                          ("", tb.comp("", 8, [("", tb.comp("", 8, [("b", lg, 0)]), 0)]), 128),
                          ("a", i, 192), ("ev", e, 224)])
    if extra:
        extra(tb, i)
    return tb.spec(), dict(int=i, s=s)


def test_anonymous_members_arrays_and_enum_fields():
    L, ids = _sample()
    T, tids = _vmlinux()
    fx = relocate(L, [relo(ids["s"], "0:0", K.FIELD_BYTE_OFFSET),
                      relo(ids["s"], "0:1:0", K.FIELD_BYTE_OFFSET),   # b inside anonymous union
                      relo(ids["s"], "0:1:0", K.FIELD_BYTE_SIZE),
                      relo(ids["s"], "0:2:1", K.FIELD_BYTE_OFFSET),   # arr[1]
                      relo(ids["s"], "0:2:3", K.FIELD_EXISTS),        # arr[3]: target has 2
                      relo(ids["s"], "0:2:3", K.FIELD_BYTE_OFFSET),
                      relo(ids["s"], "1:0", K.FIELD_BYTE_OFFSET),     # s[1].a
                      relo(ids["s"], "0:3", K.FIELD_SIGNED)], [T])
    assert [f.path for f in fx] == ["s.a", "s.b", "s.b", "s.arr[1]", "s.arr[3]", "s.arr[3]",
                                    "s[1].a", "s.ev"]
    assert [f.local_value for f in fx] == [0, 8, 4, 20, 1, 28, 32, 1]
    assert [f.target_value for f in fx[:4]] == [24, 16, 8, 12]
    assert (fx[4].target_value, fx[4].poisoned) == (0, False)
    assert fx[5].poisoned and "index 3 is past the end of int[2]" in fx[5].reason
    assert fx[6].target_value == 64 + 24 and fx[7].target_value == 1


def test_flexible_array_is_not_bounds_checked():
    lb = BTF()
    i = lb.int_("int", 4)
    s = lb.comp("f", 4, [("n", i, 0), ("data", lb.array(i, 0), 32)])
    tb = BTF()
    ti = tb.int_("int", 4)
    tb.comp("f", 8, [("x", ti, 0), ("n", ti, 32), ("data", tb.array(ti, 0), 64)])
    (fx,) = relocate(lb.spec(), [relo(s, "0:1:5", K.FIELD_BYTE_OFFSET)], [tb.spec()])
    assert (fx.local_value, fx.target_value) == (24, 28)


def test_enum_values_signed_and_missing():
    L, ids = _sample()
    T, _ = _vmlinux()
    fx = relocate(L, [relo(ids["e"], "0", K.ENUMVAL_VALUE), relo(ids["e"], "1", K.ENUMVAL_VALUE),
                      relo(ids["e"], "1", K.ENUMVAL_EXISTS)], [T])
    assert [f.target_value for f in fx] == [-10, 20, 1]


def test_type_id_target_with_two_candidates_is_ambiguous():
    L, ids = _sample()
    T, _ = _vmlinux(lambda tb, i: tb.comp("s___2", 4, [("a", i, 0)]))
    with pytest.raises(CORERelocationError, match=r"struct s \[\d+\] of kernel BTF gives"):
        relocate(L, [relo(ids["s"], "0", K.TYPE_ID_TARGET)], [T])
    (size,) = relocate(L, [relo(ids["s"], "0", K.TYPE_EXISTS)], [T])
    assert size.target_value == 1  # existence agrees, so no ambiguity


def test_candidate_list_is_narrowed_like_libbpf():
    """s___2 lacks 'ev'; after s.ev resolved against s only, s.a ignores s___2's other offset."""
    L, ids = _sample()
    T, tids = _vmlinux(lambda tb, i: tb.comp("s___2", 8, [("x", i, 0), ("a", i, 32)]))
    relos = [relo(ids["s"], "0:3", K.FIELD_BYTE_OFFSET), relo(ids["s"], "0:0", K.FIELD_BYTE_OFFSET)]
    fx = relocate(L, relos, [T])
    assert [f.target_value for f in fx] == [28, 24]
    with pytest.raises(CORERelocationError, match="candidates disagree"):
        relocate(L, relos[1:], [T])  # without the narrowing relocation first
    cache = CandidateCache(L, [T])
    relocate(L, relos[:1], [T], cache=cache, section="a")
    assert [f.target_value for f in relocate(L, relos[1:], [T], cache=cache, section="b")] == [24]
    with pytest.raises(CORERelocationError, match="another object"):
        relocate(L, relos, [_vmlinux()[0]], cache=cache)


def test_modules_are_searched_only_without_vmlinux_candidates():
    L_b = BTF()
    li = L_b.int_("int", 4)
    ms = L_b.comp("mod_s", 8, [("y", li, 32)])
    ss = L_b.comp("s", 8, [("a", li, 0)])
    L = L_b.spec()
    vm, _ = _vmlinux()
    mb = BTF(base=vm)
    vm_int = vm.find_one("int", Kind.INT)
    mod_s = mb.comp("mod_s", 12, [("x", vm_int, 0), ("y", vm_int, 64)])
    mb.comp("s", 4, [("a", vm_int, 0)])  # shadowed by vmlinux's struct s
    mod = mb.spec()
    cands = find_candidates(L, ms, [vm, mod])
    assert [(c.target, c.type_id) for c in cands] == [(1, mod_s)]
    assert [c.target for c in find_candidates(L, ss, [vm, mod])] == [0]
    fy, fa = relocate(L, [relo(ms, "0:0", K.FIELD_BYTE_OFFSET), relo(ss, "0:0", K.FIELD_BYTE_OFFSET)],
                      [vm, mod])
    assert (fy.target_value, fy.target_index, fy.target_type_id, fy.target) == (8, 1, mod_s, mod)
    assert "module BTF #1" in fy.target_type
    assert (fa.target_value, fa.target_index) == (24, 0)
    (missing,) = relocate(L, [relo(ms, "0:0", K.FIELD_EXISTS)], [vm])
    assert missing.reason == "mod_s.y: no struct named 'mod_s' in kernel BTF"


def test_bitfield_needing_more_than_eight_bytes_is_an_error():
    lb = BTF()
    u = lb.int_("unsigned long long", 8)
    s = lb.comp("bf", 16, [("x", u, 4, 62)])
    tb = BTF()
    tu = tb.int_("unsigned long long", 8)
    tb.comp("bf", 16, [("x", tu, 60, 10)])  # crosses the 8-byte boundary
    with pytest.raises(CORERelocationError, match="cannot be read with one 64-bit load"):
        relocate(lb.spec(), [relo(s, "0:0", K.FIELD_BYTE_OFFSET)], [tb.spec()])


@pytest.mark.parametrize("access,kind,msg", [
    ("", K.FIELD_BYTE_OFFSET, "malformed access string"),
    (":0", K.FIELD_BYTE_OFFSET, "malformed access string"),
    ("0:", K.FIELD_BYTE_OFFSET, "malformed access string"),
    ("0:x", K.FIELD_BYTE_OFFSET, "malformed access string"),
    ("0:9", K.FIELD_BYTE_OFFSET, "member index 9 past the 4 members"),
    ("0:2:4", K.FIELD_BYTE_OFFSET, "index 4 past the end of int\\[4\\]"),
    ("0:0:0", K.FIELD_BYTE_OFFSET, "steps into int"),
    ("1", K.TYPE_SIZE, "expected '0'"),
    ("0:1", K.ENUMVAL_VALUE, "not an enum"),
    (":".join(["0"] * 65), K.FIELD_BYTE_OFFSET, "more than 64 steps"),
])
def test_malformed_relocations(access, kind, msg):
    L, ids = _sample()
    T, _ = _vmlinux()
    with pytest.raises(CORERelocationError, match=msg):
        relocate(L, [relo(ids["s"], access, kind)], [T], section="prog")


def test_other_errors():
    L, ids = _sample()
    T, _ = _vmlinux()
    with pytest.raises(CORERelocationError, match="anonymous"):
        relocate(L, [relo(ids["anon"], "0:0", K.FIELD_BYTE_OFFSET)], [T])
    with pytest.raises(CORERelocationError, match="multiple of 8"):
        relocate(L, [CORERelo(4, ids["s"], "0:0", K.FIELD_BYTE_OFFSET)], [T])
    with pytest.raises(CORERelocationError, match="at least one target"):
        relocate(L, [], [])
    (local_id,) = relocate(L, [relo(ids["anon"], "0", K.TYPE_ID_LOCAL)], [T])  # no search needed
    assert (local_id.target_value, local_id.validate) == (ids["anon"], False)


def test_inputs_are_not_modified():
    L, ids = _sample()
    T, _ = _vmlinux()
    insns = struct.pack("<BBhi", 0xB7, 1, 0, 0)
    fx = relocate(L, [relo(ids["s"], "0:0", K.FIELD_BYTE_OFFSET)], [T], insns)
    assert insns == struct.pack("<BBhi", 0xB7, 1, 0, 0) and fx[0].target_value == 24

