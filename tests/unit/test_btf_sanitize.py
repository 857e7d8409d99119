"""BTF sanitization for older kernels (pure: hand-built BTF, no kernel)."""

from __future__ import annotations

import attrs
import pytest

from pybpf.btf import (
    Const, Datasec, DeclTag, Enum, Enum64, EnumValue, Float, Func, FuncProto, Int, IntEncoding,
    Kind, Linkage, Member, Param, Ptr, Spec, Struct, Typedef, TypeTag, Union, Var, VarSecinfo,
)
from pybpf.btf.marshal import marshal
from pybpf.btf.sanitize import ENUM64_PLACEHOLDER, BTFFeatures, needs_sanitization, sanitize

INT = Int("int", 4, IntEncoding.SIGNED, 0, 32)
TYPES = [
    INT,                                                                   # 1
    Var("v", 1, Linkage.GLOBAL),                                           # 2
    Datasec(".data.x", 8, (VarSecinfo(2, 4, 4),)),                         # 3
    FuncProto("", 1, (Param("a", 1), Param("", 1))),                       # 4
    Func("f", 4, Linkage.GLOBAL),                                          # 5
    Float("float", 4),                                                     # 6
    DeclTag("ftag", 5, -1),                                                # 7
    TypeTag("user", 1),                                                    # 8
    Ptr("", 8),                                                            # 9
    Enum64("e64", 8, False, (EnumValue("A", 1), EnumValue("B", 1 << 40))),  # 10
    Enum("es", 4, True, (EnumValue("NEG", -1), EnumValue("POS", 1))),      # 11
    Datasec("?.struct_ops", 0, ()),                                        # 12
    DeclTag("vtag", 2, -1),                                                # 13
    Func("s", 4, Linkage.STATIC),                                          # 14
]


def spec(byteorder: str = "<") -> Spec:
    return Spec.parse(marshal(TYPES, byteorder))


def only(name: str) -> BTFFeatures:
    """Every feature but ``name``."""
    return attrs.evolve(BTFFeatures.all(), **{name: False})


def test_nothing_to_do_returns_the_same_spec():
    s = spec()
    assert not needs_sanitization(s, BTFFeatures.all())
    assert sanitize(s, BTFFeatures.all()) is s
    plain = Spec.parse(marshal([INT, Ptr("", 1)]))
    assert not needs_sanitization(plain, BTFFeatures.none())
    assert sanitize(plain, BTFFeatures.none()) is plain


def test_old_kernel_rewrites_every_new_kind_keeping_ids():
    s = spec()
    out = sanitize(s, BTFFeatures.none())
    assert len(out) == len(s) + 1                       # only the placeholder is new
    assert out[1] == INT and out[9] == Ptr("", 8)       # untouched kinds stay as they were
    assert out[2] == Int("v", 1, IntEncoding.NONE, 0, 8)
    assert out[3] == Struct("_data_x", 8, (Member("v", 2, 32, 0),))
    assert out[4] == Enum("", 4, False, (EnumValue("a", 1), EnumValue("__pybpf_proto4_param1", 1)))
    assert out[5] == Typedef("f", 4)
    assert out[6] == Struct("", 4, ())
    assert out[7] == Int("ftag", 1, IntEncoding.NONE, 0, 8)
    assert out[8] == Const("", 1)
    placeholder = len(s)
    assert out[placeholder] == Int(ENUM64_PLACEHOLDER, 1, IntEncoding.NONE, 0, 8)
    assert out[10] == Union("e64", 8, (Member("A", placeholder, 0), Member("B", placeholder, 0)))
    assert out[11] == Enum("es", 4, False, (EnumValue("NEG", 0xFFFFFFFF), EnumValue("POS", 1)))
    assert out[12] == Struct("__struct_ops", 0, ())
    assert out[13].kind == Kind.INT and out[14] == Typedef("s", 4)
    kinds = {out.kind_of(i) for i in range(1, len(out))}
    assert not kinds & {Kind.VAR, Kind.DATASEC, Kind.FUNC, Kind.FUNC_PROTO, Kind.FLOAT,
                        Kind.DECL_TAG, Kind.TYPE_TAG, Kind.ENUM64}


def test_string_offsets_are_kept():
    s = spec()
    out = sanitize(s, BTFFeatures.none())
    assert out.strings_raw.startswith(s.strings_raw)   # line info offsets stay valid
    for off in range(len(s.strings_raw)):
        if off == 0 or s.strings_raw[off - 1] == 0:
            assert out.string(off) == s.string(off)


@pytest.mark.parametrize("feature,changed", [
    ("func_global", {5}),
    ("float", {6}),
    ("type_tag", {8}),
    ("enum64", {10, 11}),
    ("qmark_datasec", {12}),
    ("decl_tag", {7, 13}),
    ("func", {4, 5, 7, 14}),      # the tag on FUNC f goes with it
    ("datasec", {2, 3, 12, 13}),  # ... and the tag on VAR v
])
def test_each_feature_rewrites_only_its_kinds(feature, changed):
    s = spec()
    out = sanitize(s, only(feature))
    assert len(out) == len(s) + (feature == "enum64")
    assert {i for i in range(1, len(s)) if out[i] != s[i]} == changed


def test_one_feature_details():
    s = spec()
    assert sanitize(s, only("func_global"))[5] == Func("f", 4, Linkage.STATIC)
    assert sanitize(s, only("func_global"))[14] == s[14]
    assert sanitize(s, only("qmark_datasec"))[3] == s[3]           # '.' is fine with DATASEC
    assert sanitize(s, only("qmark_datasec"))[12].name == "_.struct_ops"
    assert sanitize(s, only("decl_tag"))[13] == Int("vtag", 1, IntEncoding.NONE, 0, 8)
    assert sanitize(s, only("enum64"))[11].signed is False


def test_big_endian_objects_stay_big_endian():
    s = spec(">")
    out = sanitize(s, BTFFeatures.none())
    assert out.byteorder == ">" and out[3] == Struct("_data_x", 8, (Member("v", 2, 32, 0),))


def test_split_btf_is_refused():
    base = Spec.parse(marshal([INT]))
    split = Spec.parse(marshal([Ptr("", 1)]), base=base)   # module BTF on top of a base
    with pytest.raises(ValueError, match="split BTF"):
        sanitize(split, BTFFeatures.none())


def test_features_helpers():
    assert BTFFeatures.all().missing() == ()
    assert set(BTFFeatures.none().missing()) == {f.name for f in attrs.fields(BTFFeatures)}
    assert only("enum64").missing() == ("enum64",)
    assert BTFFeatures.none().func_info is False and BTFFeatures.all().func_info is True
