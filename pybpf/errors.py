"""The pybpf exception tree.

Every failure pybpf reports derives from :class:`BPFError`.  Errors coming from
the kernel are translated exactly once, in :mod:`pybpf.sys`, into
:class:`SyscallError` (or a subclass) that names the command that failed.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Optional, Sequence

__all__ = [
    "BPFError",
    "ParseError",
    "CORERelocationError",
    "NotSupportedError",
    "IncompatibleError",
    "KeyNotFoundError",
    "KeyExistsError",
    "SyscallError",
    "PermissionDeniedError",
    "VerifierError",
    "LinkError",
]


class BPFError(Exception):
    """Base class of every error pybpf raises."""


class ParseError(BPFError):
    """A malformed or unsupported ELF, BTF or .BTF.ext input.

    ``file`` names the input (a path or ``"<bytes>"``), ``section`` the ELF
    section or BTF part being read, ``offset`` the byte offset where known.
    """

    def __init__(self, message: str, *, file: Optional[str] = None,
                 section: Optional[str] = None, offset: Optional[int] = None):
        self.file = file
        self.section = section
        self.offset = offset
        self.reason = message
        parts = []
        if file:
            parts.append(str(file))
        if section:
            parts.append(f"section {section}")
        if offset is not None:
            parts.append(f"offset {offset:#x}")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class LinkError(BPFError):
    """An object cannot be linked: unresolved symbol, bad call target, bad map reference."""


class CORERelocationError(BPFError):
    """A CO-RE relocation could not be resolved (and could not be poisoned)."""


class NotSupportedError(BPFError):
    """The running kernel (or pybpf) lacks a feature.

    ``feature`` names it; ``min_kernel`` is the first kernel version that has
    it, when known; ``reason`` explains what is missing on this system.
    """

    def __init__(self, feature: str, reason: str = "", *, min_kernel: Optional[str] = None):
        self.feature = feature
        self.reason = reason
        self.min_kernel = min_kernel
        msg = f"{feature} is not supported"
        if reason:
            msg += f": {reason}"
        if min_kernel:
            msg += f" (requires Linux {min_kernel} or later)"
        super().__init__(msg)


class IncompatibleError(BPFError):
    """A pinned or reused kernel object does not match its spec."""


class SyscallError(BPFError, OSError):
    """A system call failed.

    ``call`` names the command (``"BPF_PROG_LOAD"``, ``"perf_event_open"`` ...),
    ``errno`` is the error number.  ``context`` names the object involved
    (``"map counts"``) when known.
    """

    def __init__(self, call: str, err: int, context: str = "", hint: str = ""):
        self.call = call
        self.context = context
        self.hint = hint
        strerror = os.strerror(err) if err else "unknown error"
        msg = f"{call}"
        if context:
            msg = f"{context}: {msg}"
        msg += f": {strerror} ({_errno.errorcode.get(err, err)})"
        if hint:
            msg += f"; {hint}"
        OSError.__init__(self, err, msg)
        self.errno = err
        self.strerror = strerror
        self._message = msg

    def __str__(self) -> str:
        return self._message

    def __reduce__(self):  # keep pickling working despite OSError's custom init
        return (type(self), (self.call, self.errno, self.context, self.hint))


class PermissionDeniedError(SyscallError):
    """EPERM/EACCES: usually a missing capability (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN)."""


class KeyNotFoundError(SyscallError, KeyError):
    """ENOENT from a map lookup/delete; also a ``KeyError`` so ``m[k]`` behaves like a dict."""

    def __str__(self) -> str:  # KeyError.__str__ would repr() the message
        return self._message


class KeyExistsError(SyscallError):
    """EEXIST from a map update with ``NOEXIST``."""


class VerifierError(SyscallError):
    """The kernel's verifier rejected a program.

    ``program`` names it, ``log`` holds every line of the verifier log,
    ``source_line`` the source line of the failing instruction where BTF line
    info allowed finding it.  ``str()`` is a summary: the cause plus the last
    useful lines of the log; :meth:`format_log` gives the whole log.
    """

    def __init__(self, program: str, err: int, log: Sequence[str],
                 source_line: Optional[str] = None, truncated: bool = False,
                 notes: Sequence[str] = ()):
        self.program = program
        self.log = list(log)
        self.source_line = source_line
        self.truncated = truncated
        self.notes = list(notes)
        tail = _log_tail(self.log)
        hint = ""
        if source_line:
            hint += f"at source line: {source_line}"
        super().__init__("BPF_PROG_LOAD", err, f"program {program}", hint)
        summary = self._message
        if self.notes:
            summary += "\n" + "\n".join(f"  note: {n}" for n in self.notes)
        if tail:
            summary += "\nverifier log (last lines):\n" + "\n".join(f"  {l}" for l in tail)
        if truncated:
            summary += "\n  (log truncated)"
        self._message = summary
        self.args = (err, summary)

    def format_log(self) -> str:
        """The complete verifier log as one string."""
        return "\n".join(self.log)

    def __reduce__(self):
        return (type(self), (self.program, self.errno, self.log, self.source_line,
                             self.truncated, self.notes))


def _log_tail(log: Sequence[str], n: int = 6) -> list[str]:
    lines = [l for l in log if l.strip()]
    # Drop the trailing statistics lines the verifier prints after the error.
    while lines and (lines[-1].startswith("processed ") or lines[-1].startswith("verification time")
                     or lines[-1].startswith("stack depth")):
        lines.pop()
    return lines[-n:]


for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, BaseException) and _cls.__module__ == __name__:
        _cls.__module__ = "pybpf"
del _cls
