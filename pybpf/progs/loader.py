"""Turning a ProgramSpec into a loaded Program: map fds, CO-RE, BTF ids, verifier."""

from __future__ import annotations

import errno
import struct
import sys as _pysys
from typing import Callable, Dict, List, Optional

from .. import sys as _sys
from ..btf import Kind, Spec
from ..btf.ext import CORERelo, COREReloKind
from ..consts import AttachType, ProgType
from .._internal.caps import CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, has_caps
from ..errors import BPFError, NotSupportedError, PermissionDeniedError
from ..spec.program import ProgramSpec
from .program import Program
from .verifier import load_with_log

__all__ = ["load_program", "prepare_insns", "BTF_ID_TARGETS", "TRAMPOLINE_KINDS"]

TRAMPOLINE_KINDS = frozenset({"fentry", "fexit", "fmod_ret", "lsm", "freplace"})

_PSEUDO_MAP_FD = 1
_PSEUDO_MAP_VALUE = 2
_NATIVE = "<" if _pysys.byteorder == "little" else ">"

# Section kinds whose target names a kernel BTF object: (FUNC/TYPEDEF name prefix, kind).
BTF_ID_TARGETS = {
    "tp_btf": ("btf_trace_", Kind.TYPEDEF),
    "fentry": ("", Kind.FUNC),
    "fexit": ("", Kind.FUNC),
    "fmod_ret": ("", Kind.FUNC),
    "lsm": ("bpf_lsm_", Kind.FUNC),
    "iter": ("bpf_iter_", Kind.FUNC),
}


def prepare_insns(spec: ProgramSpec, map_fds: Dict[str, int],
                  kernel_btf: Optional[Callable[[], Spec]]) -> "tuple[bytearray, list]":
    """The instructions exactly as they go to the kernel: map fds (0 if absent) and CO-RE applied.

    Returns the instructions and the CO-RE fixups (for explanations).
    """
    insns = bytearray(spec.insns)
    imm = struct.Struct(spec.byteorder + "i")
    for ref in spec.map_refs:
        p = ref.insn * 8
        regs = insns[p + 1]
        kind = _PSEUDO_MAP_FD if ref.offset is None else _PSEUDO_MAP_VALUE
        insns[p + 1] = (regs & 0x0F) | (kind << 4) if spec.byteorder == "<" else (regs & 0xF0) | kind
        imm.pack_into(insns, p + 4, map_fds.get(ref.map, 0))
        imm.pack_into(insns, p + 12, ref.offset or 0)
    fixups: list = []
    if spec.core_relos:
        if kernel_btf is None:
            raise BPFError(f"program {spec.name}: CO-RE relocations need a target BTF")
        from ..core import apply_fixups, relocate
        relos = [CORERelo(r.insn * 8, r.type_id, r.access_str, COREReloKind(r.kind))
                 for r in spec.core_relos]
        fixups = relocate(spec.btf, relos, [kernel_btf()], bytes(insns), section=spec.section)
        apply_fixups(insns, fixups, spec.byteorder)
    return insns, fixups


def _attach_btf_id(spec: ProgramSpec, kernel_btf: Callable[[], Spec]) -> int:
    kind = spec.attach_kind
    if kind not in BTF_ID_TARGETS or not spec.attach_to:
        return 0
    prefix, btf_kind = BTF_ID_TARGETS[kind]
    kbtf = kernel_btf()
    name = prefix + spec.attach_to
    ids = kbtf.find(name, btf_kind)
    if not ids:
        raise NotSupportedError(f"{kind} target {spec.attach_to}",
                                f"program {spec.name}: kernel BTF has no {btf_kind.name} {name!r}")
    return ids[0]


