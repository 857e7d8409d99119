"""Finding the target types a local type may correspond to.

A candidate is a target type of a compatible kind (the same kind; ENUM and
ENUM64 stand for each other) whose *essential* name – the name without its
``___flavor`` suffix – equals the local type's essential name.  So
``task_struct___v2`` looks for ``task_struct``, ``task_struct___x``, ...

Where to look follows libbpf: the first target (vmlinux) alone; only when it
has no candidate at all are the other targets (kernel modules, split BTF whose
base is vmlinux) searched, all together.  Of a split spec only its own types
are considered, not those of its base.

Lookups go through :meth:`pybpf.btf.Spec.find` (a name index built once per
spec) plus a small per-spec index of flavored names, so finding candidates in
vmlinux costs a few dictionary lookups, not a scan of 100k types.
"""

from __future__ import annotations

import weakref
from typing import Dict, List, Sequence, Tuple

import attrs

from ..btf import Spec
from ..errors import CORERelocationError
from .compat import essential_name, kinds_compatible

__all__ = ["Candidate", "CandidateCache", "find_candidates", "target_label"]


@attrs.frozen
class Candidate:
    """One target type a local type may be relocated onto.

    ``target`` is the index of its spec in the ``targets`` sequence
    (0 = vmlinux), ``spec`` that spec, ``type_id`` the type's id in it.
    """
    spec: Spec = attrs.field(eq=False, repr=False)
    type_id: int
    target: int
    label: str = ""

    def describe(self) -> str:
        """``struct task_struct [128] of vmlinux``."""
        return f"{self.spec.type_name(self.type_id)} [{self.type_id}] of {self.label}"


def target_label(spec: Spec, index: int) -> str:
    """How messages name a target BTF: its file name, else ``vmlinux`` / ``module BTF #n``."""
    if spec.file:
        return str(spec.file)
    return "kernel BTF" if index == 0 else f"module BTF #{index}"


# essential name -> flavored names with that essential name, per spec (own types only).
_FLAVORED: "weakref.WeakKeyDictionary[Spec, Dict[str, List[str]]]" = weakref.WeakKeyDictionary()


def _flavored_names(spec: Spec) -> Dict[str, List[str]]:
    idx = _FLAVORED.get(spec)
    if idx is None:
        idx = {}
        for name in spec.names_containing("___"):
            ess = essential_name(name)
            if ess != name:
                idx.setdefault(ess, []).append(name)
        _FLAVORED[spec] = idx
    return idx


def _candidates_in(spec: Spec, index: int, ess: str, local_kind: int, label: str) -> List[Candidate]:
    names = [ess] + _flavored_names(spec).get(ess, [])
    ids = set()
    for name in names:
        if essential_name(name) != ess:  # e.g. ess "a___b" is itself flavored: "a___b" means "a"
            continue
        for tid in spec.find(name):
            if tid >= spec.start_id and kinds_compatible(spec.kind_of(tid), local_kind):  # type: ignore[arg-type]
                ids.add(tid)
    return [Candidate(spec, tid, index, label) for tid in sorted(ids)]


def find_candidates(local: Spec, local_id: int, targets: Sequence[Spec]) -> List[Candidate]:
    """Candidates for local type ``local_id``: vmlinux's (``targets[0]``) if it has
    any, else those of every other target together, each list in type-id order."""
    t = local.type(local_id)
    if not t.name:
        raise CORERelocationError(f"CO-RE relocations against the anonymous "
                                  f"{local.type_name(local_id)} [{local_id}] are not supported")
    ess = essential_name(t.name)
    found: List[Candidate] = []
    for i, spec in enumerate(targets):
        found.extend(_candidates_in(spec, i, ess, t.kind, target_label(spec, i)))
        if i == 0 and found:
            break
    return found


class CandidateCache:
    """Candidate lists per local type id, shared by the relocations of one object.

    As in libbpf, once a relocation has been resolved the list of its local type
    is narrowed to the candidates that matched it (when any did), so later
    relocations of the same type agree with earlier ones.  Pass one cache to
    every :func:`pybpf.core.relocate` call of an object (one per section) to get
    libbpf's object-wide behaviour; it is tied to that object's BTF and targets.
    """

    def __init__(self, local: Spec, targets: Sequence[Spec]):
        self.local = local
        self.targets: Tuple[Spec, ...] = tuple(targets)
        self._lists: Dict[int, List[Candidate]] = {}

    def get(self, local_id: int) -> List[Candidate]:
        """The current candidate list of ``local_id`` (searched on first use)."""
        lst = self._lists.get(local_id)
        if lst is None:
            lst = find_candidates(self.local, local_id, self.targets)
            self._lists[local_id] = lst
        return lst

    def narrow(self, local_id: int, matched: Sequence[Candidate]) -> None:
        """Keep only ``matched`` for ``local_id`` (ignored when nothing matched)."""
        if matched:
            self._lists[local_id] = list(matched)

    def check(self, local: Spec, targets: Sequence[Spec]) -> None:
        """Refuse to be used for another object or another set of targets."""
        if local is not self.local or len(targets) != len(self.targets) or \
                any(a is not b for a, b in zip(targets, self.targets)):
            raise CORERelocationError("candidate cache belongs to another object or target set")
