"""BTF value codecs (pybpf.btf.codec): every type kind, both byte orders, errors, bulk paths."""

from __future__ import annotations

import struct

import pytest

from pybpf.btf import Spec
from pybpf.btf.codec import (
    BytesCodec, CodecError, bitfield_values, codec_for, numpy_dtype, record_class,
)
from pybpf.btf.marshal import marshal
from pybpf.btf.types import (
    Array, Datasec, Enum, EnumValue, Float, Int, IntEncoding, Member, Ptr, Struct, Typedef,
    Union, Var, VarSecinfo,
)
from pybpf.errors import BPFError

S, N, C, B = IntEncoding.SIGNED, IntEncoding.NONE, IntEncoding.CHAR, IntEncoding.BOOL

TYPES = [
    Int("unsigned int", 4, N, 0, 32),                                   # 1
    Int("char", 1, S, 0, 8),                                            # 2
    Int("long long", 8, S, 0, 64),                                      # 3
    Array("", 2, 1, 8),                                                 # 4 char[8]
    Struct("pair", 8, (Member("a", 1, 0), Member("b", 1, 32))),         # 5
    Enum("color", 4, False, (EnumValue("RED", 1), EnumValue("GREEN", 2),
                             EnumValue("BLUE", 40))),                   # 6
    Int("unsigned short", 2, N, 0, 16),                                 # 7
    Array("", 7, 1, 3),                                                 # 8 u16[3]
    Int("int", 4, S, 0, 32),                                            # 9
    Struct("rec", 40, (Member("count", 3, 0), Member("color", 6, 64), Member("name", 4, 96),
                       Member("p", 5, 160), Member("small", 8, 224),
                       Member("sign", 9, 272, 4), Member("flag", 1, 276, 1),
                       Member("in", 1, 288))),                          # 10
    Int("unsigned char", 1, N, 0, 8),                                   # 11
    Typedef("__u8", 11),                                                # 12
    Array("", 12, 1, 4),                                                # 13 u8[4]
    Union("u", 8, (Member("x", 1, 0), Member("y", 3, 0))),              # 14
    Struct("holder", 16, (Member("", 14, 0), Member("z", 1, 64))),      # 15 anonymous union
    Array("", 5, 1, 100),                                               # 16 pair[100]
    Struct("big", 800, (Member("pairs", 16, 0),)),                      # 17
    Int("_Bool", 1, B, 0, 8),                                           # 18
    Float("double", 8),                                                 # 19
    Ptr("", 5),                                                         # 20
    Struct("misc", 32, (Member("ok", 18, 0), Member("d", 19, 64), Member("p", 20, 128),
                        Member("__pad", 1, 192), Member("raw", 13, 224))),  # 21
    Int("__int128", 16, S, 0, 128),                                     # 22
    Var("counter", 3),                                                  # 23
    Var("pt", 5),                                                       # 24
    Datasec(".bss", 16, (VarSecinfo(23, 0, 8), VarSecinfo(24, 8, 8))),  # 25
    Array("", 5, 1, 2),                                                 # 26 pair[2]
    Struct("two", 16, (Member("ps", 26, 0),)),                          # 27
]


def _spec(bo: str = "<") -> Spec:
    return Spec.parse(marshal(TYPES, byteorder=bo))


@pytest.fixture(scope="module")
def spec() -> Spec:
    return _spec()


def _rec_bytes(bo: str = "<") -> bytes:
    head = struct.pack(bo + "qI8sII3H", 5, 40, b"hello", 3, 4, 1, 2, 3)
    if bo == "<":
        bits = 0b1101 | (1 << 4)          # sign=-3 in bits 0..3, flag in bit 4
    else:
        bits = (0b1101 << 4) | (1 << 3)   # big endian: from the most significant bit
    return (head + bytes([bits]) + b"\0" + struct.pack(bo + "I", 77)).ljust(40, b"\0")


