"""What a feature probe answers: :class:`Probe`, and how kernel refusals become answers."""

from __future__ import annotations

import enum
import errno
from typing import TYPE_CHECKING, List, Optional, Union

import attrs

from ..errors import PermissionDeniedError, SyscallError

if TYPE_CHECKING:
    from ..privileges import Kind as PrivilegeKind

__all__ = ["Probe", "Code", "HelperStatus", "refused_or_raise", "log_text", "first_log_line",
           "errname", "ENOTSUPP"]

ENOTSUPP = 524  # kernel-internal "not supported" that leaks out of bpf(2)


class Code(str, enum.Enum):
    """Why a feature is absent (stored in the cache, so values never change)."""
    OK = ""                        # supported
    MISSING = "missing"            # the kernel does not know it (too old, or compiled out)
    NOT_ALLOWED = "not_allowed"    # helper/kfunc exists, but not for this program type
    PROG_TYPE = "prog_type"        # the program type itself is unsupported
    REFUSED = "refused"            # EPERM although every capability is present


@attrs.frozen
class Probe:
    """One conclusive answer: ``supported`` and, when not, ``code`` and a ``reason``
    that names what the kernel said ("BPF_PROG_LOAD: EINVAL", a verifier line ...)."""
    supported: bool
    code: Code = Code.OK
    reason: str = ""

    @classmethod
    def yes(cls, reason: str = "") -> "Probe":
        return cls(True, Code.OK, reason)

    @classmethod
    def no(cls, reason: str, code: Code = Code.MISSING) -> "Probe":
        return cls(False, code, reason)

    def to_json(self) -> Union[bool, List[Union[bool, str]]]:
        """The compact cache form: ``true`` for a plain yes, else ``[supported, code, reason]``."""
        if self.supported and not self.reason:
            return True
        return [self.supported, self.code.value, self.reason]

    @classmethod
    def from_json(cls, value: object) -> Optional["Probe"]:
        """Inverse of :meth:`to_json`; None for anything malformed (a foreign cache)."""
        if value is True:
            return cls(True)
        if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], bool)
                and isinstance(value[1], str) and isinstance(value[2], str)):
            return None
        try:
            return cls(value[0], Code(value[1]), value[2])
        except ValueError:
            return None


class HelperStatus(str, enum.Enum):
    """How a program type relates to a helper (or kfunc), as bpftool distinguishes them."""
    AVAILABLE = "available"        # the verifier accepts the call
    NOT_ALLOWED = "not_allowed"    # "unknown func bpf_x#N" / "cannot use helper": known, not here
    UNKNOWN = "unknown"            # "invalid func unknown#N": the kernel has no such helper
    PROG_TYPE = "prog_type"        # the program type cannot be loaded at all


def errname(err: SyscallError) -> str:
    """``"EINVAL"`` for an error with errno EINVAL (``"ENOTSUPP"`` for 524)."""
    code = err.errno or 0
    return "ENOTSUPP" if code == ENOTSUPP else errno.errorcode.get(code, str(code))


def log_text(buf: bytearray) -> str:
    """The NUL-terminated text the kernel wrote into a log buffer."""
    end = buf.find(0)
    return bytes(buf[:end if end >= 0 else len(buf)]).decode("utf-8", "replace")


def first_log_line(buf: bytearray) -> str:
    """The first meaningful line of a verifier/BTF log ("" when empty)."""
    for line in log_text(buf).splitlines():
        line = line.strip()
        if line and not line.startswith(("processed ", "func#", "magic:", "version:", "flags:",
                                         "hdr_len:", "type_off:", "type_len:", "str_off:",
                                         "str_len:", "btf_total_size:")):
            return line
    return ""


def refused_or_raise(err: SyscallError, what: str, kind: "PrivilegeKind") -> Probe:
    """Turn EPERM from a probe into an answer, or re-raise.

    With every capability ``kind`` needs, EPERM is the kernel's own decision
    (lockdown, an LSM, a kernel that forbids BPF trampolines ...): a
    conclusive "no, refused by this kernel".  Without them it says nothing
    about the kernel, so the error is raised, explained.  Any other errno is
    not an answer either and is re-raised as it is.
    """
    from ..privileges import explain_eperm, missing_capabilities, required_capabilities
    if err.errno not in (errno.EPERM, errno.EACCES):
        raise err
    missing = missing_capabilities(kind)
    if missing:
        raise PermissionDeniedError(err.call, err.errno, f"feature probe {what}",
                                    explain_eperm(kind)) from err
    caps = ", ".join(required_capabilities(kind))
    return Probe.no(f"refused by this kernel: {err.call} failed with {errname(err)} although "
                    f"this process has {caps}", Code.REFUSED)
