"""Turning a ProgramSpec into a loaded Program: map fds, CO-RE, BTF ids, verifier."""

from __future__ import annotations

import errno
import re
import struct
import sys as _pysys
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from .. import sys as _sys
from ..btf import Kind, Spec
from ..btf.ext import CORERelo, COREReloKind
from ..btf.fixup import KCONFIG_SEC, KSYMS_SEC
from ..errors import (BPFError, LinkError, NotSupportedError, SyscallError, VerifierError)
from ..externs import Ksym, KsymResolver, patch_externs
from ..kbtf import KERNEL_BTF_DIR, load_kernel_btf, load_module_btfs, module_btf_names
from ..spec.program import ProgramSpec
from .program import Program
from .unsupported import TRAMPOLINE_KINDS, raise_if_missing_feature, raise_if_trampolines_refused
from .verifier import load_with_log

__all__ = ["load_program", "prepare_insns", "explain_failure", "BTF_ID_TARGETS", "TRAMPOLINE_KINDS"]


POISON_CALL = 0xBAD2310     # helper id of a poisoned CO-RE instruction ("unknown#195896080")
_CALL = 0x85
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
                  kernel_btf: Optional[Callable[[], Spec]], *,
                  ksyms: Optional[Mapping[str, Ksym]] = None,
                  module_btfs: Optional[Callable[[], Sequence[Spec]]] = None) -> "tuple[bytearray, list]":
    """The instructions exactly as they go to the kernel: map fds (0 if absent), externs and
    CO-RE applied.

    ``.kconfig`` references always become loads from the ``.kconfig`` map;
    ``__ksym`` references only when ``ksyms`` (see
    :meth:`pybpf.externs.KsymResolver.resolve_all`) says what they resolved to.
    CO-RE relocates against ``kernel_btf()``, and also against ``module_btfs()``
    when some local type has no candidate there (libbpf's rule).
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
    if spec.extern_refs:
        patch_externs(insns, spec.extern_refs, spec.byteorder,
                      kconfig_fd=map_fds.get(KCONFIG_SEC, 0), ksyms=ksyms)
    fixups: list = []
    if spec.core_relos:
        if kernel_btf is None:
            raise BPFError(f"program {spec.name}: CO-RE relocations need a target BTF")
        from ..core import apply_fixups, relocate
        relos = [CORERelo(r.insn * 8, r.type_id, r.access_str, COREReloKind(r.kind))
                 for r in spec.core_relos]
        targets = _core_targets(spec, kernel_btf(), module_btfs)
        fixups = relocate(spec.btf, relos, targets, bytes(insns), section=spec.section)
        apply_fixups(insns, fixups, spec.byteorder)
    return insns, fixups


def _core_targets(spec: ProgramSpec, target: Spec,
                  module_btfs: Optional[Callable[[], Sequence[Spec]]]) -> List[Spec]:
    """[target], plus module BTF when a relocated local type has no candidate in ``target``."""
    if module_btfs is None or spec.btf is None:
        return [target]
    from ..core import find_candidates
    for tid in {r.type_id for r in spec.core_relos}:
        if spec.btf.type(tid).name and not find_candidates(spec.btf, tid, [target]):
            return [target, *module_btfs()]
    return [target]


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
                 log_level: int = 0, vmlinux_btf: Optional[Callable[[], Spec]] = None,
                 ksyms: Optional[KsymResolver] = None) -> Program:
    """Load one program of a collection whose maps already exist.

    ``kernel_btf`` is the CO-RE target (possibly a user-given BTF file);
    ``vmlinux_btf`` the running kernel's BTF, where attach targets (tp_btf,
    fentry, lsm, iter) and ``__ksym`` externs are looked up, as libbpf does
    (default: :func:`pybpf.kbtf.load_kernel_btf`).  ``ksyms`` shares one
    resolver between the programs of a collection (the caller closes it);
    without it a resolver lives for this call.  When the CO-RE target is the
    running kernel's BTF, module BTF supplies the candidates vmlinux lacks.
    """
    if not spec.supported:
        raise NotSupportedError(f"program {spec.name} ({spec.section})", spec.unsupported_reason)
    if spec.byteorder != _NATIVE:
        raise NotSupportedError(f"program {spec.name}",
                                "the object was built for the other byte order than this machine's")
    odd = sorted({e.name for e in spec.extern_refs if e.section not in (KCONFIG_SEC, KSYMS_SEC)})
    if odd:
        raise LinkError(f"program {spec.name}: undefined symbols {', '.join(odd)}: not __kconfig or "
                        "__ksym externs (calls into other objects need static linking)")
    vmlinux = vmlinux_btf or (lambda: load_kernel_btf(None))
    own_resolver = ksyms is None and any(e.section == KSYMS_SEC for e in spec.extern_refs)
    resolver = KsymResolver(vmlinux) if own_resolver else ksyms
    try:
        return _load(spec, maps, btf_fd, kernel_btf, vmlinux, log_level, resolver)
    finally:
        if own_resolver:
            resolver.close()  # type: ignore[union-attr]


def _load(spec: ProgramSpec, maps: Dict[str, "object"], btf_fd, kernel_btf: Callable[[], Spec],
          vmlinux: Callable[[], Spec], log_level: int, resolver: Optional[KsymResolver]) -> Program:
    resolved = resolver.resolve_all(spec.name, spec.btf, spec.extern_refs) if resolver else None
    map_fds = {n: m.fd for n, m in maps.items()}  # type: ignore[attr-defined]
    target_is_kernel = False
    modules = None
    if spec.core_relos:
        target = kernel_btf()
        target_is_kernel = str(target.file or "").startswith(KERNEL_BTF_DIR + "/")
        if target_is_kernel and module_btf_names():
            modules = lambda: load_module_btfs(target)  # noqa: E731
    insns, fixups = prepare_insns(spec, map_fds, kernel_btf, ksyms=resolved, module_btfs=modules)
    attach_prog_fd = 0
    if spec.attach_prog is not None:
        # freplace, or fentry/fexit on a BPF program: the target is a function in the BTF
        # of a loaded program (libbpf's bpf_program__set_attach_target).
        from .targets import target_func_btf_id
        target = spec.attach_prog
        attach_prog_fd = target if isinstance(target, int) else target.fd
        attach_btf_id = target_func_btf_id(target, spec.attach_to)
    elif spec.attach_kind == "freplace":
        raise BPFError(f"program {spec.name} ({spec.section}) is an extension: name the program "
                       "whose function it replaces before loading, with "
                       "spec.programs[NAME].set_attach_target(program, func)")
    else:
        attach_btf_id = _attach_btf_id(spec, vmlinux)
    use_btf = btf_fd is not None and spec.btf is not None
    func_info = b"".join(struct.pack("=II", f.insn, f.type_id) for f in spec.func_info) if use_btf else b""
    line_info = b"".join(struct.pack("=IIII", l.insn, l.file_name_off, l.line_off, (l.line << 10) | l.col)
                         for l in spec.line_info) if use_btf else b""
    flags = spec.flags
    fd_array = list(resolver.fd_array) if resolver is not None and resolver.fd_array else None

    def source_line(idx: int) -> Optional[str]:
        li = spec.source_line(idx)
        if li is None:
            return None
        return f"{li.file_name}:{li.line}: {li.line_text.strip()}"

    def notes(log: List[str]) -> List[str]:
        return explain_failure(spec, log, fixups, resolved or {}, source_line)

    def do_load(level: int, buf: Optional[bytearray]):
        return _sys.prog_load(
            prog_type=spec.prog_type, insns=bytes(insns), license=spec.license or "",
            expected_attach_type=spec.expected_attach_type, prog_flags=flags,
            prog_name=spec.kernel_name, kern_version=spec.kern_version,
            prog_btf_fd=btf_fd.fileno() if use_btf else 0,
            func_info=func_info, func_info_rec_size=8 if func_info else 0,
            line_info=line_info, line_info_rec_size=16 if line_info else 0,
            attach_btf_id=attach_btf_id, attach_prog_fd=attach_prog_fd,
            fd_array=fd_array, log_level=level, log_buf=buf,
            context=f"program {spec.name}")

    try:
        try:
            fd = load_with_log(do_load, spec.name, source_line, log_level=log_level, notes=notes)
        except SyscallError as e:
            # ENOENT comes from the verifier too (a __ksym without an address, a missing
            # BTF id): ask again with a log so the error can say why.
            if e.errno != errno.ENOENT or log_level or isinstance(e, VerifierError):
                raise
            fd = load_with_log(do_load, spec.name, source_line, log_level=1, notes=notes)
    except SyscallError as e:
        raise_if_trampolines_refused(spec, e)
        raise_if_missing_feature(spec, e)
        raise
    return Program(fd, name=spec.name, type=spec.prog_type, spec=spec)  # type: ignore[arg-type]


_KSYM_ADDR_RE = re.compile(r"failed to find the address for kernel symbol '([^']+)'")


def explain_failure(spec: ProgramSpec, log: Sequence[str], fixups: Sequence, ksyms: Mapping[str, Ksym],
                    source_line: Callable[[int], Optional[str]]) -> List[str]:
    """Notes for a :class:`~pybpf.errors.VerifierError`: what pybpf did to the failing
    instruction, in source terms.

    * a CO-RE relocation that could not be satisfied poisoned it: the access
      path, why it failed, the instruction and its source line;
    * it calls a ``__weak`` kfunc the kernel lacks;
    * the verifier could not find a typed ``__ksym`` in kallsyms.
    """
    from .verifier import failing_insn
    idx = failing_insn(log)
    out: List[str] = []

    def where(i: int) -> str:
        src = source_line(i)
        return f"instruction {i}" + (f" ({src})" if src else "")

    poisoned = {f.insn_index: f for f in fixups if f.poisoned}
    if idx is not None and idx in poisoned:
        f = poisoned[idx]
        why = f.reason or "not found in the target BTF"
        out.append(f"{where(idx)} of program {spec.name} was poisoned by CO-RE: "
                   f"{why if why.startswith(f.path) else f'{f.path}: {why}'} (guard the access "
                   f"with bpf_core_field_exists() or a ___flavor)")
    elif poisoned and any(str(POISON_CALL) in line for line in log[-4:]):
        for f in poisoned.values():
            out.append(f"{where(f.insn_index)} was poisoned by CO-RE: {f.path}: {f.reason}")
    if idx is not None:
        for ref in spec.extern_refs:
            k = ksyms.get(ref.name)
            if ref.insn == idx and k is not None and not k.found:
                out.append(f"{where(idx)} of program {spec.name} calls kfunc {ref.name}, declared "
                           f"__weak and absent from this kernel; guard it with "
                           f"bpf_ksym_exists({ref.name})")
    if any("kernel function call not eliminated" in line for line in log[-4:]):
        for ref in spec.extern_refs:
            k = ksyms.get(ref.name)
            if k is not None and not k.found and spec.insns[ref.insn * 8] == _CALL:
                out.append(f"{where(ref.insn)} of program {spec.name} calls kfunc {ref.name}, declared "
                           f"__weak and absent from this kernel, on a path the verifier could not "
                           f"prove dead; guard it with bpf_ksym_exists({ref.name})")
    m = _KSYM_ADDR_RE.search("\n".join(log[-8:]))
    if m:
        out.append(f"__ksym {m.group(1)!r} is in the kernel's BTF but its address is not in the "
                   f"kernel's symbol table (kernels without CONFIG_KALLSYMS_ALL list no data "
                   f"symbols), so the verifier cannot resolve it")
    return out