@pytest.mark.parametrize("bo", ["<", ">"])
def test_struct_roundtrip_both_byte_orders(bo):
    c = codec_for(_spec(bo), 10)
    raw = _rec_bytes(bo)
    v = c.decode(raw)
    assert v.count == 5 and v.color.name == "BLUE" and v.name == "hello"
    assert v.p == (3, 4) and v.p.b == 4 and v.small == [1, 2, 3]
    assert (v.sign, v.flag, v.in_) == (-3, 1, 77)
    assert c.size == 40 and c.encode(v) == raw
    assert c.decode(b"\xff" * 3 + raw, 3) == v


def test_encode_from_dicts_tuples_and_partial_values(spec):
    c = codec_for(spec, 10)
    v = c.decode(c.encode({"count": 9, "color": "GREEN", "name": "py", "p": (1, 2),
                           "small": [7], "sign": -8, "flag": 1}))
    assert (v.count, v.color, v.name, v.p, v.small, v.sign, v.flag) == \
        (9, 2, "py", (1, 2), [7, 0, 0], -8, 1)
    assert codec_for(spec, 5).encode((7, 8)) == struct.pack("<II", 7, 8)
    cls = record_class(spec, 5)
    assert codec_for(spec, 5).encode(cls(b=3)) == struct.pack("<II", 0, 3)
    assert c.encode(c.zero()) == bytes(40)


@pytest.mark.parametrize("value, message", [
    ({"count": 1 << 70}, r"rec\.count: .* does not fit a signed 64-bit"),
    ({"sign": 8}, r"rec\.sign: 8 does not fit a signed 4-bit"),
    ({"color": "PURPLE"}, r"rec\.color: unknown enumerator 'PURPLE'"),
    ({"name": "much too long"}, r"rec\.name: 13 bytes do not fit char\[8\]"),
    ({"small": [1, 2, 3, 4]}, r"rec\.small: 4 items do not fit an array of 3"),
    ({"p": {"c": 1}}, r"rec\.p: unknown field\(s\) \['c'\]"),
    ({"nope": 1}, r"unknown field\(s\) \['nope'\]"),
    ("text", r"cannot encode str as rec"),
])
def test_encode_errors_name_the_field(spec, value, message):
    with pytest.raises(CodecError, match=message) as e:
        codec_for(spec, 10).encode(value)
    assert isinstance(e.value, BPFError) and isinstance(e.value, ValueError)


def test_decode_short_buffer(spec):
    with pytest.raises(CodecError, match=r"need 40 bytes at offset 0, have 12"):
        codec_for(spec, 10).decode(bytes(12))
    with pytest.raises(CodecError, match="need 8 bytes"):
        codec_for(spec, 3).decode(bytes(4))


def test_records_are_named_hashable_tuples(spec):
    c = codec_for(spec, 5)
    p = c.decode(struct.pack("<II", 1, 2))
    assert p == (1, 2) and hash(p) == hash((1, 2)) and {p: 1}[(1, 2)] == 1
    assert p._asdict() == {"a": 1, "b": 2} and p._fields == ("a", "b")
    assert p._replace(b=5) == (1, 5) and repr(p) == "pair(a=1, b=2)"
    assert type(p)(1, b=2) == p and type(p)._make([3, 4]) == (3, 4)
    with pytest.raises(CodecError, match="no field 'c'"):
        type(p)(c=1)
    with pytest.raises(AttributeError):
        p.a = 3  # type: ignore[misc]


def test_scalars_bytes_and_special_members(spec):
    misc = codec_for(spec, 21)
    raw = struct.pack("<?7xdQI4s", True, 2.5, 0xDEAD, 9, b"\x00\x01\x00\x02")
    v = misc.decode(raw)
    assert v.ok is True and v.d == 2.5 and v.p == 0xDEAD and v._pad_ == 9
    assert v.raw == b"\x00\x01\x00\x02"                 # u8[] is bytes, NULs kept
    assert misc.encode(v) == raw
    assert misc.encode({"raw": "ab"}).endswith(b"ab\0\0")
    i128 = codec_for(spec, 22)
    assert i128.decode((-5).to_bytes(16, "little", signed=True)) == -5
    assert i128.encode(-5) == (-5).to_bytes(16, "little", signed=True)
    e = codec_for(spec, 6)
    assert e.decode(struct.pack("<I", 2)).name == "GREEN" and e.decode(struct.pack("<I", 7)) == 7
    assert e.encode("BLUE") == struct.pack("<I", 40)


