"""eBPF instructions: encoding, decoding, in-place patching and disassembly.

Pure code: no kernel access, both byte orders.

* :class:`Instruction` – one immutable instruction (``ld_imm64`` merged into one).
* :class:`InsnBuffer` – a mutable, slot-indexed program the loader patches in place.
* :func:`decode` / :func:`encode` – bytes <-> instructions.
* :func:`format_insn` / :func:`disassemble` – verifier-log style text.
* :mod:`pybpf.asm.opcodes` – the instruction-set constants.
"""

from __future__ import annotations

from . import opcodes
from .disasm import disassemble, format_insn
from .insn import InsnBuffer, Instruction, decode, encode, normalize_byteorder

__all__ = [
    "Instruction", "InsnBuffer", "decode", "encode", "normalize_byteorder",
    "format_insn", "disassemble", "opcodes",
]
