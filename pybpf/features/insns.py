"""The tiny programs feature probes load, assembled with :mod:`pybpf.asm`.

Each is a handful of instructions in the host's byte order; none touches
memory it does not own, so the ones the verifier accepts are harmless.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable

from ..asm import Instruction, encode
from ..asm import opcodes as op

__all__ = [
    "program", "mov_imm", "exit_", "call_helper", "call_kfunc", "ld_map_value", "st_dw",
    "RETURN_0", "RETURN_1", "call_and_return", "BOUNDED_LOOP", "ISA_V2", "ISA_V3", "ISA_V4",
    "large_program", "kernel_version_code",
]

_BO = "<" if sys.byteorder == "little" else ">"
_MOV64_IMM = op.ALU64 | 0xB0            # r = imm
_ALU64_SUB_IMM = op.ALU64 | 0x10        # r -= imm
_JNE_IMM = op.JMP | 0x50                # if r != imm goto pc+off
_JLT_IMM = op.JMP | 0xA0                # if r < imm goto pc+off (ISA v2)
_JMP32_JNE_IMM = op.JMP32 | 0x50        # if w != imm goto pc+off (ISA v3)
_MOVSX64 = op.ALU64 | 0xB0 | 0x08       # r = (s8/s16/s32) r (ISA v4, off = 8/16/32)
_ST_DW = op.ST | op.SIZE_DW | op.MODE_MEM


def program(insns: Iterable[Instruction]) -> bytes:
    """Raw instruction bytes for ``BPF_PROG_LOAD``."""
    return encode(insns, _BO)


def mov_imm(reg: int, imm: int) -> Instruction:
    return Instruction(_MOV64_IMM, dst=reg, imm=imm)


def exit_() -> Instruction:
    return Instruction(op.EXIT)


def call_helper(helper_id: int) -> Instruction:
    return Instruction(op.CALL, imm=helper_id)


def call_kfunc(btf_id: int) -> Instruction:
    """A call of the kernel function with vmlinux BTF id ``btf_id``."""
    return Instruction(op.CALL, src=op.PSEUDO_KFUNC_CALL, imm=btf_id)


def ld_map_value(reg: int, map_fd: int, offset: int) -> Instruction:
    """``reg = &map_value[offset]`` of an array map (the global data relocation)."""
    return Instruction(op.LD_IMM64, dst=reg, src=op.PSEUDO_MAP_VALUE,
                       imm=(offset << 32) | (map_fd & 0xFFFFFFFF))


def st_dw(reg: int, off: int, imm: int) -> Instruction:
    """``*(u64 *)(reg + off) = imm``."""
    return Instruction(_ST_DW, dst=reg, off=off, imm=imm)


RETURN_0 = program([mov_imm(0, 0), exit_()])
"""``r0 = 0; exit``: the smallest valid program of every type."""

RETURN_1 = program([mov_imm(0, 1), exit_()])
"""``r0 = 1; exit``: "allow" for cgroup/netfilter/sk_lookup hooks, whose return value the
verifier range-checks per attach type (recvmsg/getpeername hooks must return 1)."""



def call_and_return(helper_id: int) -> bytes:
    """``call helper; r0 = 0; exit``: what helper probes load (arguments left unset)."""
    return program([call_helper(helper_id), mov_imm(0, 0), exit_()])


BOUNDED_LOOP = program([mov_imm(0, 10), Instruction(_ALU64_SUB_IMM, dst=0, imm=1),
                        Instruction(_JNE_IMM, dst=0, off=-2, imm=0), exit_()])
"""A loop the verifier must prove terminates (5.3+)."""

ISA_V2 = program([mov_imm(0, 0), Instruction(_JLT_IMM, dst=0, off=0, imm=1), exit_()])
ISA_V3 = program([mov_imm(0, 0), Instruction(_JMP32_JNE_IMM, dst=0, off=0, imm=1), exit_()])
ISA_V4 = program([mov_imm(0, 0), Instruction(_MOVSX64, dst=0, src=0, off=8), exit_()])


def large_program(n: int = 4096) -> bytes:
    """``n`` moves and an exit: more than the 4096 instructions allowed before 5.2."""
    return program([mov_imm(0, 1)] * n + [exit_()])


def kernel_version_code() -> int:
    """LINUX_VERSION_CODE of the running kernel (kprobe programs needed it before 5.0)."""
    nums = []
    for piece in os.uname().release.split("-", 1)[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        nums.append(int(digits) if digits else 0)
    nums += [0] * (3 - len(nums))
    return (nums[0] << 16) + (nums[1] << 8) + min(nums[2], 255)
