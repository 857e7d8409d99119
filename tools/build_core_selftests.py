#!/usr/bin/env python3
"""Build the kernel's own CO-RE selftests (Linux 6.1) for pybpf's conformance test.

    python tools/build_core_selftests.py [BUILD_DIR]

The Linux selftest ``prog_tests/core_reloc.c`` drives ~80 BPF objects
(``progs/test_core_reloc_*.c``), each relocated against a target BTF taken
from a ``progs/btf__core_reloc_*.c`` object, and compares what the program
wrote with an expected-output table written as C initializers.  This tool:

1. gets Debian's ``linux-source-6.1`` tarball (``apt-get install`` when
   missing) and extracts only the files the test needs into
   ``BUILD_DIR/src`` (once; keyed on the tarball's size and mtime);
2. compiles every referenced BPF source with clang-19 (``-target bpf -g
   -O2``) against libbpf-dev's ``<bpf/*.h>``, falling back to the tarball's
   ``tools/lib/bpf`` headers if the system ones are too old;
3. turns the test table into ``BUILD_DIR/cases.json``: the table's text is cut
   out of ``core_reloc.c`` and compiled with gcc next to
   ``core_reloc_types.h``, so every input/output byte is computed by a C
   compiler from the selftest's own initializers, never re-typed by hand.

The test session (``tests/kernel/test_core_selftests.py``) calls
:func:`prepare` at collection and :func:`build` in a session fixture.  Nothing
here is used at run time, and no kernel source or object is committed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUILD = ROOT / "tests" / "core_selftests" / "build"
TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
PACKAGE = "linux-source-6.1"
TOP = "linux-source-6.1"
SELFTESTS = "tools/testing/selftests/bpf"
MEMBERS = (
    f"{SELFTESTS}/progs/test_core_reloc_*.c",
    f"{SELFTESTS}/progs/btf__core_reloc_*.c",
    f"{SELFTESTS}/progs/core_reloc_types.h",
    f"{SELFTESTS}/prog_tests/core_reloc.c",
    f"{SELFTESTS}/bpf_testmod/bpf_testmod.h",
    "tools/lib/bpf/*.h",
)

__all__ = ["prepare", "build", "load_cases", "load_layouts", "BuildError", "selftests_dir", "DEFAULT_BUILD"]


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


def selftests_dir(build_dir: Path = DEFAULT_BUILD) -> Path:
    """Where the extracted ``tools/testing/selftests/bpf`` lives."""
    return build_dir / "src" / SELFTESTS


def _run(cmd: Sequence[str], what: str, cwd: Optional[Path] = None) -> str:
    r = subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        raise BuildError(f"{what} failed ({' '.join(cmd[:3])} ...):\n{r.stderr or r.stdout}")
    return r.stdout


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


# -- 1. sources ------------------------------------------------------------------------------

def _ensure_tarball() -> Path:
    if TARBALL.exists():
        return TARBALL
    if os.geteuid() != 0:
        raise BuildError(f"{TARBALL} is missing: apt-get install {PACKAGE}")
    _run(["apt-get", "install", "-y", "-q", PACKAGE], f"apt-get install {PACKAGE}")
    if not TARBALL.exists():
        raise BuildError(f"{PACKAGE} is installed but {TARBALL} is missing")
    return TARBALL


def extract(build_dir: Path) -> Path:
    """Extract the selftest files (once per tarball version) into BUILD_DIR/src."""
    src = build_dir / "src"
    stamp = build_dir / "src.stamp"
    tarball = _ensure_tarball()
    st = tarball.stat()
    key = f"{tarball} {st.st_size} {int(st.st_mtime)}"
    if stamp.exists() and stamp.read_text() == key and (src / SELFTESTS).is_dir():
        return src
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    _run(["tar", "-xJf", str(tarball), "-C", str(src), "--strip-components=1", "--wildcards",
          *(f"{TOP}/{m}" for m in MEMBERS)], f"extracting {tarball}")
    _atomic_write(stamp, key)
    return src


# -- 2. the test table -----------------------------------------------------------------------

_TABLE_START = "static const struct core_reloc_test_case test_cases[] = {"
_DATA_START = "struct data {"
# Structs whose field offsets the test needs (it fills them at run time, as the
# selftest does): the .bss layout and the type-id case's expected output.
_LAYOUTS = ("data", "core_reloc_type_id_output")
_FIELD = re.compile(r"(\w+)\s*(?:\[[^\]]*\])?\s*;")
_SETUP_FN = re.compile(r"^static int (\w+)\((?:const )?struct core_reloc_test_case \*\w+\)\s*\{?\s*$",
                       re.M)
_GEN_MAIN = r"""
static void hex(const char *p, int n)
{
	putchar('"');
	for (int i = 0; p && i < n; i++)
		printf("%02x", (unsigned char)p[i]);
	putchar('"');
}