def load_program(spec: ProgramSpec, *, maps: Dict[str, "object"], btf_fd, kernel_btf: Callable[[], Spec],
                 log_level: int = 0, vmlinux_btf: Optional[Callable[[], Spec]] = None) -> Program:
    """Load one program of a collection whose maps already exist.

    ``kernel_btf`` is the CO-RE target (possibly a user-given BTF file);
    ``vmlinux_btf`` the running kernel's BTF, where attach targets (tp_btf,
    fentry, lsm, iter) are looked up, as libbpf does.  It defaults to ``kernel_btf``.
    """
    if not spec.supported:
        raise NotSupportedError(f"program {spec.name} ({spec.section})", spec.unsupported_reason)
    if spec.byteorder != _NATIVE:
        raise NotSupportedError(f"program {spec.name}",
                                "the object was built for the other byte order than this machine's")
    if spec.extern_refs:
        names = sorted({e.name for e in spec.extern_refs})
        raise NotSupportedError(f"program {spec.name}: extern symbols {', '.join(names)}",
                                "externs (.kconfig/__ksym) are resolved by the CO-RE loader, "
                                "which is not available yet")
    map_fds = {n: m.fd for n, m in maps.items()}  # type: ignore[attr-defined]
    insns, fixups = prepare_insns(spec, map_fds, kernel_btf)
    attach_btf_id = _attach_btf_id(spec, vmlinux_btf or kernel_btf)
    use_btf = btf_fd is not None and spec.btf is not None
    func_info = b"".join(struct.pack("=II", f.insn, f.type_id) for f in spec.func_info) if use_btf else b""
    line_info = b"".join(struct.pack("=IIII", l.insn, l.file_name_off, l.line_off, (l.line << 10) | l.col)
                         for l in spec.line_info) if use_btf else b""
    poisoned = {f.insn_index: f for f in fixups if f.poisoned}
    flags = spec.flags

    def source_line(idx: int) -> Optional[str]:
        li = spec.source_line(idx)
        if li is None:
            return None
        return f"{li.file_name}:{li.line}: {li.line_text.strip()}"

    def notes(log: List[str]) -> List[str]:
        from .verifier import failing_insn
        idx = failing_insn(log)
        out = []
        if idx is not None and idx in poisoned:
            f = poisoned[idx]
            out.append(f"instruction {idx} was poisoned by CO-RE: {f.reason or f.path}")
        elif poisoned:
            out.extend(f"CO-RE could not relocate {f.path}: {f.reason}" for f in poisoned.values())
        if any("unknown func" in l and "195896080" in l for l in log) and not out:
            out.append("a CO-RE relocation failed (poisoned call 0xbad2310)")
        return out

    def do_load(level: int, buf: Optional[bytearray]):
        return _sys.prog_load(
            prog_type=spec.prog_type, insns=bytes(insns), license=spec.license or "",
            expected_attach_type=spec.expected_attach_type, prog_flags=flags,
            prog_name=spec.kernel_name, kern_version=spec.kern_version,
            prog_btf_fd=btf_fd.fileno() if use_btf else 0,
            func_info=func_info, func_info_rec_size=8 if func_info else 0,
            line_info=line_info, line_info_rec_size=16 if line_info else 0,
            attach_btf_id=attach_btf_id, log_level=level, log_buf=buf,
            context=f"program {spec.name}")

    try:
        fd = load_with_log(do_load, spec.name, source_line, log_level=log_level, notes=notes)
    except PermissionDeniedError as e:
        if spec.attach_kind in TRAMPOLINE_KINDS and e.errno == errno.EPERM and \
                has_caps(CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN):
            raise NotSupportedError(
                f"BPF trampoline program {spec.name} ({spec.section})",
                "the running kernel refused BPF_PROG_LOAD with EPERM although this process has "
                "CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: this kernel does not allow BPF "
                "trampolines (fentry/fexit/fmod_ret/lsm); use a tracepoint, tp_btf or raw_tp "
                "hook here, or run on a kernel that allows them (see tools/vmtest)") from e
        raise
    return Program(fd, name=spec.name, type=spec.prog_type, spec=spec)  # type: ignore[arg-type]
