"""What a CO-RE relocation resolved to (:class:`Fixup`), and writing it into instructions.

Computing and patching are separate so a tool can show every decision before
(or instead of) changing anything.  Patching follows libbpf's
``bpf_core_patch_insn`` exactly, so the instructions come out byte-identical:

* ``ALU``/``ALU64`` with an immediate source: ``imm`` becomes the value;
* ``LDX``/``ST``/``STX``: ``off`` becomes the value (it must fit in s16); when
  the field's size differs in the target, the access size is changed too –
  allowed for pointers and unsigned integers, otherwise the instruction is
  poisoned ("accesses field incorrectly");
* ``LD_IMM64``: the 64-bit immediate across both slots becomes the value.

Before patching, the instruction must hold the *local* value the compiler put
there (unless the relocation kind makes that value unreliable, e.g. bitfield
offsets and type ids): a mismatch raises :class:`~pybpf.errors.CORERelocationError`.

A poisoned instruction becomes ``call 0xbad2310`` (``call unknown#195896080``
in verifier logs); both slots of an ``LD_IMM64`` are poisoned, so instruction
counts and jump offsets are unchanged.  Only reachable poison makes the
verifier reject the program.
"""

from __future__ import annotations

import struct
from typing import List, Optional, Sequence

import attrs

from ..btf import Spec
from ..btf.ext import COREReloKind
from ..errors import CORERelocationError
from .accessor import KIND_NAMES

__all__ = ["Fixup", "apply_fixups", "patch_insn", "POISON_IMM", "INSN_SIZE"]

INSN_SIZE = 8
POISON_IMM = 0xBAD2310
"""Helper id of the call that replaces a poisoned instruction (195896080, libbpf's "bad relo")."""

# Opcode fields (include/uapi/linux/bpf_common.h).
_CLASS_LD, _CLASS_LDX, _CLASS_ST, _CLASS_STX = 0x00, 0x01, 0x02, 0x03
_CLASS_ALU, _CLASS_JMP, _CLASS_ALU64 = 0x04, 0x05, 0x07
_SRC_X = 0x08
_CALL = _CLASS_JMP | 0x80
_LD_IMM64 = 0x18                     # BPF_LD | BPF_IMM | BPF_DW
_SIZE_BYTES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_BYTES_SIZE = {v: k for k, v in _SIZE_BYTES.items()}
_U64 = (1 << 64) - 1



@attrs.frozen
class Fixup:
    """The outcome of one CO-RE relocation.

    ``insn_index`` counts 8-byte slots from the start of the instruction buffer
    the relocation belongs to (its ELF section).  ``local_value`` is what the
    compiler assumed (checked against the instruction when ``validate``),
    ``target_value`` what the instruction gets.  ``poisoned`` means the
    instruction is replaced by an invalid call; ``reason`` explains, in source
    terms, why a relocation could not be satisfied (also for the existence
    kinds, which then resolve to 0 without poison).  ``path`` is the access in
    source terms (``task_struct.pids[1].pid``).

    ``target_type_id`` / ``target`` / ``target_index`` name the chosen candidate
    (0 / ``None`` / -1 when there is none); ``local_size`` / ``target_size`` are
    the field sizes that decide a memory access's width (0 where not
    applicable); ``size_problem`` says why a differing size cannot be adopted
    (a load/store at this instruction is then poisoned; ALU instructions are not
    affected).
    """
    insn_index: int
    kind: COREReloKind
    local_value: int
    target_value: int
    path: str = ""
    poisoned: bool = False
    reason: str = ""
    validate: bool = True
    local_type_id: int = 0
    target_type_id: int = 0
    target: Optional[Spec] = attrs.field(default=None, eq=False, repr=False)
    target_index: int = -1
    target_type: str = ""
    local_size: int = 0
    target_size: int = 0
    size_problem: str = ""
    relo_index: int = -1
    section: str = ""

    @property
    def new_size(self) -> Optional[int]:
        """The access size (bytes) a load/store at this instruction is changed to, if any."""
        if self.poisoned or self.local_size == self.target_size or self.size_problem:
            return None
        return self.target_size

    def describe(self) -> str:
        """One line for humans, e.g. ``insn 12: byte_off task_struct.pid: 16 -> 2480 [struct
        task_struct [114] of vmlinux]`` or ``insn 9: byte_off poisoned: task.x: field 'x' not
        found in struct task [1] of vmlinux``."""
        head = f"insn {self.insn_index}: {KIND_NAMES[self.kind]}"
        if self.poisoned:
            return f"{head} poisoned: {self.reason}"
        if self.reason:  # unsatisfied but not poisoned (existence checks, type relocations)
            return f"{head}: {self.local_value} -> {self.target_value}: {self.reason}"
        text = f"{head} {self.path}: {self.local_value} -> {self.target_value}"
        if self.new_size is not None:
            text += f", access size {self.local_size} -> {self.target_size}"
        if self.target_type:
            text += f" [{self.target_type}]"
        return text


