"""eBPF instructions: decode, encode and patch in place, in either byte order.

Two representations, for two jobs:

:class:`Instruction`
    An immutable value: ``opcode, dst, src, off, imm``.  A ``ld_imm64``
    (two 8-byte slots on the wire) is *one* :class:`Instruction` whose ``imm``
    holds the whole 64-bit immediate (as an unsigned bit pattern) and whose
    :attr:`~Instruction.slots` is 2.  :func:`decode` returns these; they suit
    disassembly, tests and building programs by hand.

:class:`InsnBuffer`
    A mutable ``bytearray`` of raw slots, indexed by *slot* (``i`` is the
    instruction at byte ``8*i``), exactly as jump offsets, ``.BTF.ext``
    records, ELF relocations and the verifier count them.  The loader keeps
    programs in this form and patches them in place (map fds, subprogram call
    offsets, CO-RE offsets, memory access sizes) without decoding the whole
    program into objects: a 100k-instruction program stays one buffer.

Both byte orders are supported: a buffer remembers the order its bytes are in
(``"<"``: ``bpfel``, ``">"``: ``bpfeb``) and :meth:`InsnBuffer.encode`
converts on the way out.  On the wire the register byte holds ``dst`` in the
low nibble on little-endian and in the high nibble on big-endian targets.

Malformed input bytes raise :class:`pybpf.errors.ParseError`; a bad argument
(out-of-range register, offset too wide) is a caller bug and raises
``ValueError``; a slot index outside the buffer raises ``IndexError``.
"""

from __future__ import annotations

import struct
from typing import Iterable, Iterator, List, Optional, Tuple, Union

import attrs

from ..errors import ParseError
from . import opcodes as op

__all__ = ["Instruction", "InsnBuffer", "decode", "encode", "normalize_byteorder"]

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF

_SLOT = {"<": struct.Struct("<BBhi"), ">": struct.Struct(">BBhi")}
_OFF = {"<": struct.Struct("<h"), ">": struct.Struct(">h")}
_IMM = {"<": struct.Struct("<i"), ">": struct.Struct(">i")}

# Swap the two nibbles of the register byte (dst/src positions differ by byte order).
_NIBBLE_SWAP = bytes(((b & 0x0F) << 4) | (b >> 4) for b in range(256))

_BYTEORDERS = {"<": "<", "little": "<", "bpfel": "<", ">": ">", "big": ">", "bpfeb": ">"}

BufferLike = Union[bytes, bytearray, memoryview]


def normalize_byteorder(byteorder: str) -> str:
    """Return ``"<"`` or ``">"`` for ``"<"``/``"little"``/``"bpfel"`` or ``">"``/``"big"``/``"bpfeb"``."""
    try:
        return _BYTEORDERS[byteorder]
    except (KeyError, TypeError):
        raise ValueError(f"unknown byte order {byteorder!r}: use '<', '>', 'little' or 'big'") from None


def _s32(v: int) -> int:
    """Wrap an int given as signed or unsigned 32-bit to the signed value stored on the wire."""
    if not -0x80000000 <= v <= _M32:
        raise ValueError(f"immediate {v} does not fit in 32 bits")
    return v - 0x100000000 if v > 0x7FFFFFFF else v


def _check_regs(dst: int, src: int) -> None:
    if not (0 <= dst <= 15 and 0 <= src <= 15):
        raise ValueError(f"register numbers must be 0..15 (got dst={dst}, src={src})")


def _check_off(off: int) -> None:
    if not -0x8000 <= off <= 0x7FFF:
        raise ValueError(f"offset {off} does not fit in a signed 16-bit field")


