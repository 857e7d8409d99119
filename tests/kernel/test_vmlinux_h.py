"""vmlinux.h from the running kernel's BTF, checked with clang-19 (and bpftool as an oracle).

* a CO-RE program (tests/progs/cdump/vmlinux_user.bpf.c) compiles against the
  generated header and its .BTF.ext carries CO-RE relocations;
* ``_Static_assert`` on ``sizeof``/``offsetof`` for every named struct and
  union of the kernel proves the header reproduces the kernel's layouts;
* a BTF round trip (header -> clang -> .BTF) compares whole types, bitfields
  included, for a few thousand kernel types and for every type of
  tests/progs/cdump/btf_features.bpf.c;
* the raw dump matches ``bpftool btf dump ... format raw`` line for line.

Needs /sys/kernel/btf/vmlinux and clang-19, not root: nothing is loaded.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from elftools.elf.elffile import ELFFile

from pybpf.btf import Kind, Spec
from pybpf.btf.cdump import dump_c
from pybpf.btf.rawdump import dump_raw

VMLINUX = Path("/sys/kernel/btf/vmlinux")
PROGS = Path(__file__).resolve().parent.parent / "progs" / "cdump"

pytestmark = pytest.mark.skipif(not VMLINUX.exists(), reason="kernel has no /sys/kernel/btf/vmlinux")


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def clang() -> str:
    path = shutil.which("clang-19")
    if path is None:
        pytest.fail("clang-19 is not installed (CI installs it; apt-get install clang-19)")
    return path


@pytest.fixture(scope="session")
def kernel_spec() -> Spec:
    return Spec.parse(VMLINUX.read_bytes(), file=str(VMLINUX))


@pytest.fixture(scope="session")
def vmlinux_h(tmp_path_factory, kernel_spec) -> Tuple[Path, float]:
    """(directory holding vmlinux.h, seconds dump_c took), built once per session."""
    out = tmp_path_factory.mktemp("vmlinux_h")
    start = time.perf_counter()
    text = dump_c(kernel_spec)
    elapsed = time.perf_counter() - start
    (out / "vmlinux.h").write_text(text)
    return out, elapsed


def compile_bpf(clang: str, src: Path, obj: Path, *includes: Path, debug: bool = True) -> None:
    cmd = [clang, "-target", "bpf", "-D__TARGET_ARCH_x86", "-O2", "-Wall", "-Werror",
           "-c", str(src), "-o", str(obj)]
    if debug:
        cmd.insert(1, "-g")
    for inc in includes:
        cmd.append(f"-I{inc}")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        pytest.fail(f"clang failed on {src.name}:\n{res.stderr[-6000:]}")


def elf_section(obj: Path, name: str) -> bytes:
    with open(obj, "rb") as f:
        sec = ELFFile(f).get_section_by_name(name)
        assert sec is not None, f"{obj.name} has no {name} section"
        return sec.data()


def object_spec(obj: Path) -> Spec:
    return Spec.parse(elf_section(obj, ".BTF"), file=str(obj))


# -- helpers: the names the header gives, and type shapes ----------------------------------------

def emitted_tags(spec: Spec) -> Dict[int, str]:
    """``struct foo``/``union foo___2`` for each named struct and union, per dump_c's policy:
    struct, union and enum share one namespace; the first by id keeps the name."""
    seen: Dict[str, int] = collections.Counter()
    out = {}
    for tid in range(1, len(spec)):
        k = spec.kind_of(tid)
        if k not in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64):
            continue
        t = spec.type(tid)
        if not t.name or (k in (Kind.ENUM, Kind.ENUM64) and not t.values):
            continue
        seen[t.name] += 1
        if k in (Kind.STRUCT, Kind.UNION):
            n = seen[t.name]
            out[tid] = f"{k.name.lower()} {t.name}" + (f"___{n}" if n > 1 else "")
    return out


_SUFFIX = re.compile(r"___\d+$")


def shape(spec: Spec, tid: int, outer_quals: frozenset = frozenset()) -> tuple:
    """A structural description of a type that ignores ids and ___N name suffixes.

    Named struct/union/enum/typedef references stay names; anonymous ones
    expand.  Ints compare by size (clang may name ``long unsigned int``
    differently), qualifiers as a set (those of an array belong to its
    elements, as in C), and ``__builtin_va_list`` is looked through.
    """
    quals = set(outer_quals)
    while True:
        t = spec.type(tid)
        if t.kind in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
            quals.add(t.kind.name)
            tid = t.type
        elif t.kind == Kind.TYPEDEF and t.name == "__builtin_va_list":
            tid = t.type
        else:
            break
    q = tuple(sorted(quals))
    k = t.kind
    if k == Kind.UNKN:
        return q, "void"
    if k in (Kind.INT, Kind.FLOAT):
        return q, "num", t.size
    if k == Kind.PTR:
        return q, "ptr", shape(spec, t.type)
    if k == Kind.TYPE_TAG:
        return q, "tag", t.name, shape(spec, t.type)
    if k == Kind.ARRAY:
        return (), "array", t.nelems, shape(spec, t.type, frozenset(quals))
    if k == Kind.TYPEDEF:
        return q, "typedef", _SUFFIX.sub("", t.name)
    if k == Kind.FWD:
        return q, "union" if t.is_union else "struct", _SUFFIX.sub("", t.name)
    if k in (Kind.STRUCT, Kind.UNION):
        if t.name:
            return q, k.name.lower(), _SUFFIX.sub("", t.name)
        return q, k.name.lower(), composite_shape(spec, tid)
    if k in (Kind.ENUM, Kind.ENUM64):
        if t.name:
            return q, "enum", _SUFFIX.sub("", t.name)
        return q, "enum", t.size, tuple((_SUFFIX.sub("", v.name), v.value) for v in t.values)
    if k == Kind.FUNC_PROTO:
        return q, "fn", shape(spec, t.return_type), tuple(
            shape(spec, p.type) if p.type else "..." for p in t.params)
    return q, k.name


def composite_shape(spec: Spec, tid: int) -> tuple:
    t = spec.type(tid)
    return t.size, tuple((m.name, m.offset, m.bitfield_size, shape(spec, m.type)) for m in t.members)


def roundtrip(clang: str, workdir: Path, header_dir: Path, decls: List[str]) -> Spec:
    """Compile ``decls`` (globals using the header's types) and return the object's BTF."""
    src = workdir / "roundtrip.c"
    src.write_text('#include "vmlinux.h"\n' + "\n".join(decls) + "\n")
    obj = workdir / "roundtrip.o"
    compile_bpf(clang, src, obj, header_dir)
    return object_spec(obj)


def compare_composites(orig: Spec, orig_ids: Dict[int, str], back: Spec) -> List[str]:
    """Differences between each original struct/union and its namesake in ``back``."""
    by_name = {}
    for tid in range(1, len(back)):
        t = back.type(tid)
        if t.kind in (Kind.STRUCT, Kind.UNION) and t.name:
            by_name[f"{t.kind.name.lower()} {t.name}"] = tid
    problems = []
    for tid, tag in orig_ids.items():
        if tag not in by_name:
            problems.append(f"{tag}: missing after the round trip")
            continue
        want, got = composite_shape(orig, tid), composite_shape(back, by_name[tag])
        if want != got:
            problems.append(f"{tag}: BTF {want!r:.300}\n   got {got!r:.300}")
    return problems


# -- the header --------------------------------------------------------------------------------

def test_generation_is_fast_and_framed(vmlinux_h):
    out, elapsed = vmlinux_h
    text = (out / "vmlinux.h").read_text()
    assert elapsed < 30, f"dump_c took {elapsed:.1f}s"
    assert text.startswith("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n")
    assert ("#pragma clang attribute push (__attribute__((preserve_access_index)), "
            "apply_to = record)") in text
    assert text.rstrip().endswith("#endif /* __VMLINUX_H__ */")
    assert "\nstruct task_struct {\n" in text and "\nstruct sk_buff {\n" in text


def test_bpf_program_compiles_with_core_relocations(clang, vmlinux_h, tmp_path):
    out, _ = vmlinux_h
    obj = tmp_path / "vmlinux_user.bpf.o"
    compile_bpf(clang, PROGS / "vmlinux_user.bpf.c", obj, out)
    relos = list(core_relocations(obj))
    spec = object_spec(obj)
    kinds = {kind for _sec, _tid, _access, kind in relos}
    types = {spec.type(tid).name for _sec, tid, _access, _kind in relos}
    assert {0, 2, 4, 5, 9, 10, 11} <= kinds  # byte offset, field exists, lshift/rshift, size, enumval
    assert {"task_struct", "file", "inode", "sk_buff", "bpf_func_id", "bpf_map_type"} <= types


def core_relocations(obj: Path) -> Iterator[Tuple[str, int, str, int]]:
    """(section, type id, access string, kind) for each CO-RE record in ``obj``'s .BTF.ext."""
    ext = elf_section(obj, ".BTF.ext")
    strings = elf_section(obj, ".BTF")
    magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", ext, 0)
    assert magic == 0xEB9F and hdr_len >= 32
    relo_off, relo_len = struct.unpack_from("<II", ext, 24)
    str_off = struct.unpack_from("<I", strings, 16)[0] + struct.unpack_from("<I", strings, 4)[0]

    def string(off: int) -> str:
        start = str_off + off
        return strings[start:strings.index(b"\0", start)].decode()

    pos = hdr_len + relo_off
    end = pos + relo_len
    rec_size = struct.unpack_from("<I", ext, pos)[0]
    pos += 4
    while pos < end:
        sec_name, n = struct.unpack_from("<II", ext, pos)
        pos += 8
        for _ in range(n):
            _insn, tid, access, kind = struct.unpack_from("<IIII", ext, pos)
            yield string(sec_name), tid, string(access), kind
            pos += rec_size


def test_every_kernel_struct_has_the_kernel_layout(clang, kernel_spec, vmlinux_h, tmp_path):
    """sizeof and offsetof of every named struct/union (all members but bitfields), sizeof of
    every enum and the values of enum constants match BTF."""
    out, _ = vmlinux_h
    lines = ['#include "vmlinux.h"']
    tags = emitted_tags(kernel_spec)
    for tid, tag in tags.items():
        t = kernel_spec.type(tid)
        lines.append(f'_Static_assert(sizeof({tag}) == {t.size}, "sizeof({tag})");')
        for m in t.members:
            if m.name and not m.bitfield_size:
                lines.append(f"_Static_assert(__builtin_offsetof({tag}, {m.name}) == {m.offset // 8}, "
                             f'"offsetof({tag}, {m.name})");')
    lines.extend(enum_asserts(kernel_spec))
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    res = subprocess.run([clang, "-target", "bpf", "-fsyntax-only", f"-I{out}", str(src)],
                         capture_output=True, text=True)
    failures = [l for l in res.stderr.splitlines() if "error:" in l]
    assert res.returncode == 0 and not failures, "\n".join(failures[:30])
    assert len(tags) > 5000  # the check covered the kernel, not a handful of types


def enum_asserts(spec: Spec) -> Iterator[str]:
    """sizeof of every named enum and the value of every enum constant whose name is unique."""
    counts: Dict[str, int] = collections.Counter()
    enums = []
    for tid in range(1, len(spec)):
        k = spec.kind_of(tid)
        if k == Kind.TYPEDEF:
            counts[spec.type(tid).name] += 1
        elif k in (Kind.ENUM, Kind.ENUM64):
            e = spec.type(tid)
            enums.append(e)
            for v in e.values:
                counts[v.name] += 1
    first_owner: Dict[str, int] = {}
    for e in enums:
        if e.name and e.values and first_owner.setdefault(e.name, id(e)) == id(e):
            yield f'_Static_assert(sizeof(enum {e.name}) == {e.size}, "sizeof(enum {e.name})");'
        for v in e.values:
            if counts[v.name] == 1:
                yield f'_Static_assert({v.name} == {v.value}LL, "{v.name}");' if v.value < 1 << 63 \
                    else f'_Static_assert({v.name} == {v.value}ULL, "{v.name}");'


def test_kernel_types_round_trip_through_clang(clang, kernel_spec, vmlinux_h, tmp_path):
    """Whole-type comparison (bitfields, anonymous members, member types) for a large sample:
    every struct with bitfields or unusual size, every union, and every 8th other struct."""
    out, _ = vmlinux_h
    tags = emitted_tags(kernel_spec)
    chosen: Dict[int, str] = {}
    for n, (tid, tag) in enumerate(tags.items()):
        t = kernel_spec.type(tid)
        if (t.kind == Kind.UNION or t.size % 8 or n % 8 == 0
                or any(m.bitfield_size for m in t.members)):
            chosen[tid] = tag
    decls = [f"{tag} __rt_{tid};" for tid, tag in chosen.items()]
    back = roundtrip(clang, tmp_path, out, decls)
    problems = compare_composites(kernel_spec, chosen, back)
    assert not problems, f"{len(problems)} types differ:\n" + "\n".join(problems[:10])
    assert len(chosen) > 2000


def test_feature_object_round_trips(clang, tmp_path):
    """Every struct, union and enum of a clang-built object survives BTF -> C -> BTF."""
    obj = tmp_path / "btf_features.bpf.o"
    compile_bpf(clang, PROGS / "btf_features.bpf.c", obj)
    orig = object_spec(obj)
    hdir = tmp_path / "hdr"
    hdir.mkdir()
    (hdir / "vmlinux.h").write_text(dump_c(orig))
    tags = emitted_tags(orig)
    decls = [f"{tag} __rt_{tid};" for tid, tag in tags.items()]
    enums = [orig.type(i) for i in range(1, len(orig))
             if orig.kind_of(i) in (Kind.ENUM, Kind.ENUM64) and orig.type(i).name]
    decls += [f"enum {e.name} __rt_enum_{e.name};" for e in enums]
    back = roundtrip(clang, tmp_path, hdir, decls)
    assert not compare_composites(orig, tags, back)
    back_enums = {back.type(i).name: back.type(i) for i in range(1, len(back))
                  if back.kind_of(i) in (Kind.ENUM, Kind.ENUM64)}
    for e in enums:
        got = back_enums[e.name]
        assert (got.size, [(v.name, v.value) for v in got.values]) == \
               (e.size, [(v.name, v.value) for v in e.values]), e.name
    assert {"everything", "holes", "bits", "packed_one", "over_aligned_union"} <= \
           {tag.split()[1] for tag in tags.values()}


# -- raw dump vs bpftool -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def bpftool() -> str:
    path = shutil.which("bpftool")
    if path is None and os.path.exists("/usr/sbin/bpftool"):  # not on a non-root PATH
        path = "/usr/sbin/bpftool"
    if path is None:
        pytest.skip("bpftool (the oracle) is not installed")
    return path


def bpftool_raw(bpftool: str, path: Path) -> List[str]:
    res = subprocess.run([bpftool, "btf", "dump", "file", str(path), "format", "raw"],
                         capture_output=True, text=True, check=True)
    return res.stdout.splitlines()


def first_difference(ours: List[str], theirs: List[str]) -> str:
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return f"line {i}: ours {a!r} bpftool {b!r}"
    return f"lengths differ: ours {len(ours)} bpftool {len(theirs)}"


def test_raw_dump_matches_bpftool_on_vmlinux(bpftool, kernel_spec):
    ours = list(dump_raw(kernel_spec))
    theirs = bpftool_raw(bpftool, VMLINUX)
    assert ours == theirs, first_difference(ours, theirs)
    assert len(ours) > len(kernel_spec)


def test_raw_dump_matches_bpftool_on_an_object(bpftool, clang, tmp_path):
    obj = tmp_path / "btf_features.bpf.o"
    compile_bpf(clang, PROGS / "btf_features.bpf.c", obj)
    ours = list(dump_raw(object_spec(obj)))
    theirs = bpftool_raw(bpftool, obj)
    assert ours == theirs, first_difference(ours, theirs)
    kinds = {line.split()[1] for line in ours if line.startswith("[")}
    assert {"INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "ENUM64", "FWD", "TYPEDEF",
            "VOLATILE", "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC", "FLOAT",
            "DECL_TAG", "TYPE_TAG"} <= kinds