def test_unions_and_anonymous_members(spec):
    h = codec_for(spec, 15)
    v = h.decode(struct.pack("<qI4x", 0x100000005, 9))
    assert v._anon0.x == 5 and v._anon0.y == 0x100000005 and v.z == 9
    assert v.x == 5 and v.y == 0x100000005                  # reachable directly, as in C
    assert h.encode(v) == struct.pack("<qI4x", 0x100000005, 9)
    u = record_class(spec, 14)
    assert codec_for(spec, 14).encode(u(x=7)) == struct.pack("<q", 7)   # zero members skipped
    assert codec_for(spec, 14).encode({"y": -1}) == b"\xff" * 8


def test_arrays_of_records(spec):
    two = codec_for(spec, 27)
    raw = struct.pack("<4I", 1, 2, 3, 4)
    assert two.decode(raw).ps == [(1, 2), (3, 4)] and two.encode(two.decode(raw)) == raw
    assert two.encode({"ps": [(9, 9)]}) == struct.pack("<4I", 9, 9, 0, 0)
    big = codec_for(spec, 17)                                  # 100 records: a sub-codec
    raw = b"".join(struct.pack("<II", i, -i & 0xFFFFFFFF) for i in range(100))
    v = big.decode(raw)
    assert len(v.pairs) == 100 and v.pairs[99] == (99, 2 ** 32 - 99)
    assert big.encode(v) == raw


def test_datasec_and_var(spec):
    sec = codec_for(spec, 25)
    v = sec.decode(struct.pack("<qII", -1, 3, 4))
    assert v.counter == -1 and v.pt == (3, 4)
    assert codec_for(spec, 23).decode(struct.pack("<q", 7)) == 7     # a VAR is its type


def test_decode_many_and_encode_many(spec):
    pair = codec_for(spec, 5)
    raw = b"".join(struct.pack("<II", i, i + 1) for i in range(5000))
    got = pair.decode_many(raw)
    assert len(got) == 5000 and got[4999] == (4999, 5000) and type(got[0]).__name__ == "pair"
    assert pair.encode_many(got) == raw
    padded = b"".join(struct.pack("<II", i, 0) + b"\xee" * 8 for i in range(3))
    assert pair.decode_many(padded, 3, 16) == [(0, 0), (1, 0), (2, 0)]
    u32 = codec_for(spec, 1)
    assert u32.decode_many(struct.pack("<3I", 1, 2, 3)) == [1, 2, 3]
    assert u32.encode_many([1, 2, 3]) == struct.pack("<3I", 1, 2, 3)
    recs = codec_for(spec, 10)
    assert recs.decode_many(_rec_bytes() * 2) == [recs.decode(_rec_bytes())] * 2
    with pytest.raises(CodecError, match="need"):
        pair.decode_many(raw, 5001)
    with pytest.raises(CodecError):
        u32.encode_many([1, "x"])


def test_bytes_codec():
    b = BytesCodec(4)
    assert b.encode(3) == b"\3\0\0\0" and b.encode(b"abcd") == b"abcd"
    assert b.decode_many(b"abcdefgh") == [b"abcd", b"efgh"]
    with pytest.raises(CodecError, match="expected 4 bytes, got 2"):
        b.encode(b"ab")


def test_numpy_dtype(spec):
    np = pytest.importorskip("numpy")
    dt = numpy_dtype(spec, 10)
    assert dt.itemsize == 40 and dt["count"] == np.dtype("<i8") and dt["name"] == np.dtype("S8")
    assert dt["small"].shape == (3,) and dt["p"].names == ("a", "b")
    arr = np.frombuffer(_rec_bytes() * 3, dt)
    assert arr["count"].tolist() == [5] * 3 and arr["p"]["b"].tolist() == [4] * 3
    assert bitfield_values(arr, "sign").tolist() == [-3] * 3
    assert bitfield_values(arr, "flag").tolist() == [1] * 3
    be = numpy_dtype(_spec(">"), 10)
    arr = np.frombuffer(_rec_bytes(">"), be)
    assert arr["in_"][0] == 77 and bitfield_values(arr, "sign")[0] == -3
    assert numpy_dtype(spec, 14).fields["x"][1] == numpy_dtype(spec, 14).fields["y"][1] == 0
    with pytest.raises(CodecError):
        bitfield_values(arr, "count")


