"""eBPF opcode constants: instruction classes, sizes, modes, ALU/jump/atomic ops.

An eBPF instruction is 8 bytes::

    u8 code | u4 dst_reg, u4 src_reg | s16 off | s32 imm

``code`` packs the instruction class (low 3 bits) with either
``size | mode`` (load/store classes) or ``op | source`` (ALU/jump classes).
The values below are the kernel UAPI's (``include/uapi/linux/bpf_common.h``
and ``bpf.h``, documented in ``Documentation/bpf/standardization``); they are
part of the stable instruction-set ABI and identical on every architecture.

Two forms are offered:

* :class:`enum.IntEnum` classes (:class:`Class`, :class:`Size`, :class:`Mode`,
  :class:`Source`, :class:`ALUOp`, :class:`JumpOp`, :class:`AtomicOp`) for
  readable code and reprs;
* plain ``int`` module constants (``LD_IMM64``, ``CALL``, masks, pseudo
  source values) for the hot paths of the loader, where enum attribute
  lookups would cost time over 100k-instruction programs.
"""

from __future__ import annotations

import enum

__all__ = [
    "INSN_SIZE", "MAX_REG", "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10",
    "Class", "Size", "Mode", "Source", "ALUOp", "JumpOp", "AtomicOp",
    "CLASS_MASK", "SIZE_MASK", "MODE_MASK", "OP_MASK", "SOURCE_MASK",
    "LD", "LDX", "ST", "STX", "ALU", "JMP", "JMP32", "ALU64",
    "SIZE_W", "SIZE_H", "SIZE_B", "SIZE_DW", "SIZE_BYTES", "SIZE_FOR_BYTES",
    "MODE_IMM", "MODE_ABS", "MODE_IND", "MODE_MEM", "MODE_MEMSX", "MODE_ATOMIC",
    "SRC_K", "SRC_X",
    "LD_IMM64", "CALL", "EXIT", "JA", "GOTOL", "CALLX", "MAY_GOTO",
    "PSEUDO_MAP_FD", "PSEUDO_MAP_VALUE", "PSEUDO_BTF_ID", "PSEUDO_FUNC", "PSEUDO_MAP_IDX",
    "PSEUDO_MAP_IDX_VALUE", "PSEUDO_CALL", "PSEUDO_KFUNC_CALL",
    "ATOMIC_FETCH",
]

INSN_SIZE = 8
"""Bytes per instruction slot; ``ld_imm64`` takes two slots."""

MAX_REG = 11
"""Number of registers: r0..r10 (r10 is the read-only frame pointer)."""

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)


