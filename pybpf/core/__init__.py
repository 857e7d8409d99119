"""CO-RE (Compile Once - Run Everywhere) relocation, as a pure function over BTF.

:func:`relocate` resolves an object's ``.BTF.ext`` CO-RE records against the
running kernel's BTF (or any target BTF) and returns one :class:`Fixup` per
record, saying what the instruction gets and why; :func:`apply_fixups` writes
them into the instructions.  Semantics and output are libbpf's
(``relo_core.c``): the patched instructions are byte-identical to what
libbpf sends to the kernel.

Nothing here calls the kernel; reading the kernel's BTF is the caller's job.
"""

from .accessor import KIND_NAMES, Accessor, AccessSpec, format_path, parse_access
from .candidates import Candidate, CandidateCache, find_candidates
from .compat import essential_name, fields_compatible, types_compatible, types_match
from .fixup import POISON_IMM, Fixup, apply_fixups, patch_insn
from .relocate import relocate

__all__ = [
    "relocate", "apply_fixups", "patch_insn", "Fixup", "POISON_IMM", "CandidateCache",
    "Candidate", "find_candidates", "essential_name", "fields_compatible", "types_compatible",
    "types_match", "parse_access", "format_path", "Accessor", "AccessSpec", "KIND_NAMES",
]
