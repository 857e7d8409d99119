"""Folded stacks: the input format of flame graphs (``flamegraph.pl``, speedscope, inferno).

One line per distinct stack, outermost frame first, frames joined by ``;``, then
a space and the count::

    myprog;main;handle_request;read;entry_SYSCALL_64;do_syscall_64 12

For a sample that has both, the user stack comes first and the kernel stack
(called from it) after.  ``;`` inside names is replaced (it separates frames).
"""

from __future__ import annotations

from collections import Counter
from typing import IO, Iterable, List, Optional, Sequence, Tuple, Union

from .symbolizer import Frame

__all__ = ["FoldedStacks", "fold"]

FrameLike = Union[Frame, str]


def _name(f: FrameLike, kernel: bool, annotate: bool) -> str:
    n = f.label if isinstance(f, Frame) else str(f)
    n = n.replace(";", ":").replace("\n", " ")
    return n + "_[k]" if kernel and annotate else n


class FoldedStacks:
    """Counts stacks and writes them folded.

    ``add(comm, user=..., kernel=..., count=...)`` takes stacks innermost first (as BPF
    records them); ``annotate_kernel`` appends ``_[k]`` to kernel frames (flamegraph.pl
    colours them apart).
    """

    def __init__(self, *, annotate_kernel: bool = False):
        self.counts: Counter = Counter()
        self.annotate_kernel = annotate_kernel

    def add(self, comm: Optional[str], user: Sequence[FrameLike] = (),
            kernel: Sequence[FrameLike] = (), count: int = 1) -> str:
        """Count one (or ``count``) samples; returns the folded key."""
        parts: List[str] = [comm.replace(";", ":")] if comm else []
        parts += [_name(f, False, False) for f in reversed(user)]
        parts += [_name(f, True, self.annotate_kernel) for f in reversed(kernel)]
        key = ";".join(parts)
        self.counts[key] += count
        return key

    def lines(self) -> List[str]:
        """``"stack count"`` lines, sorted by stack."""
        return [f"{k} {v}" for k, v in sorted(self.counts.items())]

    def write(self, out: IO[str]) -> None:
        for line in self.lines():
            out.write(line + "\n")

    def __str__(self) -> str:
        return "".join(line + "\n" for line in self.lines())


def fold(samples: Iterable[Tuple[Optional[str], Sequence[FrameLike], Sequence[FrameLike], int]]) -> str:
    """Folded text for ``(comm, user stack, kernel stack, count)`` samples."""
    fs = FoldedStacks()
    for comm, user, kernel, count in samples:
        fs.add(comm, user, kernel, count)
    return str(fs)
