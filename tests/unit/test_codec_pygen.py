"""pybpf.btf.pygen: generated Python classes decode and encode like the codecs."""

from __future__ import annotations

import struct
import sys
import types

import pytest

from pybpf.btf import Spec
from pybpf.btf.codec import CodecError, codec_for
from pybpf.btf.marshal import marshal
from pybpf.btf.pygen import generate
from tests.unit.test_codec import TYPES, _rec_bytes, _spec


def _load(src: str, name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    sys.modules[name] = mod        # dataclasses looks the module up
    try:
        exec(compile(src, f"<{name}>", "exec"), mod.__dict__)
    finally:
        del sys.modules[name]
    return mod


@pytest.mark.parametrize("bo", ["<", ">"])
def test_generated_struct_matches_codec(bo):
    spec = _spec(bo)
    mod = _load(generate(spec, ["rec"]), f"gen_rec_{bo == '<'}")
    assert mod.__all__ == ["color", "pair", "rec"]           # dependencies first
    raw = _rec_bytes(bo)
    r = mod.rec.from_bytes(raw)
    assert r.color is mod.color.BLUE and r.name == "hello" and r.p == mod.pair(3, 4)
    assert (r.small, r.sign, r.flag, r.in_) == ([1, 2, 3], -3, 1, 77)
    assert r.to_bytes() == raw == codec_for(spec, 10).encode(codec_for(spec, 10).decode(raw))
    assert mod.rec.SIZE == 40 and mod.rec().to_bytes() == bytes(40)
    assert mod.rec(count=2, name="x").to_bytes() == codec_for(spec, 10).encode({"count": 2, "name": "x"})


def test_generated_unions_arrays_sections_and_typedefs():
    spec = _spec()
    src = generate(spec, ["holder", "big", "misc", ".bss", "two"])
    with pytest.raises(CodecError, match="typedef __u8 is not a struct"):
        generate(spec, ["__u8"])
    mod = _load(src, "gen_misc")
    h = mod.holder.from_bytes(struct.pack("<qI4x", 0x100000005, 9))
    assert h._anon0.x == 5 and h._anon0.y == 0x100000005 and h.z == 9
    assert h.to_bytes() == struct.pack("<qI4x", 0x100000005, 9)
    assert mod.u(x=7).to_bytes() == struct.pack("<q", 7)
    raw = b"".join(struct.pack("<II", i, i) for i in range(100))
    assert mod.big.from_bytes(raw).pairs[42] == mod.pair(42, 42) and mod.big.from_bytes(raw).to_bytes() == raw
    assert mod.bss.from_bytes(struct.pack("<qII", -1, 3, 4)) == mod.bss(-1, mod.pair(3, 4))
    m = mod.misc(ok=True, d=1.5, raw=b"ab")
    assert codec_for(spec, 21).decode(m.to_bytes()) == (True, 1.5, 0, 0, b"ab\0\0")
    assert mod.two(ps=[mod.pair(1, 2), mod.pair(3, 4)]).to_bytes() == struct.pack("<4I", 1, 2, 3, 4)


def test_generate_everything_and_names():
    spec = Spec.parse(marshal(TYPES))
    src = generate(spec, None)
    mod = _load(src, "gen_all")
    for name in ("pair", "color", "rec", "u", "holder", "big", "misc", "bss", "two"):
        assert name in mod.__all__
    assert "_pad_" in src                                      # __pad: no name mangling
    with pytest.raises(CodecError, match="no struct, union"):
        generate(spec, ["missing"])
    assert "enum color" in generate(spec, ["enum color"])
