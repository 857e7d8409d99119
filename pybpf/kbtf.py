"""Kernel-side BTF: reading the running kernel's BTF and BTF loaded into the kernel."""

from __future__ import annotations

import os
from typing import Optional, Union

from .btf import Spec
from .errors import NotSupportedError, ParseError

__all__ = ["load_kernel_btf", "VMLINUX_BTF"]

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
_cache: dict = {}


def load_kernel_btf(source: Union[None, str, os.PathLike, bytes, Spec] = None) -> Spec:
    """The target BTF for CO-RE and BTF-id lookups.

    ``None`` reads the running kernel's ``/sys/kernel/btf/vmlinux`` (parsed
    once per process); a path may name raw BTF or an ELF file with a ``.BTF``
    section (like libbpf's ``btf_custom_path``); bytes are raw BTF or ELF.
    """
    if isinstance(source, Spec):
        return source
    if source is None:
        spec = _cache.get(VMLINUX_BTF)
        if spec is None:
            if not os.path.exists(VMLINUX_BTF):
                raise NotSupportedError("kernel BTF", f"{VMLINUX_BTF} does not exist (kernel built "
                                        "without CONFIG_DEBUG_INFO_BTF); pass kernel_btf=PATH",
                                        min_kernel="5.4")
            with open(VMLINUX_BTF, "rb") as f:
                spec = Spec.parse(f.read(), file=VMLINUX_BTF)
            _cache[VMLINUX_BTF] = spec
        return spec
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "<bytes>"
    else:
        name = os.fspath(source)
        try:
            with open(name, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ParseError(f"cannot read BTF: {e.strerror}", file=name) from None
    if data[:4] == b"\x7fELF":
        from .elf.elffile import read_btf_section
        data = read_btf_section(data, name)
    return Spec.parse(data, file=name)