@attrs.frozen(slots=True, repr=False)
class Instruction:
    """One eBPF instruction (a ``ld_imm64`` counts as one, spanning two slots).

    ``imm`` is the signed 32-bit immediate, except for ``ld_imm64`` where it
    is the full 64-bit immediate as an unsigned bit pattern (low half from the
    first slot, high half from the second).  The fields are not range-checked
    on construction (so decoding stays cheap); :meth:`encode` checks them.
    """

    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    # --- structure ------------------------------------------------------

    @property
    def cls(self) -> int:
        """Instruction class (``opcode & 0x07``, see :class:`~pybpf.asm.opcodes.Class`)."""
        return self.opcode & op.CLASS_MASK

    @property
    def slots(self) -> int:
        """Number of 8-byte slots the instruction takes: 2 for ``ld_imm64``, else 1."""
        return 2 if self.opcode == op.LD_IMM64 else 1

    @property
    def is_ldimm64(self) -> bool:
        return self.opcode == op.LD_IMM64

    @property
    def is_call(self) -> bool:
        """Any ``call``: helper, bpf-to-bpf or kfunc (not ``callx``)."""
        return self.opcode == op.CALL

    @property
    def is_helper_call(self) -> bool:
        return self.opcode == op.CALL and self.src == 0

    @property
    def is_pseudo_call(self) -> bool:
        """A bpf-to-bpf call (``src == BPF_PSEUDO_CALL``); ``imm`` is the relative target."""
        return self.opcode == op.CALL and self.src == op.PSEUDO_CALL

    @property
    def is_kfunc_call(self) -> bool:
        return self.opcode == op.CALL and self.src == op.PSEUDO_KFUNC_CALL

    @property
    def is_pseudo_func(self) -> bool:
        """A ``ld_imm64`` of a subprogram address (callbacks); ``imm`` is the relative target."""
        return self.opcode == op.LD_IMM64 and self.src == op.PSEUDO_FUNC

    @property
    def is_exit(self) -> bool:
        return self.opcode == op.EXIT

    @property
    def is_jump(self) -> bool:
        """A branch (``goto``, ``gotol``, conditional jumps, ``may_goto``); not call/exit."""
        c = self.opcode & op.CLASS_MASK
        if c != op.JMP and c != op.JMP32:
            return False
        o = self.opcode & op.OP_MASK
        return o != 0x80 and o != 0x90

    @property
    def is_ldx(self) -> bool:
        """A memory load ``dst = *(size *)(src + off)`` (plain or sign-extending)."""
        c = self.opcode
        return c & op.CLASS_MASK == op.LDX and c & op.MODE_MASK in (op.MODE_MEM, op.MODE_MEMSX)

    @property
    def is_stx(self) -> bool:
        """A memory store from a register ``*(size *)(dst + off) = src`` (not atomic)."""
        c = self.opcode
        return c & op.CLASS_MASK == op.STX and c & op.MODE_MASK == op.MODE_MEM

    @property
    def is_st(self) -> bool:
        """A memory store of an immediate ``*(size *)(dst + off) = imm``."""
        c = self.opcode
        return c & op.CLASS_MASK == op.ST and c & op.MODE_MASK == op.MODE_MEM

    @property
    def is_atomic(self) -> bool:
        c = self.opcode
        return c & op.CLASS_MASK == op.STX and c & op.MODE_MASK == op.MODE_ATOMIC

    @property
    def mem_size(self) -> Optional[int]:
        """Access width in bytes of a load/store/atomic, ``None`` for other instructions."""
        if self.is_ldx or self.is_stx or self.is_st or self.is_atomic:
            return op.SIZE_BYTES[self.opcode & op.SIZE_MASK]
        return None

    # --- conversion -----------------------------------------------------

    def replace(self, **changes: int) -> "Instruction":
        """A copy with some fields changed (``insn.replace(imm=5)``)."""
        return attrs.evolve(self, **changes)

    def encode(self, byteorder: str = "<") -> bytes:
        """The instruction's 8 (or 16, for ``ld_imm64``) wire bytes."""
        bo = normalize_byteorder(byteorder)
        return _encode_one(self, bo, _SLOT[bo])

    def __repr__(self) -> str:
        return (f"Instruction(opcode={self.opcode:#04x}, dst={self.dst}, src={self.src}, "
                f"off={self.off}, imm={self.imm})")

    def __str__(self) -> str:
        from .disasm import format_insn
        return format_insn(self)


def _encode_one(insn: Instruction, bo: str, slot: struct.Struct) -> bytes:
    code, dst, src, off = insn.opcode, insn.dst, insn.src, insn.off
    if not 0 <= code <= 0xFF:
        raise ValueError(f"opcode {code} does not fit in 8 bits")
    _check_regs(dst, src)
    _check_off(off)
    regs = (dst << 4) | src if bo == ">" else (src << 4) | dst
    if code == op.LD_IMM64:
        imm = insn.imm
        if not -(1 << 63) <= imm <= _M64:
            raise ValueError(f"immediate {imm} does not fit in 64 bits")
        imm &= _M64
        return slot.pack(code, regs, off, _s32(imm & _M32)) + slot.pack(0, 0, 0, _s32(imm >> 32))
    return slot.pack(code, regs, off, _s32(insn.imm))


