"""The BTF type model.

Types are immutable records (``attrs.frozen``).  References between types are
*type ids* (ints), resolved through the :class:`pybpf.btf.Spec` that holds
them: this keeps kernel BTF (over 100k types) cheap to decode lazily, and lets
CO-RE work on ids of two specs side by side, as the kernel and libbpf do.
Type id 0 is ``void``.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Tuple, Union as _U

import attrs

__all__ = [
    "Kind", "IntEncoding", "Linkage", "Type", "Void", "Int", "Ptr", "Array", "Member", "Struct",
    "Union", "EnumValue", "Enum", "Enum64", "Fwd", "Typedef", "Volatile", "Const", "Restrict",
    "Func", "Param", "FuncProto", "Var", "VarSecinfo", "Datasec", "Float", "DeclTag", "TypeTag",
    "Composite", "AnyEnum", "MODIFIER_KINDS",
]


class Kind(enum.IntEnum):
    """BTF_KIND_* numbers (include/uapi/linux/btf.h)."""
    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class IntEncoding(enum.IntFlag):
    """BTF_INT_* encoding bits."""
    NONE = 0
    SIGNED = 1
    CHAR = 2
    BOOL = 4


class Linkage(enum.IntEnum):
    """Linkage of FUNC (static/global/extern) and VAR (static/global/extern)."""
    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


@attrs.frozen
class Type:
    """Base of all BTF types.  ``name`` is ``""`` for anonymous types."""
    kind: ClassVar[Kind] = Kind.UNKN
    name: str = ""


@attrs.frozen
class Void(Type):
    kind: ClassVar[Kind] = Kind.UNKN


@attrs.frozen
class Int(Type):
    size: int = 0
    encoding: IntEncoding = IntEncoding.NONE
    bit_offset: int = 0
    bits: int = 0
    kind: ClassVar[Kind] = Kind.INT

    @property
    def signed(self) -> bool:
        return bool(self.encoding & IntEncoding.SIGNED)


@attrs.frozen
class Ptr(Type):
    type: int = 0
    kind: ClassVar[Kind] = Kind.PTR


@attrs.frozen
class Array(Type):
    type: int = 0
    index_type: int = 0
    nelems: int = 0
    kind: ClassVar[Kind] = Kind.ARRAY


@attrs.frozen
class Member:
    """A struct/union member.  ``offset`` is in bits; ``bitfield_size`` is 0 for normal members."""
    name: str
    type: int
    offset: int
    bitfield_size: int = 0


@attrs.frozen
class Composite(Type):
    size: int = 0
    members: Tuple[Member, ...] = ()

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)


@attrs.frozen
class Struct(Composite):
    kind: ClassVar[Kind] = Kind.STRUCT


@attrs.frozen
class Union(Composite):
    kind: ClassVar[Kind] = Kind.UNION


@attrs.frozen
class EnumValue:
    name: str
    value: int


@attrs.frozen
class AnyEnum(Type):
    size: int = 4
    signed: bool = False
    values: Tuple[EnumValue, ...] = ()

    def value_of(self, name: str) -> int:
        for v in self.values:
            if v.name == name:
                return v.value
        raise KeyError(name)


@attrs.frozen
class Enum(AnyEnum):
    kind: ClassVar[Kind] = Kind.ENUM


@attrs.frozen
class Enum64(AnyEnum):
    kind: ClassVar[Kind] = Kind.ENUM64


@attrs.frozen
class Fwd(Type):
    is_union: bool = False
    kind: ClassVar[Kind] = Kind.FWD


@attrs.frozen
class Typedef(Type):
    type: int = 0
    kind: ClassVar[Kind] = Kind.TYPEDEF


@attrs.frozen
class Volatile(Type):
    type: int = 0
    kind: ClassVar[Kind] = Kind.VOLATILE


@attrs.frozen
class Const(Type):
    type: int = 0
    kind: ClassVar[Kind] = Kind.CONST


@attrs.frozen
class Restrict(Type):
    type: int = 0
    kind: ClassVar[Kind] = Kind.RESTRICT


@attrs.frozen
class TypeTag(Type):
    type: int = 0
    kind: ClassVar[Kind] = Kind.TYPE_TAG


@attrs.frozen
class Func(Type):
    type: int = 0           # a FuncProto
    linkage: Linkage = Linkage.STATIC
    kind: ClassVar[Kind] = Kind.FUNC


@attrs.frozen
class Param:
    name: str
    type: int


@attrs.frozen
class FuncProto(Type):
    return_type: int = 0
    params: Tuple[Param, ...] = ()
    kind: ClassVar[Kind] = Kind.FUNC_PROTO


@attrs.frozen
class Var(Type):
    type: int = 0
    linkage: Linkage = Linkage.STATIC
    kind: ClassVar[Kind] = Kind.VAR


@attrs.frozen
class VarSecinfo:
    type: int      # a Var (or Func for .ksyms)
    offset: int
    size: int


@attrs.frozen
class Datasec(Type):
    size: int = 0
    vars: Tuple[VarSecinfo, ...] = ()
    kind: ClassVar[Kind] = Kind.DATASEC


@attrs.frozen
class Float(Type):
    size: int = 0
    kind: ClassVar[Kind] = Kind.FLOAT


@attrs.frozen
class DeclTag(Type):
    type: int = 0
    component_idx: int = -1
    kind: ClassVar[Kind] = Kind.DECL_TAG


MODIFIER_KINDS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})

AnyType = _U[Void, Int, Ptr, Array, Struct, Union, Enum, Enum64, Fwd, Typedef, Volatile, Const,
             Restrict, Func, FuncProto, Var, Datasec, Float, DeclTag, TypeTag]