def test_type_without_value(spec):
    with pytest.raises(CodecError, match="no value codec"):
        codec_for(_spec(), 0)


@pytest.mark.parametrize("bo", ["<", ">"])
def test_decode_many_column_path_equals_row_by_row(bo):
    """Flat records of aligned numbers decode column by column; the result must be what
    decoding each record alone gives, for every stride and offset, in both byte orders
    (the foreign one takes the row path)."""
    types = [
        Int("unsigned char", 1, N, 0, 8),                                            # 1
        Int("short", 2, S, 0, 16),                                                   # 2
        Int("unsigned int", 4, N, 0, 32),                                            # 3
        Int("long long", 8, S, 0, 64),                                               # 4
        Float("double", 8),                                                          # 5
        # padding between and after members: c@0, s@2, u@4, q@8, d@16, c2@24 (size 32)
        Struct("mixed", 32, (Member("c", 1, 0), Member("s", 2, 16), Member("u", 3, 32),
                             Member("q", 4, 64), Member("d", 5, 128), Member("c2", 1, 192))),
        Struct("one", 4, (Member("u", 3, 0),)),                                      # 7
        Int("_Bool", 1, B, 0, 8),                                                    # 8
        Struct("flagged", 8, (Member("ok", 8, 0), Member("u", 3, 32))),              # 9
    ]
    spec = Spec.parse(marshal(types, byteorder=bo))
    mixed = codec_for(spec, 6)
    rows = [struct.pack(bo + "BxhIqdB7x", i & 0xFF, -i, i * 7, -(i << 33), i / 3, 255 - (i & 0xFF))
            for i in range(3000)]
    for stride, pad in ((32, b""), (40, b"\xab" * 8), (48, b"\xcd" * 16)):
        buf = b"\x99" * 8 + b"".join(r + pad for r in rows)
        got = mixed.decode_many(buf, 3000, stride, 8)
        assert got == [mixed.decode(buf, 8 + i * stride) for i in range(3000)]
        assert type(got[0]) is type(mixed.decode(rows[0])) and got[5].q == -(5 << 33)
    one = codec_for(spec, 7)
    raw = struct.pack(bo + "6I", *range(6))
    assert one.decode_many(raw) == [(i,) for i in range(6)] and one.decode_many(raw)[2].u == 2
    assert one.decode_many(raw, 3, 8) == [(0,), (2,), (4,)]
    # A stride that does not keep a member aligned falls back to rows.
    assert one.decode_many(b"\0" + raw[:12], 2, 6, 1) == [one.decode(b"\0" + raw, 1),
                                                          one.decode(b"\0" + raw, 7)]
    flagged = codec_for(spec, 9)          # bools keep the row path (any non-zero byte is True)
    fb = struct.pack(bo + "B3xI", 2, 9) * 3
    assert flagged.decode_many(fb) == [(True, 9)] * 3


@pytest.mark.parametrize("tid", [1, 3, 5, 6, 10, 14])
def test_exact_decoder_equals_decode(spec, tid):
    """exact_decoder() (what Map.lookup inlines) decodes as decode() does, for scalars,
    flat records, enums, nested/bitfield records and unions."""
    c = codec_for(spec, tid)
    raw = (_rec_bytes() * 2)[:c.size]
    read, make = c.exact_decoder()
    got = read(memoryview(raw)) if make is None else make(read(memoryview(raw)))
    assert got == c.decode(raw) and type(got) is type(c.decode(raw))
    b = BytesCodec(6)
    read, make = b.exact_decoder()
    assert make is None and read(memoryview(b"abcdef")) == b"abcdef"
