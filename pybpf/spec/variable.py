"""VariableSpec: a global variable in a data section, readable and settable before load."""

from __future__ import annotations

from typing import Any

import attrs

from ..btf.codec import BytesCodec, Codec, codec_for
from ..errors import BPFError

__all__ = ["VariableSpec"]


@attrs.define(eq=False)
class VariableSpec:
    """A variable of ``.data``/``.rodata``/``.bss``/``.data.*``/``.rodata.*``.

    ``value`` reads and writes the initial image of the owning map spec, so a
    ``const volatile`` knob in ``.rodata`` can be set before load.
    """
    name: str
    map: Any                   # the MapSpec of the section (shared with CollectionSpec.maps)
    offset: int
    size: int
    type_id: int = 0
    btf: Any = attrs.field(default=None, repr=False)

    @property
    def section(self) -> str:
        return self.map.section

    @property
    def codec(self) -> Codec:
        if self.btf is not None and self.type_id:
            return codec_for(self.btf, self.type_id)
        return BytesCodec(self.size)

    @property
    def raw(self) -> bytes:
        """The variable's initial bytes."""
        data = self.map.data or b""
        return bytes(data[self.offset:self.offset + self.size]).ljust(self.size, b"\0")

    @raw.setter
    def raw(self, b: bytes) -> None:
        if len(b) != self.size:
            raise BPFError(f"variable {self.name}: expected {self.size} bytes, got {len(b)}")
        data = bytearray(self.map.data or bytes(self.map.value_size))
        if len(data) < self.offset + self.size:
            data.extend(bytes(self.offset + self.size - len(data)))
        data[self.offset:self.offset + self.size] = b
        self.map.data = bytes(data)

    @property
    def value(self) -> Any:
        """The initial value, decoded through the variable's BTF type."""
        return self.codec.decode(self.raw)

    @value.setter
    def value(self, v: Any) -> None:
        try:
            self.raw = self.codec.encode(v)
        except (ValueError, TypeError, OverflowError) as e:
            raise BPFError(f"variable {self.name}: cannot set {v!r}: {e}") from None
