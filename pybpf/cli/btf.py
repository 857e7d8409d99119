"""``pybpf btf dump FILE``: print BTF as bpftool's raw lines, a C header, or JSON.

FILE is raw BTF (``/sys/kernel/btf/vmlinux``, a module's
``/sys/kernel/btf/NAME``) or any ELF file with a ``.BTF`` section (a BPF
object, a vmlinux image).  Module BTF is split BTF: its type ids continue
after vmlinux's, so it is parsed on top of a base (``--base``, or
automatically ``/sys/kernel/btf/vmlinux`` for files next to it).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

from ..btf import Spec
from ..errors import ParseError
from .output import emit_json

__all__ = ["register", "load_btf_file"]

_KERNEL_BTF_DIR = "/sys/kernel/btf"
_VMLINUX = os.path.join(_KERNEL_BTF_DIR, "vmlinux")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror}", file=path) from None


def _btf_bytes(path: str) -> bytes:
    data = _read(path)
    if data[:4] == b"\x7fELF":
        from ..elf.elffile import read_btf_section
        return read_btf_section(data, path)
    return data


def load_btf_file(path: str, base: Optional[str] = None) -> Spec:
    """Parse the BTF of ``path`` (raw or ELF); split BTF on top of ``base``.

    Without ``base``, a file in ``/sys/kernel/btf`` other than ``vmlinux`` is
    taken to be module BTF and parsed on top of ``/sys/kernel/btf/vmlinux``
    (as bpftool does).
    """
    if base is None:
        real = os.path.realpath(path)
        if os.path.dirname(real) == _KERNEL_BTF_DIR and real != _VMLINUX:
            base = _VMLINUX
    base_spec = Spec.parse(_btf_bytes(base), file=base) if base is not None else None
    return Spec.parse(_btf_bytes(path), base=base_spec, file=path)


def _write_lines(lines: Any) -> None:
    write = sys.stdout.write
    chunk: list = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= 4096:
            write("\n".join(chunk) + "\n")
            chunk.clear()
    if chunk:
        write("\n".join(chunk) + "\n")


def run_dump(args: argparse.Namespace) -> int:
    spec = load_btf_file(os.fspath(args.file), args.base)
    fmt = "json" if args.json else args.format
    if fmt == "raw":
        from ..btf.rawdump import dump_raw
        _write_lines(dump_raw(spec))
    elif fmt == "c":
        from ..btf.cdump import dump_c
        sys.stdout.write(dump_c(spec))
    elif fmt == "python":
        from ..btf.pygen import generate
        sys.stdout.write(generate(spec, args.types, source=os.path.basename(args.file)))
    else:
        from ..btf.rawdump import type_to_dict
        emit_json({"types": [type_to_dict(spec, i) for i in range(spec.start_id, len(spec))]})
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("btf", help="BTF tools", description="Work with BTF type information.")
    btf_sub = p.add_subparsers(dest="btf_command", metavar="COMMAND", required=True)
    d = btf_sub.add_parser(
        "dump", parents=[common], help="print the types of a BTF file",
        description="Print every type of FILE: raw BTF (such as /sys/kernel/btf/vmlinux) or an "
                    "ELF file with a .BTF section (such as a BPF object).",
        epilog="Formats: 'raw' is bpftool's 'btf dump file FILE format raw' line format; 'c' is "
               "a compilable C header (vmlinux.h); 'python' a module of typed classes (dataclasses "
               "with from_bytes/to_bytes, IntEnums) for the types named with --type (default: "
               "all); 'json' (also --json) is one document "
               "{\"types\": [...]} shaped like bpftool's --json output. Split (module) BTF "
               "needs its base: files in /sys/kernel/btf use vmlinux automatically.")
    d.add_argument("file", metavar="FILE", help="raw BTF or ELF file with .BTF")
    d.add_argument("--format", choices=("raw", "c", "python", "json"), default="raw",
                   help="output format (default: raw)")
    d.add_argument("--type", action="append", dest="types", metavar="NAME",
                   help="with --format python: a type to generate (repeatable; its dependencies "
                        "come along)")
    d.add_argument("--base", metavar="FILE", help="base BTF for split BTF (module BTF)")
    d.set_defaults(func=run_dump)
