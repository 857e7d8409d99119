#!/usr/bin/env python3
"""Build BPF C sources with clang-19 against a vmlinux.h that pybpf generates.

    python tools/build_bpf.py OUT_DIR SRC.bpf.c [SRC.bpf.c ...]

vmlinux.h is generated from /sys/kernel/btf/vmlinux by pybpf's own BTF C
dumper (``pybpf btf dump ... --format c``) and cached in OUT_DIR.  Objects are
built with ``-target bpf -g -O2`` (clang-19: Debian's clang 14 cannot emit
ENUM64 or TYPE_MATCHES relocations).  Used by the test suite, programs/ and the
wheel build; never at run time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, List

ROOT = Path(__file__).resolve().parent.parent
CLANG_CANDIDATES = ("clang-19", "clang")


def find_clang() -> str:
    env = os.environ.get("BPF_CLANG")
    if env:
        return env
    for c in CLANG_CANDIDATES:
        path = shutil.which(c)
        if path:
            if c == "clang":
                out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
                if "version 19" not in out and "version 2" not in out:
                    continue
            return path
    raise SystemExit("clang-19 not found: apt-get install clang-19 (Debian's clang 14 cannot "
                     "emit ENUM64/TYPE_MATCHES)")


def find_strip() -> "str | None":
    return shutil.which("llvm-strip-19") or shutil.which("llvm-strip")


def vmlinux_h(out_dir: Path, btf_path: str = "/sys/kernel/btf/vmlinux") -> Path:
    """Generate (once) OUT_DIR/vmlinux.h from kernel BTF with pybpf's dumper."""
    sys.path.insert(0, str(ROOT))
    from pybpf.btf import Spec
    from pybpf.btf.cdump import dump_c
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "vmlinux.h"
    stamp = out_dir / "vmlinux.h.src"
    st = os.stat(btf_path)
    key = f"{btf_path} {st.st_size} {int(st.st_mtime)}"
    if target.exists() and stamp.exists() and stamp.read_text() == key:
        return target
    with open(btf_path, "rb") as f:
        spec = Spec.parse(f.read(), file=btf_path)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(dump_c(spec))
    tmp.replace(target)
    stamp.write_text(key)
    return target


def build(out_dir: Path, sources: Iterable[Path], extra_cflags: Iterable[str] = ()) -> List[Path]:
    """Compile each source to OUT_DIR/<name>.bpf.o (only when out of date)."""
    clang = find_clang()
    header = vmlinux_h(out_dir)
    arch = {"x86_64": "x86", "aarch64": "arm64", "s390x": "s390", "ppc64le": "powerpc",
            "riscv64": "riscv"}.get(os.uname().machine, "x86")
    multiarch = Path(f"/usr/include/{os.uname().machine}-linux-gnu")
    sys_inc = ["-idirafter", str(multiarch)] if multiarch.is_dir() else []
    outs = []
    for src in sources:
        src = Path(src)
        obj = out_dir / (src.name[:-2] + ".o" if src.name.endswith(".c") else src.name + ".o")
        deps = [src, header] + list(src.parent.glob("*.h"))
        if not obj.exists() or any(d.stat().st_mtime > obj.stat().st_mtime for d in deps):
            cmd = [clang, "-target", "bpf", "-g", "-O2", f"-D__TARGET_ARCH_{arch}",
                   "-I", str(out_dir), "-I", str(src.parent), "-Wall", "-Wno-unused-function",
                   "-Wno-compare-distinct-pointer-types", "-Wno-missing-declarations",
                   *sys_inc, *extra_cflags, "-c", str(src), "-o", str(obj)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"clang failed for {src}:\n{r.stderr}")
            # Drop DWARF (kept: .BTF and .BTF.ext, which carry types and line info), as
            # libbpf-based projects do: objects get ~10x smaller and faster to open.
            strip = find_strip()
            if strip:
                r = subprocess.run([strip, "-g", str(obj)], capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"llvm-strip failed for {obj}:\n{r.stderr}")
        outs.append(obj)
    return outs


def main(argv: List[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    for o in build(Path(argv[0]), [Path(a) for a in argv[1:]]):
        print(o)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
