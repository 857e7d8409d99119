"""Object BTF rewritten for kernels whose BTF loader is older than the compiler (pure).

clang emits BTF kinds that older kernels refuse (``BPF_BTF_LOAD`` fails with
EINVAL "Invalid kind", and libbpf would then load everything without BTF).
As libbpf's ``bpf_object__sanitize_btf`` does, each kind the running kernel
lacks is replaced by an older kind of the same size and shape:

===================  ==============  =================================================
kernel lacks         kind            becomes
===================  ==============  =================================================
``datasec`` (5.2)    VAR             INT ``name``, 1 byte, 8 bits
``datasec``          DATASEC         STRUCT (``.``/``?`` in the name -> ``_``), one
                                     member per variable, named after it
``qmark_datasec``    DATASEC ``?x``  the leading ``?`` becomes ``_``
``func`` (5.0)       FUNC_PROTO      ENUM of size 4: one value per parameter (value =
                                     parameter type id; unnamed parameters get a name)
``func``             FUNC            TYPEDEF of the (former) prototype
``func_global``      FUNC global     FUNC static (5.6 added global linkage)
``float`` (5.13)     FLOAT           anonymous empty STRUCT of the same size
``decl_tag`` (5.16)  DECL_TAG        INT ``name``, 1 byte, 8 bits (also a tag whose
                                     VAR/FUNC target is rewritten, so that feature
                                     combinations no kernel has still load)
``type_tag`` (5.17)  TYPE_TAG        anonymous CONST of the same type
``enum64`` (6.0)     ENUM64          UNION of the same size, one member per value,
                                     each of type INT ``enum64_placeholder``
``enum64``           signed ENUM     unsigned ENUM (the kind flag came with ENUM64)
===================  ==============  =================================================

Type ids stay where they are, so map key/value type ids, func/line info and
CO-RE records keep pointing at the same types; the only new type, the
``enum64_placeholder`` INT, is appended after the last one (as libbpf does).
The string section is kept byte for byte (line info points into it); new
names are appended.

Only the copy sent to the kernel is sanitized: CO-RE must keep working on
the compiler's original BTF.  When ``func`` is missing the kernel also
rejects func/line info (they name FUNC types), so the loader must drop
``func_info``, ``line_info`` and ``prog_btf_fd`` from ``BPF_PROG_LOAD``
(:attr:`BTFFeatures.func_info`).
"""

from __future__ import annotations

from typing import List, Tuple

import attrs

from .marshal import marshal
from .parse import Spec
from .types import (
    AnyEnum, AnyType, Const, Datasec, DeclTag, Enum, Enum64, EnumValue, Float, Func, FuncProto,
    Int, IntEncoding, Kind, Linkage, Member, Struct, Typedef, TypeTag, Union,
)

__all__ = ["BTFFeatures", "sanitize", "needs_sanitization", "ENUM64_PLACEHOLDER"]

ENUM64_PLACEHOLDER = "enum64_placeholder"
"""Name of the INT appended as the member type of ENUM64s turned into UNIONs."""


@attrs.frozen
class BTFFeatures:
    """Which BTF kinds the target kernel's BTF loader accepts (True: accepted).

    :func:`pybpf.features.btf_features` probes the running kernel;
    :meth:`all` and :meth:`none` describe a current and a 4.18-era kernel.
    """
    func: bool = True            # FUNC and FUNC_PROTO (5.0)
    func_global: bool = True     # FUNC with global linkage (5.6)
    datasec: bool = True         # VAR and DATASEC (5.2)
    qmark_datasec: bool = True   # DATASEC names starting with '?' (6.5)
    float: bool = True           # FLOAT (5.13)
    decl_tag: bool = True        # DECL_TAG (5.16)
    type_tag: bool = True        # TYPE_TAG (5.17)
    enum64: bool = True          # ENUM64 and signed ENUM (6.0)

    @classmethod
    def all(cls) -> "BTFFeatures":
        """A kernel that accepts every kind pybpf knows."""
        return cls()

    @classmethod
    def none(cls) -> "BTFFeatures":
        """A kernel that knows only the original BTF kinds (4.18)."""
        return cls(**{f.name: False for f in attrs.fields(cls)})

    @property
    def func_info(self) -> bool:
        """Whether programs may be loaded with func/line info (needs FUNC)."""
        return self.func

    def missing(self) -> Tuple[str, ...]:
        """Names of the features this kernel lacks, in field order."""
        return tuple(f.name for f in attrs.fields(type(self)) if not getattr(self, f.name))


