"""Program: a loaded BPF program (owns an fd)."""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import attrs

from .. import sys as _sys
from ..consts import ProgType
from ..spec.program import ProgramSpec
from ..sys.fd import FD

__all__ = ["Program", "ProgramInfo", "TestRunResult"]

# Program types whose test runs hand the (modified) context back.
_CTX_OUT_TYPES = frozenset({ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.SOCKET_FILTER,
                            ProgType.XDP, ProgType.CGROUP_SKB, ProgType.LWT_IN, ProgType.LWT_OUT,
                            ProgType.LWT_XMIT})


@attrs.frozen
class ProgramInfo:
    """What the kernel reports about a program (BPF_OBJ_GET_INFO_BY_FD)."""
    id: int
    type: int
    name: str
    tag: str
    btf_id: int
    xlated_prog_len: int
    jited_prog_len: int
    verified_insns: int
    run_time_ns: int
    run_cnt: int
    map_ids: tuple


class Program:
    """A BPF program loaded in the kernel.

    Programs come from :meth:`pybpf.Collection` loading, or are adopted with
    :meth:`from_fd`, :meth:`from_id` or :meth:`from_pinned`.  ``attach()``
    hooks the program up according to its section name (see :mod:`pybpf.link`).
    """

    def __init__(self, fd: FD, *, name: str, type: int, spec: Optional[ProgramSpec] = None,
                 collection: Any = None):
        self._fd = fd
        fd.owner = f"program {name}"
        self.name = name
        self.type = ProgType(type) if type in ProgType._value2member_map_ else type
        self.spec = spec
        self._collection = collection

    @classmethod
    def from_fd(cls, fd: Union[int, FD], *, name: Optional[str] = None) -> "Program":
        """Adopt a program fd (takes ownership of an FD; dups a plain int)."""
        if isinstance(fd, int):
            fd = _sys.dup_fd(fd)
        info = _sys.prog_info(fd.fileno())
        return cls(fd, name=name or info["name"], type=info["type"])

    @classmethod
    def from_id(cls, prog_id: int) -> "Program":
        return cls.from_fd(_sys.prog_get_fd_by_id(prog_id))

    @classmethod
    def from_pinned(cls, path: Union[str, os.PathLike]) -> "Program":
        return cls.from_fd(_sys.obj_get(os.fspath(path)))

    @property
    def fd(self) -> int:
        return self._fd.fileno()

    @property
    def section(self) -> str:
        return self.spec.section if self.spec is not None else ""

    def close(self) -> None:
        self._fd.close()

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def __enter__(self) -> "Program":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pin(self, path: Union[str, os.PathLike]) -> None:
        """Pin the program on bpffs at ``path``."""
        _sys.obj_pin(self.fd, os.fspath(path), context=f"program {self.name}")

    def info(self) -> ProgramInfo:
        i = _sys.prog_info(self.fd)
        return ProgramInfo(id=i["id"], type=i["type"], name=i["name"], tag=i["tag"].hex() if isinstance(i["tag"], (bytes, bytearray)) else str(i["tag"]),
                           btf_id=i["btf_id"], xlated_prog_len=i["xlated_prog_len"],
                           jited_prog_len=i["jited_prog_len"], verified_insns=i["verified_insns"],
                           run_time_ns=i["run_time_ns"], run_cnt=i["run_cnt"],
                           map_ids=tuple(i.get("map_ids", ())))

    def test_run(self, data_in: bytes = b"", *, ctx_in: Optional[bytes] = None, repeat: int = 0,
                 data_size_out: Optional[int] = None, ctx_size_out: Optional[int] = None,
                 flags: int = 0, cpu: int = 0, batch_size: int = 0) -> "TestRunResult":
        """Run the program in the kernel with BPF_PROG_TEST_RUN (BPF_PROG_RUN).

        ``data_in`` is the packet (xdp, tc, socket filter, flow dissector), ``ctx_in``
        the context (``struct __sk_buff``, ``xdp_md``, raw_tp args, a syscall
        program's argument struct).  Output buffers default to ``len(data_in) + 256``
        (programs may grow packets) and ``len(ctx_in)``; for syscall programs the
        context as the program left it comes back as ``ctx_out``.  ``repeat`` runs
        the program that many times (0 = once) and ``duration_ns`` is the average.
        """
        if data_size_out is None:
            data_size_out = len(data_in) + 256 if data_in else 0
        is_syscall = self.type == ProgType.SYSCALL
        if ctx_size_out is None:
            ctx_size_out = len(ctx_in) if ctx_in and self.type in _CTX_OUT_TYPES else 0
        r = _sys.prog_test_run(self.fd, data_in=data_in, ctx_in=ctx_in, repeat=repeat,
                               data_size_out=data_size_out, ctx_size_out=ctx_size_out,
                               flags=flags, cpu=cpu, batch_size=batch_size,
                               context=f"program {self.name}")
        ctx_out = r.get("ctx_in_after", b"") if is_syscall else r.get("ctx_out", b"")
        return TestRunResult(retval=r["retval"], duration_ns=r["duration"],
                             data_out=r.get("data_out", b""), ctx_out=ctx_out)

    def attach(self, *args: Any, **kwargs: Any) -> Any:
        """Attach the program as its section name says; returns a Link (see :mod:`pybpf.link`)."""
        from ..link import attach_program
        return attach_program(self, *args, **kwargs)

    def __repr__(self) -> str:
        t = self.type.name if isinstance(self.type, ProgType) else self.type
        return f"<pybpf.Program {self.name} type={t} fd={'closed' if self.closed else self.fd}>"


@attrs.frozen
class TestRunResult:
    """Result of :meth:`Program.test_run`."""
    retval: int
    duration_ns: int
    data_out: bytes = b""
    ctx_out: bytes = b""