def decode(data: BufferLike, byteorder: str = "<") -> List[Instruction]:
    """Decode raw instruction bytes into :class:`Instruction` values.

    ``ld_imm64`` pairs become one instruction, so list positions are *not*
    slot numbers; sum :attr:`Instruction.slots` to get them.  Raises
    :class:`~pybpf.errors.ParseError` when the length is not a multiple of 8,
    a ``ld_imm64`` is cut off at the end, or its second slot is not the
    all-zero pseudo instruction the ISA requires.
    """
    bo = normalize_byteorder(byteorder)
    if len(data) % op.INSN_SIZE:
        raise ParseError(f"instruction data is {len(data)} bytes, not a multiple of {op.INSN_SIZE}")
    be = bo == ">"
    out: List[Instruction] = []
    append = out.append
    rows = _SLOT[bo].iter_unpack(data)
    i = 0
    for code, regs, off, imm in rows:
        if be:
            dst, src = regs >> 4, regs & 0x0F
        else:
            dst, src = regs & 0x0F, regs >> 4
        if code == op.LD_IMM64:
            second = next(rows, None)
            if second is None:
                raise ParseError("ld_imm64 truncated: its second slot is missing", offset=i * 8)
            code2, regs2, off2, imm2 = second
            if code2 or regs2 or off2:
                raise ParseError(f"malformed ld_imm64: second slot has code={code2:#x} regs={regs2:#x} "
                                 f"off={off2} (must be 0)", offset=(i + 1) * 8)
            append(Instruction(code, dst, src, off, (imm & _M32) | ((imm2 & _M32) << 32)))
            i += 2
        else:
            append(Instruction(code, dst, src, off, imm))
            i += 1
    return out


def encode(insns: Iterable[Instruction], byteorder: str = "<") -> bytes:
    """Encode instructions to wire bytes in ``byteorder``."""
    bo = normalize_byteorder(byteorder)
    slot = _SLOT[bo]
    return b"".join(_encode_one(insn, bo, slot) for insn in insns)


def _swap_byteorder(data: BufferLike) -> bytearray:
    """Convert raw slots between byte orders with C-speed strided slice copies."""
    out = bytearray(len(data))
    out[0::8] = data[0::8]
    out[1::8] = bytes(data[1::8]).translate(_NIBBLE_SWAP)
    out[2::8] = data[3::8]
    out[3::8] = data[2::8]
    out[4::8] = data[7::8]
    out[5::8] = data[6::8]
    out[6::8] = data[5::8]
    out[7::8] = data[4::8]
    return out