def _affected(kind: Kind, f: BTFFeatures) -> bool:
    if kind in (Kind.VAR, Kind.DATASEC):
        return not f.datasec or (kind == Kind.DATASEC and not f.qmark_datasec)
    if kind == Kind.FUNC:
        return not f.func or not f.func_global
    if kind == Kind.FUNC_PROTO:
        return not f.func
    if kind == Kind.FLOAT:
        return not f.float
    if kind == Kind.DECL_TAG:
        return not f.decl_tag
    if kind == Kind.TYPE_TAG:
        return not f.type_tag
    if kind in (Kind.ENUM, Kind.ENUM64):
        return not f.enum64
    return False


def needs_sanitization(spec: Spec, features: BTFFeatures) -> bool:
    """Whether ``spec`` holds a type that ``features`` says the kernel would refuse.

    Cheap: looks at kinds only (no type is decoded).
    """
    if features == BTFFeatures.all():
        return False
    kinds = {spec.kind_of(tid) for tid in range(spec.start_id, len(spec))}
    return any(_affected(k, features) for k in kinds)


def _byte_int(name: str) -> Int:
    # 1 byte is the safe size: a bigger INT could overrun a small variable's slot.
    return Int(name, 1, IntEncoding.NONE, 0, 8)


def _param_name(tid: int, idx: int) -> str:
    # Enum values must be named C identifiers; prototypes of function pointers and
    # variadic markers have unnamed parameters (the kernel would say "Invalid name").
    return f"__pybpf_proto{tid}_param{idx}"


def _sanitized(spec: Spec, tid: int, t: AnyType, f: BTFFeatures, placeholder: int) -> AnyType:
    """The replacement for type ``tid`` (``t`` itself when the kernel accepts it)."""
    k = t.kind
    if (k == Kind.VAR and not f.datasec) or (k == Kind.DECL_TAG and not _keeps_tag(spec, t, f)):
        return _byte_int(t.name)
    if k == Kind.DATASEC:
        assert isinstance(t, Datasec)
        if not f.datasec:
            return _datasec_struct(spec, t)
        if not f.qmark_datasec and t.name.startswith("?"):
            return attrs.evolve(t, name="_" + t.name[1:])
        return t
    if k == Kind.FUNC_PROTO and not f.func:
        assert isinstance(t, FuncProto)
        values = tuple(EnumValue(p.name or _param_name(tid, i), p.type)
                       for i, p in enumerate(t.params))
        return Enum("", 4, False, values)
    if k == Kind.FUNC:
        assert isinstance(t, Func)
        if not f.func:
            return Typedef(t.name, t.type)
        if not f.func_global and t.linkage == Linkage.GLOBAL:
            return attrs.evolve(t, linkage=Linkage.STATIC)
        return t
    if k == Kind.FLOAT and not f.float:
        assert isinstance(t, Float)
        return Struct("", t.size, ())
    if k == Kind.TYPE_TAG and not f.type_tag:
        assert isinstance(t, TypeTag)
        return Const("", t.type)
    if k == Kind.ENUM and not f.enum64:
        assert isinstance(t, AnyEnum)
        return attrs.evolve(t, signed=False) if t.signed else t
    if k == Kind.ENUM64 and not f.enum64:
        assert isinstance(t, Enum64)
        return Union(t.name, t.size, tuple(Member(v.name, placeholder, 0, 0) for v in t.values))
    return t


def _keeps_tag(spec: Spec, t: AnyType, f: BTFFeatures) -> bool:
    """A DECL_TAG survives if the kernel knows tags and its target keeps its kind."""
    if not f.decl_tag:
        return False
    assert isinstance(t, DeclTag)
    target = spec.kind_of(t.type)
    return not ((target == Kind.VAR and not f.datasec) or (target == Kind.FUNC and not f.func))


def _datasec_struct(spec: Spec, t: Datasec) -> Struct:
    name = t.name.replace(".", "_").replace("?", "_")
    members = tuple(Member(spec.type(v.type).name, v.type, v.offset * 8, 0) for v in t.vars)
    return Struct(name, t.size, members)


def sanitize(spec: Spec, features: BTFFeatures) -> Spec:
    """``spec`` with every type the kernel described by ``features`` would refuse replaced.

    Returns ``spec`` itself when nothing needs to change.  Type ids are kept
    (see the module docstring); split BTF (module BTF) is not object BTF and
    is refused with ``ValueError``.
    """
    if spec.base is not None:
        raise ValueError("sanitize() takes object BTF, not split BTF")
    if not needs_sanitization(spec, features):
        return spec
    placeholder = 0
    if not features.enum64 and any(spec.kind_of(i) == Kind.ENUM64
                                   for i in range(spec.start_id, len(spec))):
        placeholder = len(spec)  # the next free id, appended below
    types: List[AnyType] = [_sanitized(spec, tid, t, features, placeholder)
                            for tid, t in spec.types()]
    if placeholder:
        types.append(_byte_int(ENUM64_PLACEHOLDER))
    raw = marshal(types, spec.byteorder, spec.strings_raw)
    return Spec.parse(raw, file=spec.file)
