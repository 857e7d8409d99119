"""ProgramSpec: a linked program, ready to load, as parsed from the ELF."""

from __future__ import annotations

from typing import Any, List, Optional

import attrs

__all__ = ["ProgramSpec", "MapRef", "FuncInfoRec", "LineInfoRec", "CORERef", "ExternRef"]


@attrs.frozen
class MapRef:
    """An ld_imm64 at instruction ``insn`` that must receive map ``map``'s fd.

    ``offset`` is set for references into global data (BPF_PSEUDO_MAP_VALUE)
    and ``None`` for references to the map itself (BPF_PSEUDO_MAP_FD).
    """
    insn: int
    map: str
    offset: Optional[int] = None


@attrs.frozen
class ExternRef:
    """An ld_imm64 or call at ``insn`` referring to an extern (``.kconfig``/``__ksym``) symbol.

    ``section`` is ``.kconfig`` or ``.ksyms`` ("" for an extern libbpf would not
    accept); ``offset`` is a ``.kconfig`` extern's place in the ``.kconfig`` map;
    ``type_id`` (object BTF) is what the extern was declared as: a variable's
    type with modifiers and typedefs skipped (0 for ``void``: a typeless ksym)
    or a function's FUNC_PROTO; ``weak`` says it was declared ``__weak`` and
    may be absent from the kernel.
    """
    insn: int
    name: str
    section: str
    offset: int = 0
    type_id: int = 0
    weak: bool = False


@attrs.frozen
class FuncInfoRec:
    insn: int          # instruction index in the linked program
    type_id: int


@attrs.frozen
class LineInfoRec:
    insn: int
    file_name_off: int
    line_off: int
    line: int
    col: int
    file_name: str = ""
    line_text: str = ""


@attrs.frozen
class CORERef:
    """A CO-RE relocation at instruction ``insn`` of the linked program."""
    insn: int
    type_id: int
    access_str: str
    kind: int


@attrs.define
class ProgramSpec:
    """A program blueprint: linked instructions plus everything needed to load it.

    ``insns`` holds the instructions of the program followed by every
    subprogram it calls (transitively), with call offsets already fixed.
    ``prog_type``/``expected_attach_type`` are kernel enum *values*
    (``pybpf.consts.ProgType``/``AttachType``), derived from ``section``.
    """
    name: str
    section: str
    insns: bytearray
    prog_type: int
    expected_attach_type: int = 0
    attach_to: str = ""
    attach_kind: Optional[str] = None
    sleepable: bool = False
    autoload: bool = True
    license: str = ""
    kern_version: int = 0
    flags: int = 0
    byteorder: str = "<"
    map_refs: List[MapRef] = attrs.Factory(list)
    extern_refs: List[ExternRef] = attrs.Factory(list)
    func_info: List[FuncInfoRec] = attrs.Factory(list)
    line_info: List[LineInfoRec] = attrs.Factory(list)
    core_relos: List[CORERef] = attrs.Factory(list)
    func_info_rec_size: int = 8
    line_info_rec_size: int = 16
    supported: bool = True
    unsupported_reason: str = ""
    btf: Any = attrs.field(default=None, eq=False, repr=False)
    attach_prog: Any = attrs.field(default=None, eq=False, repr=False)

    def set_attach_target(self, program: Any, func: Optional[str] = None) -> None:
        """Load this program against function ``func`` of the loaded ``program`` (a
        :class:`~pybpf.Program` or a program fd): freplace extensions, and fentry/fexit on
        BPF programs (libbpf's ``bpf_program__set_attach_target``).  ``func`` defaults to
        the section's target (``SEC("freplace/FUNC")``)."""
        self.attach_prog = program
        if func:
            self.attach_to = func

    def copy(self) -> "ProgramSpec":
        return attrs.evolve(self, insns=bytearray(self.insns), map_refs=list(self.map_refs),
                            extern_refs=list(self.extern_refs), func_info=list(self.func_info),
                            line_info=list(self.line_info), core_relos=list(self.core_relos))

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8

    @property
    def kernel_name(self) -> str:
        """The name given to the kernel (bpftool shows it): at most 15 characters."""
        return self.name[:15]

    def source_line(self, insn: int) -> Optional[LineInfoRec]:
        """The line-info record covering instruction ``insn`` (the last one at or before it)."""
        best = None
        for li in self.line_info:
            if li.insn <= insn and (best is None or li.insn >= best.insn):
                best = li
        return best
