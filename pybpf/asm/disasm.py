"""Disassembler: eBPF instructions as the text the kernel verifier and bpftool print.

The syntax follows the kernel's printer (``kernel/bpf/disasm.c``), which is
what users see in verifier logs and ``bpftool prog dump xlated``::

    r1 = 8                          w2 += w3
    r0 = *(u32 *)(r1 +4)            *(u64 *)(r10 -8) = r1
    if r1 > 0x5 goto pc+3           call bpf_map_lookup_elem#1
    r1 = 0x1122334455667788 ll      r1 = map[fd:4]   r2 = map[fd:4][0]+16

``ld_imm64`` of a plain constant carries llvm-objdump's ``ll`` suffix so that
two-slot loads stand out; map references print the fd (or ``fd_array`` index)
that is in the instruction, which is 0 before the loader has patched it.

Helper names come from ``helper_names`` when given, otherwise from
``pybpf.consts.FuncId`` (``enum bpf_func_id``, generated from kernel BTF)
when that module provides it; unknown helpers print as ``unknown#N``.
Formatting never raises: an invalid opcode prints as ``invalid opcode 0x..``.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Mapping, Optional, Union

from . import opcodes as op
from .insn import Instruction, InsnBuffer, decode

__all__ = ["format_insn", "disassemble"]

HelperNames = Union[Mapping[int, str], Callable[[int], Optional[str]]]

_ALU_OPS = {
    0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=", 0x60: "<<=",
    0x70: ">>=", 0x90: "%=", 0xA0: "^=", 0xB0: "=", 0xC0: "s>>=",
}
_SIGNED_ALU_OPS = {0x30: "s/=", 0x90: "s%="}
_JMP_OPS = {
    0x10: "==", 0x20: ">", 0x30: ">=", 0x40: "&", 0x50: "!=", 0x60: "s>", 0x70: "s>=",
    0xA0: "<", 0xB0: "<=", 0xC0: "s<", 0xD0: "s<=",
}
_ATOMIC_OPS = {0x00: ("+=", "add"), 0x40: ("|=", "or"), 0x50: ("&=", "and"), 0xA0: ("^=", "xor")}
_UNSIGNED = {op.SIZE_B: "u8", op.SIZE_H: "u16", op.SIZE_W: "u32", op.SIZE_DW: "u64"}
_SIGNED = {op.SIZE_B: "s8", op.SIZE_H: "s16", op.SIZE_W: "s32", op.SIZE_DW: "s64"}

_default_helpers: Optional[Dict[int, str]] = None


def _default_helper_names() -> Dict[int, str]:
    """``{id: "bpf_<name>"}`` from ``pybpf.consts.FuncId`` if it exists, else empty; cached."""
    global _default_helpers
    if _default_helpers is None:
        names: Dict[int, str] = {}
        try:
            from .. import consts  # type: ignore[attr-defined]
            func_id = getattr(consts, "FuncId", None)
        except ImportError:
            func_id = None
        if func_id is not None:
            for member in func_id:
                n = member.name.lower()
                if n.startswith("bpf_func_"):
                    n = n[len("bpf_func_"):]
                names[int(member)] = n if n.startswith("bpf_") else "bpf_" + n
        _default_helpers = names
    return _default_helpers


def _helper_name(imm: int, helper_names: Optional[HelperNames]) -> str:
    if helper_names is None:
        name = _default_helper_names().get(imm)
    elif callable(helper_names):
        name = helper_names(imm)
    else:
        name = helper_names.get(imm)
    return name or "unknown"


def _mem(size_bits: int, reg: int, off: int, signed: bool = False) -> str:
    t = (_SIGNED if signed else _UNSIGNED)[size_bits]
    return f"*({t} *)(r{reg} {off:+d})"


def format_insn(insn: Instruction, *, helper_names: Optional[HelperNames] = None) -> str:
    """One instruction as verifier-log style text (``r0 = *(u32 *)(r1 +4)``).

    ``helper_names`` maps helper ids to names (a mapping or a function);
    ``insn`` must be a whole instruction (``ld_imm64`` with its 64-bit imm,
    as :func:`~pybpf.asm.decode` and :meth:`InsnBuffer.get` return them).
    """
    code, dst, src, off, imm = insn.opcode, insn.dst, insn.src, insn.off, insn.imm
    cls = code & op.CLASS_MASK
    try:
        if cls == op.ALU or cls == op.ALU64:
            return _format_alu(code, cls, dst, src, off, imm)
        if cls == op.JMP or cls == op.JMP32:
            return _format_jmp(code, cls, dst, src, off, imm, helper_names)
        if cls == op.LDX:
            mode = code & op.MODE_MASK
            if mode == op.MODE_MEM or mode == op.MODE_MEMSX:
                return f"r{dst} = {_mem(code & op.SIZE_MASK, src, off, mode == op.MODE_MEMSX)}"
        elif cls == op.STX:
            mode = code & op.MODE_MASK
            if mode == op.MODE_MEM:
                return f"{_mem(code & op.SIZE_MASK, dst, off)} = r{src}"
            if mode == op.MODE_ATOMIC:
                return _format_atomic(code, dst, src, off, imm)
        elif cls == op.ST:
            if code & op.MODE_MASK == op.MODE_MEM:
                return f"{_mem(code & op.SIZE_MASK, dst, off)} = {imm}"
        else:  # LD
            return _format_ld(code, dst, src, imm)
    except KeyError:
        pass
    return f"invalid opcode {code:#04x}"


def _format_alu(code: int, cls: int, dst: int, src: int, off: int, imm: int) -> str:
    r = "r" if cls == op.ALU64 else "w"
    o = code & op.OP_MASK
    from_reg = code & op.SOURCE_MASK == op.SRC_X
    if o == 0x80:  # NEG
        return f"{r}{dst} = -{r}{dst}"
    if o == 0xD0:  # END: byte swap
        if cls == op.ALU64:
            return f"r{dst} = bswap{imm} r{dst}"
        return f"r{dst} = {'be' if from_reg else 'le'}{imm} r{dst}"
    if o == 0xB0 and from_reg and off:  # MOV variants
        if cls == op.ALU64 and off == 1:
            return f"r{dst} = addr_space_cast(r{src}, {imm >> 16 & 0xFFFF}, {imm & 0xFFFF})"
        return f"{r}{dst} = (s{off}){r}{src}"
    sym = _SIGNED_ALU_OPS[o] if off == 1 and o in _SIGNED_ALU_OPS else _ALU_OPS[o]
    operand = f"{r}{src}" if from_reg else str(imm)
    return f"{r}{dst} {sym} {operand}"


def _format_jmp(code: int, cls: int, dst: int, src: int, off: int, imm: int,
                helper_names: Optional[HelperNames]) -> str:
    o = code & op.OP_MASK
    if cls == op.JMP:
        if code == op.CALL:
            if src == op.PSEUDO_CALL:
                return f"call pc{imm:+d}"
            if src == op.PSEUDO_KFUNC_CALL:
                return f"call kfunc#{imm}"
            return f"call {_helper_name(imm, helper_names)}#{imm}"
        if code == op.CALLX:
            return f"callx r{dst}"
        if code == op.EXIT:
            return "exit"
        if code == op.JA:
            return f"goto pc{off:+d}"
        if code == op.MAY_GOTO:
            return f"may_goto pc{off:+d}"
    elif code == op.GOTOL:
        return f"gotol pc{imm:+d}"
    sym = _JMP_OPS[o]
    r = "r" if cls == op.JMP else "w"
    rhs = f"{r}{src}" if code & op.SOURCE_MASK == op.SRC_X else f"{imm & 0xFFFFFFFF:#x}"
    return f"if {r}{dst} {sym} {rhs} goto pc{off:+d}"


def _format_atomic(code: int, dst: int, src: int, off: int, imm: int) -> str:
    size = code & op.SIZE_MASK
    t = _UNSIGNED[size]
    addr = f"({t} *)(r{dst} {off:+d})"
    bits = "64" if size == op.SIZE_DW else ""
    if imm in _ATOMIC_OPS:
        return f"lock *{addr} {_ATOMIC_OPS[imm][0]} r{src}"
    if imm & ~op.ATOMIC_FETCH in _ATOMIC_OPS and imm & op.ATOMIC_FETCH:
        return f"r{src} = atomic{bits}_fetch_{_ATOMIC_OPS[imm & ~op.ATOMIC_FETCH][1]}({addr}, r{src})"
    if imm == op.AtomicOp.XCHG:
        return f"r{src} = atomic{bits}_xchg({addr}, r{src})"
    if imm == op.AtomicOp.CMPXCHG:
        return f"r0 = atomic{bits}_cmpxchg({addr}, r0, r{src})"
    if imm == op.AtomicOp.LOAD_ACQ:
        return f"r{dst} = load_acquire(({t} *)(r{src} {off:+d}))"
    if imm == op.AtomicOp.STORE_REL:
        return f"store_release({addr}, r{src})"
    raise KeyError(imm)


def _format_ld(code: int, dst: int, src: int, imm: int) -> str:
    mode = code & op.MODE_MASK
    size = code & op.SIZE_MASK
    if code == op.LD_IMM64:
        lo, hi = imm & 0xFFFFFFFF, imm >> 32
        if src == op.PSEUDO_MAP_FD:
            return f"r{dst} = map[fd:{lo}]"
        if src == op.PSEUDO_MAP_VALUE:
            return f"r{dst} = map[fd:{lo}][0]+{hi}"
        if src == op.PSEUDO_MAP_IDX:
            return f"r{dst} = map[idx:{lo}]"
        if src == op.PSEUDO_MAP_IDX_VALUE:
            return f"r{dst} = map[idx:{lo}][0]+{hi}"
        if src == op.PSEUDO_BTF_ID:
            return f"r{dst} = btf_id[{lo}]"
        if src == op.PSEUDO_FUNC:
            return f"r{dst} = func pc{lo - (1 << 32) if lo > 0x7FFFFFFF else lo:+d}"
        return f"r{dst} = {imm:#x} ll"
    if mode == op.MODE_ABS:
        return f"r0 = *({_UNSIGNED[size]} *)skb[{imm}]"
    if mode == op.MODE_IND:
        return f"r0 = *({_UNSIGNED[size]} *)skb[r{src} + {imm}]"
    raise KeyError(code)


def disassemble(program: Union[InsnBuffer, bytes, bytearray, Iterable[Instruction]],
                byteorder: str = "<", *, helper_names: Optional[HelperNames] = None) -> List[str]:
    """Disassemble a program into lines ``"%4d: text"`` numbered by slot.

    ``program`` is an :class:`InsnBuffer`, raw bytes (in ``byteorder``) or
    decoded instructions.  Slot numbers skip the second half of a
    ``ld_imm64``, as in ``bpftool prog dump`` and jump offsets.
    """
    if isinstance(program, InsnBuffer):
        insns: Iterable[Instruction] = program.decode()
    elif isinstance(program, (bytes, bytearray, memoryview)):
        insns = decode(program, byteorder)
    else:
        insns = program
    lines: List[str] = []
    slot = 0
    for insn in insns:
        lines.append(f"{slot:4d}: {format_insn(insn, helper_names=helper_names)}")
        slot += insn.slots
    return lines