static void str(const char *s)
{
	if (s) printf("\"%s\"", s); else fputs("null", stdout);
}

#define FLAG(t, f) printf(", \"" #f "\": %s", (t)->f ? "true" : "false")

int main(void)
{
	size_t n = sizeof(test_cases) / sizeof(test_cases[0]);

	printf("{\"cases\": [\n");
	for (size_t i = 0; i < n; i++) {
		const struct core_reloc_test_case *t = &test_cases[i];
		printf(" {\"case_name\": "); str(t->case_name);
		printf(", \"bpf_obj_file\": "); str(t->bpf_obj_file);
		printf(", \"btf_src_file\": "); str(t->btf_src_file);
		printf(", \"prog_name\": "); str(t->prog_name);
		printf(", \"raw_tp_name\": "); str(t->raw_tp_name);
		printf(", \"input\": "); hex(t->input, t->input_len);
		printf(", \"output\": "); hex(t->output, t->output_len);
		FLAG(t, fails); FLAG(t, run_btfgen_fails); FLAG(t, needs_testmod);
		FLAG(t, relaxed_core_relocs);
		printf(", \"setup\": "); str(fn_name((const void *)t->setup));
		printf(", \"trigger\": "); str(fn_name((const void *)t->trigger));
		printf("}%s\n", i + 1 < n ? "," : "");
	}
	printf("],\n\"layouts\": {\n");
	print_layouts();
	printf("}}\n");
	return 0;
}
"""


def _struct_block(text: str, name: str, what: str) -> str:
    """The ``struct NAME { ... };`` definition in ``text``."""
    m = re.search(r"^struct %s \{\n.*?^\};\n" % re.escape(name), text, re.M | re.S)
    if m is None:
        raise BuildError(f"{what} has no definition of struct {name}")
    return m.group(0)


def _layout_printer(blocks: Dict[str, str]) -> str:
    """C code printing ``"struct": {"size": N, "fields": {"name": [offset, size], ...}}``."""
    out = ["static void print_layouts(void)\n{"]
    for i, (name, block) in enumerate(blocks.items()):
        body = block[block.index("{") + 1:block.rindex("}")]
        fields = _FIELD.findall(re.sub(r"/\*.*?\*/", "", body, flags=re.S))
        items = ", ".join(f'\\"{f}\\": [%zu, %zu]' for f in fields)
        args = ", ".join(f"offsetof(struct {name}, {f}), sizeof(((struct {name} *)0)->{f})"
                         for f in fields)
        sep = "," if i + 1 < len(blocks) else ""
        out.append(f'\tprintf("\\"{name}\\": {{\\"size\\": %zu, \\"fields\\": {{{items}}}}}{sep}\\n", '
                   f"sizeof(struct {name}), {args});")
    out.append("}\n")
    return "\n".join(out)


def _table_program(core_reloc_c: str, types_h: str) -> str:
    """A C program made of core_reloc.c's case macros and table that prints the table as JSON.

    The helper functions between the case struct and the table (they call
    libbpf) are replaced by stubs; a case's ``setup``/``trigger`` pointer is
    reported by the helper's name.  The layouts of ``struct data`` (the .bss
    the selftest fills) and of the structs the setup helpers write are printed
    too, with offsets computed by the compiler.
    """
    start = core_reloc_c.find("#define STRUCT_TO_CHAR_PTR")
    struct_at = core_reloc_c.find("struct core_reloc_test_case {")
    table_at = core_reloc_c.find(_TABLE_START)
    if min(start, struct_at, table_at) < 0:
        raise BuildError("core_reloc.c does not have the expected layout (macros, struct, table)")
    struct_end = core_reloc_c.index("\n};\n", struct_at) + 4
    table_end = core_reloc_c.index("\n};\n", table_at) + 4
    helpers = _SETUP_FN.findall(core_reloc_c[struct_end:table_at])
    stubs = "".join(f"static int {n}() {{ return 0; }}\n" for n in helpers)
    names = "".join(f"\tif (p == (const void *){n}) return \"{n}\";\n" for n in helpers)
    data = _struct_block(core_reloc_c, "data", "core_reloc.c")
    blocks = {"data": data}
    blocks.update((n, _struct_block(types_h, n, "core_reloc_types.h")) for n in _LAYOUTS if n != "data")
    return ("/* Generated by tools/build_core_selftests.py from prog_tests/core_reloc.c */\n"
            "#define _GNU_SOURCE\n#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n"
            "#include <stdio.h>\n#include <sys/types.h>\n#include <linux/types.h>\n"
            '#include "progs/core_reloc_types.h"\n#include "bpf_testmod/bpf_testmod.h"\n\n'
            + core_reloc_c[start:struct_end] + "\n" + stubs
            + "\nstatic const char *fn_name(const void *p)\n{\n\tif (!p) return NULL;\n" + names
            + "\treturn \"?\";\n}\n\n" + core_reloc_c[table_at:table_end] + "\n" + data + "\n"
            + _layout_printer(blocks) + _GEN_MAIN)


def generate_cases(build_dir: Path) -> Path:
    """Compile and run the table printer: BUILD_DIR/cases.json (only when out of date)."""
    st_dir = selftests_dir(build_dir)
    src = st_dir / "prog_tests" / "core_reloc.c"
    out = build_dir / "cases.json"
    deps = [src, st_dir / "progs" / "core_reloc_types.h", Path(__file__)]
    if out.exists() and all(d.stat().st_mtime <= out.stat().st_mtime for d in deps):
        return out
    gen_c = build_dir / "gen_cases.c"
    gen_c.write_text(_table_program(src.read_text(), deps[1].read_text()))
    exe = build_dir / "gen_cases"
    cc = os.environ.get("CC", "gcc")
    _run([cc, "-std=gnu11", "-w", "-I", str(st_dir), str(gen_c), "-o", str(exe)],
         "compiling the core_reloc.c test table")
    table = json.loads(_run([str(exe)], "printing the core_reloc.c test table"))
    _atomic_write(out, json.dumps(table, indent=1) + "\n")
    return out


def load_cases(build_dir: Path = DEFAULT_BUILD) -> List[Dict]:
    """The selftest table as a list of dicts (hex strings for input/output bytes)."""
    return json.loads((build_dir / "cases.json").read_text())["cases"]


def load_layouts(build_dir: Path = DEFAULT_BUILD) -> Dict[str, Dict]:
    """Compiler-computed layouts: ``{struct: {"size": n, "fields": {name: [offset, size]}}}``."""
    return json.loads((build_dir / "cases.json").read_text())["layouts"]


def prepare(build_dir: Path = DEFAULT_BUILD) -> List[Dict]:
    """Extract sources and derive the case table (cheap once cached); returns the cases."""
    build_dir.mkdir(parents=True, exist_ok=True)
    extract(build_dir)
    generate_cases(build_dir)
    return load_cases(build_dir)


# -- 3. BPF objects --------------------------------------------------------------------------

def _fallback_headers(build_dir: Path) -> Path:
    """BUILD_DIR/libbpf-include/bpf/*.h: the tarball's libbpf headers (+ the generated
    bpf_helper_defs.h, which the tarball lacks, from libbpf-dev)."""
    inc = build_dir / "libbpf-include"
    dst = inc / "bpf"
    dst.mkdir(parents=True, exist_ok=True)
    for h in (build_dir / "src" / "tools" / "lib" / "bpf").glob("*.h"):
        shutil.copy2(h, dst / h.name)
    defs = Path("/usr/include/bpf/bpf_helper_defs.h")
    if defs.exists() and not (dst / defs.name).exists():
        shutil.copy2(defs, dst / defs.name)
    return inc


def _stub_headers(build_dir: Path) -> Path:
    """An empty gnu/stubs-32.h: glibc's <stdint.h> asks for it under ``-target bpf``
    (no __x86_64__), and only multilib installs provide it."""
    inc = build_dir / "stub-include"
    (inc / "gnu").mkdir(parents=True, exist_ok=True)
    stub = inc / "gnu" / "stubs-32.h"
    if not stub.exists():
        stub.write_text("/* empty: BPF objects use no glibc ABI */\n")
    return inc


