"""Verifier log handling: grow-and-retry, and turning a rejection into VerifierError."""

from __future__ import annotations

import errno
import re
from typing import Callable, List, Optional, Sequence

from ..errors import SyscallError, VerifierError

__all__ = ["load_with_log", "failing_insn"]

_LOG_START = 64 * 1024
_LOG_MAX = (1 << 30) - 1        # the kernel caps log_size at UINT_MAX >> 2
_INSN_RE = re.compile(r"^(\d+): \(")


def failing_insn(log: Sequence[str]) -> Optional[int]:
    """The index of the last instruction the verifier printed before giving up."""
    for line in reversed(log):
        m = _INSN_RE.match(line)
        if m:
            return int(m.group(1))
    return None


def load_with_log(do_load: Callable[[int, Optional[bytearray]], object], program: str,
                  source_line: Callable[[int], Optional[str]] = lambda i: None,
                  log_level: int = 0, log_size: int = 0, notes: Callable[[List[str]], List[str]] = lambda l: []) -> object:
    """Run ``do_load(log_level, log_buf)``; on a verifier rejection retry with a log.

    As libbpf does, the first attempt runs without a log (fast path) unless
    ``log_level`` asks for one; a failure is retried with log level 1 and a
    buffer that doubles on ENOSPC.  Raises :class:`VerifierError` carrying the
    whole log and the source line of the failing instruction.
    """
    if log_level == 0:
        try:
            return do_load(0, None)
        except SyscallError as e:
            if e.errno not in (errno.EACCES, errno.EINVAL, errno.E2BIG, errno.ENOSPC, errno.EFAULT,
                               errno.ERANGE, errno.ENOTSUPP if hasattr(errno, "ENOTSUPP") else 524):
                raise
        log_level = 1
    size = max(log_size, _LOG_START)
    while True:
        buf = bytearray(size)
        try:
            return do_load(log_level, buf)
        except SyscallError as e:
            log = _lines(buf)
            if e.errno == errno.ENOSPC and size < _LOG_MAX:
                size = min(size * 4, _LOG_MAX)
                continue
            if not log:
                raise
            idx = failing_insn(log)
            src = source_line(idx) if idx is not None else None
            raise VerifierError(program, e.errno, log, src, truncated=e.errno == errno.ENOSPC,
                                notes=notes(log)) from None


def _lines(buf: bytearray) -> List[str]:
    end = buf.find(b"\0")
    text = bytes(buf[:end if end >= 0 else len(buf)]).decode("utf-8", "replace")
    return text.splitlines()