class Class(enum.IntEnum):
    """Instruction class, ``code & 0x07``."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04      # 32-bit arithmetic (``w`` registers)
    JMP = 0x05      # 64-bit compares, call, exit
    JMP32 = 0x06    # 32-bit compares
    ALU64 = 0x07

    @property
    def is_load_store(self) -> bool:
        """True for the four load/store classes (``code`` holds size and mode)."""
        return self <= Class.STX

    @property
    def is_alu(self) -> bool:
        return self in (Class.ALU, Class.ALU64)

    @property
    def is_jump(self) -> bool:
        return self in (Class.JMP, Class.JMP32)


class Size(enum.IntEnum):
    """Access width of a load/store, ``code & 0x18``."""

    W = 0x00    # 4 bytes
    H = 0x08    # 2 bytes
    B = 0x10    # 1 byte
    DW = 0x18   # 8 bytes

    @property
    def nbytes(self) -> int:
        return SIZE_BYTES[self]


class Mode(enum.IntEnum):
    """Addressing mode of a load/store, ``code & 0xe0``."""

    IMM = 0x00      # ld_imm64 (class LD, size DW)
    ABS = 0x20      # legacy packet access, skb[imm]
    IND = 0x40      # legacy packet access, skb[src + imm]
    MEM = 0x60      # *(size *)(reg + off)
    MEMSX = 0x80    # sign-extending load (LDX only, v4)
    ATOMIC = 0xC0   # atomic read-modify-write (STX only); op in imm


class Source(enum.IntEnum):
    """Operand source of ALU/jump instructions, ``code & 0x08``.

    For ``ALUOp.END`` the same bit selects the byte order: ``K`` converts to
    little endian (``le16``/``le32``/``le64``, or ``bswap`` in class ALU64),
    ``X`` to big endian.
    """

    K = 0x00    # use the 32-bit immediate
    X = 0x08    # use src_reg


class ALUOp(enum.IntEnum):
    """ALU operation, ``code & 0xf0`` in classes ALU and ALU64.

    ``off`` refines some of them: ``DIV``/``MOD`` with ``off == 1`` are signed
    (``s/``, ``s%``); ``MOV`` with ``off`` 8/16/32 sign-extends (``movsx``).
    """

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class JumpOp(enum.IntEnum):
    """Jump operation, ``code & 0xf0`` in classes JMP and JMP32."""

    JA = 0x00       # goto; in class JMP32 the target is in imm ("gotol")
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80     # src 0: helper; PSEUDO_CALL: bpf-to-bpf; PSEUDO_KFUNC_CALL: kfunc
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0
    JCOND = 0xE0    # may_goto (src 0)


class AtomicOp(enum.IntEnum):
    """Atomic operation, held in ``imm`` of a ``STX | ATOMIC`` instruction."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1
    CMPXCHG = 0xF1
    LOAD_ACQ = 0x100
    STORE_REL = 0x110


# --- plain-int constants for hot paths ---------------------------------------

CLASS_MASK = 0x07
SIZE_MASK = 0x18
MODE_MASK = 0xE0
OP_MASK = 0xF0
SOURCE_MASK = 0x08

LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)

SIZE_W, SIZE_H, SIZE_B, SIZE_DW = 0x00, 0x08, 0x10, 0x18
SIZE_BYTES = {SIZE_W: 4, SIZE_H: 2, SIZE_B: 1, SIZE_DW: 8}
"""Size bits -> access width in bytes."""
SIZE_FOR_BYTES = {4: SIZE_W, 2: SIZE_H, 1: SIZE_B, 8: SIZE_DW}
"""Access width in bytes -> size bits."""

MODE_IMM, MODE_ABS, MODE_IND, MODE_MEM, MODE_MEMSX, MODE_ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0

SRC_K, SRC_X = 0x00, 0x08

LD_IMM64 = LD | SIZE_DW | MODE_IMM      # 0x18: two-slot 64-bit immediate load
CALL = JMP | 0x80                       # 0x85
EXIT = JMP | 0x90                       # 0x95
JA = JMP | 0x00                         # 0x05: goto pc+off
GOTOL = JMP32 | 0x00                    # 0x06: goto pc+imm (long jump)
CALLX = JMP | 0x80 | SRC_X              # 0x8d: indirect call through a register
MAY_GOTO = JMP | 0xE0                   # 0xe5

ATOMIC_FETCH = 0x01
"""Set in an atomic op to return the old value in the source register."""

# src_reg values of ld_imm64 (BPF_PSEUDO_* in uapi bpf.h).
PSEUDO_MAP_FD = 1           # imm = map fd
PSEUDO_MAP_VALUE = 2        # imm = map fd, second slot imm = offset into value
PSEUDO_BTF_ID = 3           # imm = BTF id of a ksym variable (second slot imm = BTF obj fd)
PSEUDO_FUNC = 4             # imm = relative instruction offset of a subprogram
PSEUDO_MAP_IDX = 5          # imm = index into fd_array
PSEUDO_MAP_IDX_VALUE = 6    # like MAP_VALUE with an fd_array index

# src_reg values of call.
PSEUDO_CALL = 1             # bpf-to-bpf call, imm = relative instruction offset
PSEUDO_KFUNC_CALL = 2       # kernel function, imm = BTF id (off = fd_array index of module BTF)