def build(build_dir: Path = DEFAULT_BUILD, jobs: int = 0) -> List[Path]:
    """Compile every BPF object the table names into BUILD_DIR/obj (only when out of date)."""
    sys.path.insert(0, str(ROOT))
    from tools.build_bpf import find_clang

    cases = prepare(build_dir)
    progs = selftests_dir(build_dir) / "progs"
    objdir = build_dir / "obj"
    objdir.mkdir(exist_ok=True)
    names = sorted({c[k] for c in cases for k in ("bpf_obj_file", "btf_src_file")
                    if c[k] and not c["needs_testmod"]})
    clang = find_clang()
    arch = {"x86_64": "x86", "aarch64": "arm64", "s390x": "s390", "ppc64le": "powerpc",
            "riscv64": "riscv"}.get(os.uname().machine, "x86")
    multiarch = Path(f"/usr/include/{os.uname().machine}-linux-gnu")
    base = [clang, "-target", "bpf", "-g", "-O2", f"-D__TARGET_ARCH_{arch}", "-I", str(progs),
            "-Wall", "-Wno-unused-variable", "-Wno-unused-function",
            "-Wno-compare-distinct-pointer-types"]
    after = ["-idirafter", str(multiarch)] if multiarch.is_dir() else []
    after += ["-idirafter", str(_stub_headers(build_dir))]
    fallback: List[str] = []

    def compile_one(name: str) -> Path:
        src = progs / (name[:-len(".bpf.o")] + ".c")
        obj = objdir / name
        deps = [src, progs / "core_reloc_types.h"]
        if obj.exists() and all(d.stat().st_mtime <= obj.stat().st_mtime for d in deps):
            return obj
        tmp = obj.with_name(obj.name + ".tmp")
        cmd = [*base, *fallback, *after, "-c", str(src), "-o", str(tmp)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"clang failed for {src.name}:\n{r.stderr}")
        tmp.replace(obj)
        return obj

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 4) as pool:
        try:
            return list(pool.map(compile_one, names))
        except BuildError:
            # libbpf-dev's headers may predate the macros the 6.1 selftests use.
            fallback[:] = ["-I", str(_fallback_headers(build_dir))]
            return list(pool.map(compile_one, names))


def main(argv: List[str]) -> int:
    build_dir = Path(argv[0]) if argv else DEFAULT_BUILD
    try:
        objs = build(build_dir)
    except BuildError as e:
        print(f"build_core_selftests: {e}", file=sys.stderr)
        return 1
    cases = load_cases(build_dir)
    print(f"{len(objs)} objects in {build_dir / 'obj'}; {len(cases)} cases "
          f"({sum(not c['needs_testmod'] for c in cases)} without bpf_testmod) in "
          f"{build_dir / 'cases.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