def _codec(byteorder: str) -> struct.Struct:
    if byteorder in ("<", "little"):
        return struct.Struct("<BBhi")
    if byteorder in (">", "big"):
        return struct.Struct(">BBhi")
    raise ValueError(f"byteorder must be '<'/'little' or '>'/'big', not {byteorder!r}")


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _where(fx: Fixup) -> str:
    sec = f"section {fx.section!r}: " if fx.section else ""
    num = f"relocation #{fx.relo_index} " if fx.relo_index >= 0 else ""
    return f"{sec}{num}({KIND_NAMES[fx.kind]} {fx.path}) at insn {fx.insn_index}"


def _poison(buf: bytearray, pos: int, codec: struct.Struct) -> None:
    codec.pack_into(buf, pos, _CALL, 0, 0, POISON_IMM)


def patch_insn(buf: bytearray, fx: Fixup, byteorder: str) -> Fixup:
    """Write ``fx`` into the instruction buffer ``buf`` (in place).

    Returns the fixup as applied: ``fx`` itself, or a poisoned copy when the
    instruction turns out to be a load/store whose size cannot follow the
    field's new size.  Raises :class:`CORERelocationError` when the instruction
    is not one CO-RE can patch, does not hold the expected local value, or the
    new value does not fit.
    """
    codec = _codec(byteorder)
    pos = fx.insn_index * INSN_SIZE
    if fx.insn_index < 0 or pos + INSN_SIZE > len(buf):
        raise CORERelocationError(f"{_where(fx)}: instruction index outside the "
                                  f"{len(buf) // INSN_SIZE} instructions")
    code, regs, off, imm = codec.unpack_from(buf, pos)
    is_ldimm64 = code == _LD_IMM64
    if is_ldimm64 and pos + 2 * INSN_SIZE > len(buf):
        raise CORERelocationError(f"{_where(fx)}: ld_imm64 without its second half")
    if fx.poisoned:
        if is_ldimm64:
            _poison(buf, pos + INSN_SIZE, codec)
        _poison(buf, pos, codec)
        return fx
    old, new = fx.local_value & _U64, fx.target_value & _U64
    cls = code & 0x07
    if cls in (_CLASS_ALU, _CLASS_ALU64):
        if code & _SRC_X:
            raise CORERelocationError(f"{_where(fx)}: ALU instruction with a register source "
                                      "cannot carry a relocated value")
        if fx.validate and imm & _U64 != old:
            raise CORERelocationError(f"{_where(fx)}: unexpected instruction value {imm}, "
                                      f"expected {fx.local_value}")
        codec.pack_into(buf, pos, code, regs, off, _s32(new))
        return fx
    if cls in (_CLASS_LDX, _CLASS_ST, _CLASS_STX):
        if fx.validate and off & _U64 != old:
            raise CORERelocationError(f"{_where(fx)}: unexpected instruction offset {off}, "
                                      f"expected {fx.local_value}")
        if new > 0x7FFF:
            raise CORERelocationError(f"{_where(fx)}: offset {new} does not fit an instruction's "
                                      "16-bit offset")
        if fx.local_size != fx.target_size and fx.size_problem:
            _poison(buf, pos, codec)
            return attrs.evolve(fx, poisoned=True,
                                reason=f"{fx.path}: accesses field incorrectly: {fx.size_problem}")
        if fx.local_size != fx.target_size:
            have = _SIZE_BYTES.get(code & 0x18)
            if have != fx.local_size:
                raise CORERelocationError(f"{_where(fx)}: unexpected access size {have}, "
                                          f"expected {fx.local_size}")
            size_bits = _BYTES_SIZE.get(fx.target_size)
            if size_bits is None:
                raise CORERelocationError(f"{_where(fx)}: no load/store of {fx.target_size} bytes")
            code = (code & 0xE0) | size_bits | cls
        codec.pack_into(buf, pos, code, regs, new, imm)
        return fx
    if cls == _CLASS_LD:
        c2, regs2, off2, imm2 = codec.unpack_from(buf, pos + INSN_SIZE) if is_ldimm64 else (1, 1, 1, 0)
        src = (regs >> 4) if byteorder in ("<", "little") else (regs & 0x0F)
        if not is_ldimm64 or src != 0 or off != 0 or c2 != 0 or regs2 != 0 or off2 != 0:
            raise CORERelocationError(f"{_where(fx)}: ld_imm64 instruction has an unexpected form")
        value = (imm & 0xFFFFFFFF) | ((imm2 & 0xFFFFFFFF) << 32)
        if fx.validate and value != old:
            raise CORERelocationError(f"{_where(fx)}: unexpected instruction value {value}, "
                                      f"expected {fx.local_value}")
        codec.pack_into(buf, pos, code, regs, off, _s32(new))
        codec.pack_into(buf, pos + INSN_SIZE, c2, regs2, off2, _s32(new >> 32))
        return fx
    raise CORERelocationError(f"{_where(fx)}: cannot relocate instruction with opcode {code:#04x}")


def apply_fixups(insns: bytearray, fixups: Sequence[Fixup], byteorder: str) -> List[Fixup]:
    """Patch every fixup into ``insns`` (in place, in order); returns the fixups as applied.

    ``byteorder`` is the object's: ``"<"``/``"little"`` or ``">"``/``"big"``.
    """
    return [patch_insn(insns, fx, byteorder) for fx in fixups]