class InsnBuffer:
    """A mutable, slot-indexed program: raw instruction bytes plus their byte order.

    ``InsnBuffer(bytearray_obj, "<")`` *wraps* the bytearray (no copy), so a
    loader can patch ``ProgramSpec.insns`` in place; any other buffer type is
    copied.  Index ``i`` always names the slot at byte ``8*i``; the second
    slot of a ``ld_imm64`` is a slot of its own (opcode 0), as in jump
    offsets and ``.BTF.ext`` instruction offsets.

    Getters and setters work on single fields so the loader never builds
    objects for instructions it does not touch.
    """

    __slots__ = ("data", "byteorder", "_slot", "_off", "_imm", "_be")

    def __init__(self, data: BufferLike = b"", byteorder: str = "<"):
        bo = normalize_byteorder(byteorder)
        buf = data if isinstance(data, bytearray) else bytearray(data)
        if len(buf) % op.INSN_SIZE:
            raise ParseError(f"instruction data is {len(buf)} bytes, not a multiple of {op.INSN_SIZE}")
        self.data = buf
        """The raw slots, in :attr:`byteorder`."""
        self.byteorder = bo
        """``"<"`` or ``">"``: the byte order of :attr:`data`."""
        self._slot = _SLOT[bo]
        self._off = _OFF[bo]
        self._imm = _IMM[bo]
        self._be = bo == ">"

    @classmethod
    def from_instructions(cls, insns: Iterable[Instruction], byteorder: str = "<") -> "InsnBuffer":
        """Build a buffer from :class:`Instruction` values."""
        return cls(bytearray(encode(insns, byteorder)), byteorder)

    # --- container protocol ---------------------------------------------

    def __len__(self) -> int:
        """Number of 8-byte slots."""
        return len(self.data) >> 3

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InsnBuffer):
            return NotImplemented
        if self.byteorder == other.byteorder:
            return self.data == other.data
        return self.data == _swap_byteorder(other.data)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"InsnBuffer({len(self)} slots, byteorder={self.byteorder!r})"

    def _pos(self, i: int) -> int:
        if i < 0 or (i << 3) >= len(self.data):
            raise IndexError(f"instruction {i} out of range (program has {len(self)} slots)")
        return i << 3

    # --- field getters --------------------------------------------------

    def opcode(self, i: int) -> int:
        return self.data[self._pos(i)]

    def dst(self, i: int) -> int:
        r = self.data[self._pos(i) + 1]
        return r >> 4 if self._be else r & 0x0F

    def src(self, i: int) -> int:
        r = self.data[self._pos(i) + 1]
        return r & 0x0F if self._be else r >> 4

    def off(self, i: int) -> int:
        return self._off.unpack_from(self.data, self._pos(i) + 2)[0]

    def imm(self, i: int) -> int:
        """The signed 32-bit ``imm`` of slot ``i`` (half of the value for a ``ld_imm64``)."""
        return self._imm.unpack_from(self.data, self._pos(i) + 4)[0]

    def imm64(self, i: int) -> int:
        """The 64-bit immediate (unsigned) of the ``ld_imm64`` starting at slot ``i``."""
        self._require_ldimm64(i)
        lo = self._imm.unpack_from(self.data, (i << 3) + 4)[0]
        hi = self._imm.unpack_from(self.data, (i << 3) + 12)[0]
        return (lo & _M32) | ((hi & _M32) << 32)

    def raw(self, i: int) -> Instruction:
        """Slot ``i`` decoded on its own (a ``ld_imm64`` half keeps its 32-bit ``imm``)."""
        code, regs, off, imm = self._slot.unpack_from(self.data, self._pos(i))
        if self._be:
            return Instruction(code, regs >> 4, regs & 0x0F, off, imm)
        return Instruction(code, regs & 0x0F, regs >> 4, off, imm)

    def get(self, i: int) -> Instruction:
        """The instruction at slot ``i``; a ``ld_imm64`` comes back whole, with a 64-bit ``imm``."""
        insn = self.raw(i)
        if insn.opcode == op.LD_IMM64:
            return attrs.evolve(insn, imm=self.imm64(i))
        return insn

    def instructions(self) -> Iterator[Tuple[int, Instruction]]:
        """Yield ``(slot, instruction)`` for each instruction, ``ld_imm64`` pairs merged."""
        n = len(self)
        i = 0
        while i < n:
            insn = self.get(i)
            yield i, insn
            i += 2 if insn.opcode == op.LD_IMM64 else 1

    def opcodes(self) -> bytes:
        """All opcode bytes, one per slot: a fast way to scan for ``0x85`` (call) and friends."""
        return bytes(self.data[0::8])

    def indices(self, opcode: int) -> List[int]:
        """Slots whose opcode byte is ``opcode`` (e.g. ``LD_IMM64`` or ``CALL``), in order.

        The second half of a ``ld_imm64`` has opcode 0, which is not a valid
        instruction, so it never matches a real opcode.
        """
        codes = self.data[0::8]
        needle = bytes((opcode,))
        out: List[int] = []
        pos = codes.find(needle)
        while pos >= 0:
            out.append(pos)
            pos = codes.find(needle, pos + 1)
        return out

    # --- predicates -----------------------------------------------------

    def is_ldimm64(self, i: int) -> bool:
        return self.data[self._pos(i)] == op.LD_IMM64

    def is_call(self, i: int) -> bool:
        """Any ``call``: helper, bpf-to-bpf or kfunc."""
        return self.data[self._pos(i)] == op.CALL

    def is_helper_call(self, i: int) -> bool:
        return self.data[self._pos(i)] == op.CALL and self.src(i) == 0

    def is_pseudo_call(self, i: int) -> bool:
        """A bpf-to-bpf call; its target slot is :meth:`call_target`."""
        return self.data[self._pos(i)] == op.CALL and self.src(i) == op.PSEUDO_CALL

    def is_kfunc_call(self, i: int) -> bool:
        return self.data[self._pos(i)] == op.CALL and self.src(i) == op.PSEUDO_KFUNC_CALL

    def is_pseudo_func(self, i: int) -> bool:
        """A ``ld_imm64`` loading a subprogram's address (callback argument)."""
        return self.data[self._pos(i)] == op.LD_IMM64 and self.src(i) == op.PSEUDO_FUNC

    def is_exit(self, i: int) -> bool:
        return self.data[self._pos(i)] == op.EXIT

    def is_jump(self, i: int) -> bool:
        """A branch (``goto``/``gotol``/conditional/``may_goto``), not call or exit."""
        c = self.data[self._pos(i)]
        cls = c & op.CLASS_MASK
        if cls != op.JMP and cls != op.JMP32:
            return False
        o = c & op.OP_MASK
        return o != 0x80 and o != 0x90

    def is_ldx(self, i: int) -> bool:
        c = self.data[self._pos(i)]
        return c & op.CLASS_MASK == op.LDX and c & op.MODE_MASK in (op.MODE_MEM, op.MODE_MEMSX)

    def is_stx(self, i: int) -> bool:
        """A register store (``STX | MEM``); atomics are :meth:`is_atomic`."""
        c = self.data[self._pos(i)]
        return c & op.CLASS_MASK == op.STX and c & op.MODE_MASK == op.MODE_MEM

    def is_st(self, i: int) -> bool:
        c = self.data[self._pos(i)]
        return c & op.CLASS_MASK == op.ST and c & op.MODE_MASK == op.MODE_MEM

    def is_atomic(self, i: int) -> bool:
        c = self.data[self._pos(i)]
        return c & op.CLASS_MASK == op.STX and c & op.MODE_MASK == op.MODE_ATOMIC

    def is_mem(self, i: int) -> bool:
        """A load or store whose width :meth:`size_of_mem` can report and CO-RE may adjust."""
        return self.is_ldx(i) or self.is_stx(i) or self.is_st(i)

    # --- setters --------------------------------------------------------

    def set_opcode(self, i: int, code: int) -> None:
        if not 0 <= code <= 0xFF:
            raise ValueError(f"opcode {code} does not fit in 8 bits")
        self.data[self._pos(i)] = code

    def set_dst(self, i: int, reg: int) -> None:
        p = self._pos(i) + 1
        _check_regs(reg, 0)
        r = self.data[p]
        self.data[p] = (reg << 4) | (r & 0x0F) if self._be else (r & 0xF0) | reg

    def set_src(self, i: int, reg: int) -> None:
        p = self._pos(i) + 1
        _check_regs(0, reg)
        r = self.data[p]
        self.data[p] = (r & 0xF0) | reg if self._be else (reg << 4) | (r & 0x0F)

    def set_off(self, i: int, off: int) -> None:
        p = self._pos(i) + 2
        _check_off(off)
        self._off.pack_into(self.data, p, off)

    def set_imm(self, i: int, imm: int) -> None:
        """Set the 32-bit ``imm`` of slot ``i`` (signed or unsigned value accepted).

        For a ``ld_imm64`` this is the low half (map fd); slot ``i + 1`` holds
        the high half (e.g. the value offset of ``BPF_PSEUDO_MAP_VALUE``).
        """
        p = self._pos(i) + 4
        self._imm.pack_into(self.data, p, _s32(imm))

    def set_imm64(self, i: int, value: int) -> None:
        """Set the full 64-bit immediate of the ``ld_imm64`` starting at slot ``i``."""
        self._require_ldimm64(i)
        if not -(1 << 63) <= value <= _M64:
            raise ValueError(f"immediate {value} does not fit in 64 bits")
        value &= _M64
        self._imm.pack_into(self.data, (i << 3) + 4, _s32(value & _M32))
        self._imm.pack_into(self.data, (i << 3) + 12, _s32(value >> 32))

    def set(self, i: int, insn: Instruction) -> None:
        """Overwrite the instruction at slot ``i`` with ``insn``.

        A ``ld_imm64`` can only replace a ``ld_imm64`` and a one-slot
        instruction only a one-slot one, so the program never changes length
        and no jump offset is invalidated (to blank a ``ld_imm64``, write two
        ``goto pc+0`` into its slots with :meth:`set_opcode` and friends).
        """
        p = self._pos(i)
        was_wide = self.data[p] == op.LD_IMM64
        if was_wide != (insn.opcode == op.LD_IMM64):
            raise ValueError(f"slot {i}: cannot replace a {2 if was_wide else 1}-slot instruction "
                             f"with a {insn.slots}-slot one")
        raw = _encode_one(insn, self.byteorder, self._slot)
        if len(raw) == 16:
            self._require_ldimm64(i)
        self.data[p:p + len(raw)] = raw

    # --- memory access size ----------------------------------------------

    def size_of_mem(self, i: int) -> int:
        """Access width in bytes (1, 2, 4, 8) of the load/store/atomic at slot ``i``."""
        c = self.data[self._pos(i)]
        if not (self.is_mem(i) or self.is_atomic(i)):
            raise ValueError(f"slot {i} (opcode {c:#04x}) is not a memory load or store")
        return op.SIZE_BYTES[c & op.SIZE_MASK]

    def set_mem_size(self, i: int, size: int) -> None:
        """Change the access width of the load/store at slot ``i`` to ``size`` bytes.

        CO-RE uses this when a field's size differs between the object's BTF
        and the kernel's.  Atomics are refused: their width is not free.
        """
        p = self._pos(i)
        if not self.is_mem(i):
            raise ValueError(f"slot {i} (opcode {self.data[p]:#04x}) is not a memory load or store")
        bits = op.SIZE_FOR_BYTES.get(size)
        if bits is None:
            raise ValueError(f"memory access size must be 1, 2, 4 or 8 bytes, not {size}")
        self.data[p] = (self.data[p] & ~op.SIZE_MASK & 0xFF) | bits

    # --- control flow -----------------------------------------------------

    def branch_target(self, i: int) -> int:
        """Slot a branch at ``i`` jumps to: ``i + off + 1`` (``i + imm + 1`` for ``gotol``)."""
        if not self.is_jump(i):
            raise ValueError(f"slot {i} (opcode {self.opcode(i):#04x}) is not a branch")
        if self.data[i << 3] == op.GOTOL:
            return i + self.imm(i) + 1
        return i + self.off(i) + 1

    def call_target(self, i: int) -> int:
        """Slot a bpf-to-bpf call or ``ld_imm64`` pseudo-func at ``i`` refers to: ``i + imm + 1``."""
        if not (self.is_pseudo_call(i) or self.is_pseudo_func(i)):
            raise ValueError(f"slot {i} is neither a bpf-to-bpf call nor a pseudo-func ld_imm64")
        return i + self.imm(i) + 1

    def set_call_target(self, i: int, target: int) -> None:
        """Point the bpf-to-bpf call / pseudo-func at slot ``i`` to slot ``target``."""
        if not (self.is_pseudo_call(i) or self.is_pseudo_func(i)):
            raise ValueError(f"slot {i} is neither a bpf-to-bpf call nor a pseudo-func ld_imm64")
        self.set_imm(i, target - i - 1)

    # --- whole-buffer operations --------------------------------------------

    def encode(self, byteorder: Optional[str] = None) -> bytes:
        """The program's bytes in ``byteorder`` (default: the buffer's own)."""
        bo = self.byteorder if byteorder is None else normalize_byteorder(byteorder)
        if bo == self.byteorder:
            return bytes(self.data)
        return bytes(_swap_byteorder(self.data))

    def to_byteorder(self, byteorder: str) -> "InsnBuffer":
        """A copy whose bytes are in ``byteorder``."""
        bo = normalize_byteorder(byteorder)
        data = bytearray(self.data) if bo == self.byteorder else _swap_byteorder(self.data)
        return InsnBuffer(data, bo)

    def copy(self) -> "InsnBuffer":
        return InsnBuffer(bytearray(self.data), self.byteorder)

    def slice(self, start: int, stop: Optional[int] = None) -> "InsnBuffer":
        """A copy of slots ``start`` up to (not including) ``stop``."""
        n = len(self)
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise IndexError(f"slot range {start}:{stop} out of range (program has {n} slots)")
        return InsnBuffer(self.data[start << 3:stop << 3], self.byteorder)

    def extend(self, other: Union["InsnBuffer", Iterable[Instruction]]) -> None:
        """Append another buffer (converted to this byte order) or instructions."""
        if isinstance(other, InsnBuffer):
            self.data += other.data if other.byteorder == self.byteorder else _swap_byteorder(other.data)
        else:
            self.data += encode(other, self.byteorder)

    def append(self, insn: Instruction) -> None:
        self.data += _encode_one(insn, self.byteorder, self._slot)

    def decode(self) -> List[Instruction]:
        """All instructions as values (``ld_imm64`` merged); see :func:`decode`."""
        return decode(self.data, self.byteorder)

    def _require_ldimm64(self, i: int) -> None:
        p = self._pos(i)
        if self.data[p] != op.LD_IMM64:
            raise ValueError(f"slot {i} (opcode {self.data[p]:#04x}) is not a ld_imm64")
        if p + 16 > len(self.data):
            raise ParseError("ld_imm64 truncated: its second slot is missing", offset=p)
