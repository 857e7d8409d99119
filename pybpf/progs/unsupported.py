"""Load failures caused by what the running kernel lacks, turned into NotSupportedError.

A kernel that refuses a program because it is too old (no such program type, an
unknown helper, no sleepable programs of that type, no multi-buffer XDP) or
because it does not allow BPF trampolines gets an error that says so instead of
a bare EINVAL/EPERM, so callers can branch on NotSupportedError to a fallback.
"""

from __future__ import annotations

import errno
import re
from typing import Dict, List

from .. import features
from .._internal.caps import CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, has_caps
from ..consts import FuncId, ProgType
from ..errors import NotSupportedError, SyscallError
from ..spec.program import ProgramSpec

__all__ = ["raise_if_missing_feature", "raise_if_trampolines_refused", "TRAMPOLINE_KINDS"]

TRAMPOLINE_KINDS = frozenset({"fentry", "fexit", "fmod_ret", "lsm", "freplace"})


def enum_name(enum_cls, value: int) -> str:
    """``enum_cls(value).name``, or the number when the kernel ABI pybpf knows lacks it."""
    try:
        return enum_cls(value).name
    except ValueError:
        return str(value)


_UNKNOWN_HELPER = re.compile(r"(?:unknown func|invalid func) (\w+)#(\d+)")
_POISON_HELPER = 195896080      # CO-RE poison (0xbad2310): explained by the loader's notes


def _helper_calls(ps: ProgramSpec) -> List[int]:
    """Distinct helper ids the program calls (``call`` with src 0), in order of first use."""
    seen: Dict[int, None] = {}
    insns = ps.insns
    le = ps.byteorder == "<"
    for i in range(0, len(insns) - 7, 8):
        if insns[i] == 0x85 and (insns[i + 1] >> 4 if le else insns[i + 1] & 0xF) == 0:
            seen.setdefault(int.from_bytes(insns[i + 4:i + 8], "little" if le else "big", signed=True), None)
    return [h for h in seen if h > 0]


def raise_if_missing_feature(ps: ProgramSpec, e: SyscallError) -> None:
    """Turn a load failure caused by a kernel feature this kernel lacks into NotSupportedError:
    an unknown program type, a helper the verifier does not know, sleepable programs of a
    type that cannot sleep here, multi-buffer XDP."""
    if e.errno not in (errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP, errno.EACCES, 524):
        return
    what = f"program {ps.name} ({ps.section})"
    log = getattr(e, "log", None) or []
    for line in reversed(log):
        m = _UNKNOWN_HELPER.search(line)
        if m and int(m.group(2)) != _POISON_HELPER:
            raise NotSupportedError(f"BPF helper {m.group(1)} (#{m.group(2)}) in {what}",
                                    "this kernel's verifier does not know it") from e
    for helper in _helper_calls(ps):
        status = features.helper_status(ps.prog_type, helper)
        if status.name in ("UNKNOWN", "NOT_ALLOWED"):
            name = enum_name(FuncId, helper)
            why = ("this kernel does not know it" if status.name == "UNKNOWN"
                   else "this kernel does not allow it in this program type")
            raise NotSupportedError(f"BPF helper bpf_{name} (#{helper}) in {what}", why) from e
    if ps.sleepable and any("sleepable" in line for line in log[-5:]):
        raise NotSupportedError(what, "this kernel cannot load sleepable programs of this type: "
                                + next(l for l in reversed(log) if "sleepable" in l).strip()) from e
    if e.errno == errno.EACCES:
        return
    if not features.have_prog_type(ps.prog_type):
        raise NotSupportedError(what, f"this kernel has no {enum_name(ProgType, ps.prog_type)} "
                                "program type") from e
    if ps.flags & (1 << 5) and not features.have_feature("xdp_frags"):
        raise NotSupportedError(what, "this kernel has no multi-buffer XDP (BPF_F_XDP_HAS_FRAGS)",
                                min_kernel="5.18") from e


def raise_if_trampolines_refused(ps: ProgramSpec, e: SyscallError) -> None:
    """EPERM for a trampoline program although every capability is there: the kernel
    does not allow BPF trampolines (this development host is one)."""
    if ps.attach_kind in TRAMPOLINE_KINDS and e.errno == errno.EPERM and \
            has_caps(CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN):
        raise NotSupportedError(
            f"BPF trampoline program {ps.name} ({ps.section})",
            "the running kernel refused BPF_PROG_LOAD with EPERM although this process has "
            "CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: this kernel does not allow BPF "
            "trampolines (fentry/fexit/fmod_ret/lsm); use a tracepoint, tp_btf or raw_tp "
            "hook here, or run on a kernel that allows them (see tools/vmtest)") from e
