"""Writing CO-RE fixups into instructions (libbpf's bpf_core_patch_insn rules)."""

from __future__ import annotations

import struct

import pytest

from pybpf.btf.ext import COREReloKind as K
from pybpf.core import POISON_IMM, Fixup, apply_fixups, patch_insn
from pybpf.errors import CORERelocationError

POISON = (0x85, 0, 0, POISON_IMM)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0, bo: str = "<") -> bytes:
    regs = (src << 4 | dst) if bo == "<" else (dst << 4 | src)
    return struct.pack(bo + "BBhi", code, regs, off, imm)


def fields(buf: bytes, idx: int, bo: str = "<"):
    return struct.unpack_from(bo + "BBhi", buf, idx * 8)


def fx(kind=K.FIELD_BYTE_OFFSET, local=8, target=16, **kw) -> Fixup:
    return Fixup(insn_index=kw.pop("insn_index", 0), kind=kind, local_value=local,
                 target_value=target, path="s.f", **kw)


@pytest.mark.parametrize("bo", ["<", ">"])
def test_alu_immediate(bo):
    for code in (0xB7, 0x07, 0xB4):  # mov64 imm, add64 imm, mov32 imm
        buf = bytearray(insn(code, dst=3, imm=8, bo=bo))
        patch_insn(buf, fx(), bo)
        assert fields(buf, 0, bo) == fields(insn(code, dst=3, imm=16, bo=bo), 0, bo)


def test_alu_register_source_cannot_be_relocated():
    with pytest.raises(CORERelocationError, match="register source"):
        patch_insn(bytearray(insn(0x0F, dst=1, src=2)), fx(), "<")


def test_alu_value_is_checked_unless_told_not_to():
    with pytest.raises(CORERelocationError, match="unexpected instruction value 9, expected 8"):
        patch_insn(bytearray(insn(0xB7, imm=9)), fx(), "<")
    buf = bytearray(insn(0xB7, imm=9))
    patch_insn(buf, fx(validate=False), "<")
    assert fields(buf, 0)[3] == 16


def test_alu_value_is_compared_as_u64_and_truncated_to_s32():
    buf = bytearray(insn(0xB7, imm=-1))
    patch_insn(buf, fx(kind=K.ENUMVAL_VALUE, local=-1, target=0x1_8000_0001), "<")
    assert fields(buf, 0)[3] == -0x7FFFFFFF  # low 32 bits, as libbpf's int assignment


@pytest.mark.parametrize("code", [0x61, 0x63, 0x62])  # ldx w, stx w, st w
def test_memory_offset(code):
    buf = bytearray(insn(code, dst=1, src=2, off=8, imm=5))
    patch_insn(buf, fx(local_size=4, target_size=4), "<")
    assert fields(buf, 0) == fields(insn(code, dst=1, src=2, off=16, imm=5), 0)


def test_memory_offset_is_checked_and_must_fit_s16():
    with pytest.raises(CORERelocationError, match="unexpected instruction offset 4"):
        patch_insn(bytearray(insn(0x61, off=4)), fx(), "<")
    with pytest.raises(CORERelocationError, match="16-bit offset"):
        patch_insn(bytearray(insn(0x61, off=8)), fx(target=0x8000), "<")


@pytest.mark.parametrize("bo", ["<", ">"])
def test_memory_access_resized(bo):
    buf = bytearray(insn(0x79, dst=2, src=6, off=8, bo=bo))  # r2 = *(u64 *)(r6 + 8)
    done = patch_insn(buf, fx(local_size=8, target_size=2), bo)
    assert done.new_size == 2 and not done.poisoned
    assert fields(buf, 0, bo) == fields(insn(0x69, dst=2, src=6, off=16, bo=bo), 0, bo)


def test_memory_resize_checks_the_current_size_and_the_new_one():
    with pytest.raises(CORERelocationError, match="unexpected access size 4, expected 8"):
        patch_insn(bytearray(insn(0x61, off=8)), fx(local_size=8, target_size=2), "<")
    with pytest.raises(CORERelocationError, match="no load/store of 16 bytes"):
        patch_insn(bytearray(insn(0x79, off=8)), fx(local_size=8, target_size=16), "<")


def test_memory_resize_refused_poisons_but_alu_is_unaffected():
    bad = fx(local_size=8, target_size=4, size_problem="it is long locally but int")
    buf = bytearray(insn(0x79, dst=2, src=6, off=8))
    done = patch_insn(buf, bad, "<")
    assert done.poisoned and done.reason == "s.f: accesses field incorrectly: it is long locally but int"
    assert fields(buf, 0) == POISON
    buf = bytearray(insn(0xB7, imm=8))
    assert patch_insn(buf, bad, "<") is bad and fields(buf, 0)[3] == 16


@pytest.mark.parametrize("bo", ["<", ">"])
def test_ld_imm64(bo):
    buf = bytearray(insn(0x18, dst=1, imm=5, bo=bo) + insn(0, imm=0, bo=bo))
    patch_insn(buf, fx(kind=K.ENUMVAL_VALUE, local=5, target=0x1_0000_0002), bo)
    assert fields(buf, 0, bo) == fields(insn(0x18, dst=1, imm=2, bo=bo), 0, bo)
    assert fields(buf, 1, bo) == (0, 0, 0, 1)


def test_ld_imm64_form_and_value_are_checked():
    good_tail = insn(0)
    with pytest.raises(CORERelocationError, match="unexpected form"):
        patch_insn(bytearray(insn(0x18, src=1, imm=5) + good_tail), fx(local=5), "<")
    with pytest.raises(CORERelocationError, match="unexpected form"):
        patch_insn(bytearray(insn(0x18, imm=5) + insn(0, dst=1)), fx(local=5), "<")
    with pytest.raises(CORERelocationError, match="unexpected instruction value"):
        patch_insn(bytearray(insn(0x18, imm=5) + insn(0, imm=1)), fx(local=5), "<")
    with pytest.raises(CORERelocationError, match="second half"):
        patch_insn(bytearray(insn(0x18, imm=5)), fx(local=5), "<")
    with pytest.raises(CORERelocationError, match="unexpected form"):  # BPF_LD, not imm64
        patch_insn(bytearray(insn(0x20) + good_tail), fx(local=0), "<")


@pytest.mark.parametrize("bo", ["<", ">"])
def test_poison(bo):
    buf = bytearray(insn(0x61, dst=1, src=2, off=8, bo=bo) + insn(0x18, dst=1, imm=3, bo=bo)
                    + insn(0, bo=bo) + insn(0x95, bo=bo))
    apply_fixups(buf, [fx(poisoned=True, insn_index=0), fx(poisoned=True, insn_index=1)], bo)
    assert [fields(buf, i, bo) for i in range(4)] == [POISON, POISON, POISON, (0x95, 0, 0, 0)]


def test_unpatchable_instructions_and_bad_indices():
    with pytest.raises(CORERelocationError, match="opcode 0x05"):
        patch_insn(bytearray(insn(0x05, off=8)), fx(), "<")
    with pytest.raises(CORERelocationError, match="outside the 1 instructions"):
        patch_insn(bytearray(insn(0xB7, imm=8)), fx(insn_index=1), "<")
    with pytest.raises(ValueError):
        patch_insn(bytearray(insn(0xB7, imm=8)), fx(), "middle")


def test_apply_accepts_long_byteorder_names():
    buf = bytearray(insn(0xB7, imm=8, bo=">"))
    apply_fixups(buf, [fx()], "big")
    assert fields(buf, 0, ">")[3] == 16
