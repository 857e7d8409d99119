"""Bad input never escapes as anything but a pybpf error.

Thousands of seeded mutants of the test objects (truncated, bit-flipped,
garbled, shuffled, with swapped section headers, garbage or missing .BTF,
unknown SEC names), foreign ELF files and non-ELF bytes go through
:func:`pybpf.load_collection_spec`.  Each must either parse into a spec that
can be used (programs, maps, variables' values) or raise a
:class:`pybpf.BPFError` whose message names the file and the problem.  Never
another exception, never a hang (each parse runs under a timer), never a
file descriptor left open.

Mutated .BTF and .BTF.ext blobs also go straight to :meth:`pybpf.btf.Spec.parse`
and :func:`pybpf.btf.ext.parse_ext`, and hand-made cyclic BTF checks that
``sizeof``/``alignof``/``skip_modifiers`` and codec building stop instead of
recursing forever.

A failure lists the label of each bad mutant (``"basic: flip .symtab
@0x3a0.5"``): rerunning with the same seed rebuilds exactly that input.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mutate as M  # noqa: E402

import pybpf  # noqa: E402
from pybpf.btf import Spec  # noqa: E402
from pybpf.btf.codec import codec_for  # noqa: E402
from pybpf.btf.ext import parse_ext  # noqa: E402
from pybpf.btf.marshal import marshal  # noqa: E402
from pybpf.btf.types import (  # noqa: E402
    Array, Const, Int, IntEncoding, Member, Ptr, Struct, Typedef, Var, Volatile,
)
from pybpf.errors import BPFError, ParseError  # noqa: E402

OBJECTS = ("basic", "legacy", "reject")
SEED = 20240611
NAME = "mutant"
HANG_SECONDS = 5.0          # one parse takes milliseconds; this is a hang
BIG_DATA = 1 << 20          # don't rewrite variables of data sections larger than this


# -- fixtures and helpers -------------------------------------------------------------------
@pytest.fixture(scope="module")
def objects() -> Dict[str, bytes]:
    """The test objects' bytes, by stem name (compiled with clang-19 when out of date)."""
    from tools.build_bpf import build
    srcs = [ROOT / "tests" / "progs" / f"{n}.bpf.c" for n in OBJECTS]
    outs = build(ROOT / "tests" / "progs" / "build", srcs)
    return {n: o.read_bytes() for n, o in zip(OBJECTS, outs)}


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    """Every test leaves the process's open file descriptors as it found them."""
    before = sorted(os.listdir("/proc/self/fd"))
    yield
    after = sorted(os.listdir("/proc/self/fd"))
    assert after == before, "file descriptors leaked"


class _Hang(BaseException):
    """Raised by the timer; a BaseException so no ``except Exception`` in pybpf swallows it."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum, frame):
        raise _Hang()
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _where(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb[-3:]))


def _exercise(spec: pybpf.CollectionSpec) -> None:
    """Use a spec that parsed the way a loader or a user would, short of the kernel."""
    assert isinstance(spec, pybpf.CollectionSpec)
    for name, m in spec.maps.items():
        assert spec.kernel_map_names[name]
        m.copy()
        _ = m.kernel_name, m.inner_map and m.inner_map.kernel_name
    for p in spec.programs.values():
        p.copy()
        _ = p.kernel_name, p.source_line(max(p.insn_count - 1, 0))
        for ref in p.map_refs:
            assert ref.map in spec.maps, f"program {p.name} refers to unknown map {ref.map}"
            assert 0 <= ref.insn < p.insn_count
        for rec in (*p.func_info, *p.line_info, *p.core_relos, *p.extern_refs):
            assert 0 <= rec.insn < p.insn_count, f"program {p.name}: record outside the program"
    for v in spec.variables.values():
        try:
            value = v.value
            if v.map.value_size <= BIG_DATA:
                v.value = value
        except BPFError:
            pass  # a variable whose BTF type has no value codec: a pybpf error is fine
    spec.copy()


def _check_error(label: str, e: BPFError, name: str, failures: List[str]) -> None:
    msg = str(e)
    if name not in msg:
        failures.append(f"{label}: {type(e).__name__} does not name the file: {msg!r}")
    elif isinstance(e, ParseError) and not e.reason.strip():
        failures.append(f"{label}: ParseError without a reason: {msg!r}")


def _load(label: str, data: bytes, failures: List[str], *, name: str = NAME,
          outcome: Optional[Dict[str, int]] = None) -> Optional[pybpf.CollectionSpec]:
    """Parse ``data`` and use the result; record anything but success or a good pybpf error."""
    spec = None
    try:
        with _time_limit(HANG_SECONDS):
            try:
                spec = pybpf.load_collection_spec(data, name=name)
                _exercise(spec)
                kind = "parsed"
            except BPFError as e:
                _check_error(label, e, name, failures)
                spec, kind = None, "error"
    except _Hang:
        failures.append(f"{label}: no result after {HANG_SECONDS} s (hang)")
        kind = "hang"
    except Exception as e:  # the bug this file hunts: report it with where it came from
        failures.append(f"{label}: {type(e).__name__}: {e} [{_where(e)}]")
        kind = "crash"
    if outcome is not None:
        outcome[kind] = outcome.get(kind, 0) + 1
    return spec


def _assert_clean(failures: List[str], total: int) -> None:
    assert total > 0, "no mutants were generated"
    if failures:
        shown = "\n  ".join(failures[:25])
        more = f"\n  ... and {len(failures) - 25} more" if len(failures) > 25 else ""
        pytest.fail(f"{len(failures)} of {total} inputs misbehaved:\n  {shown}{more}", pytrace=False)


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (SEED, *parts)))


# -- mutation categories of whole objects ---------------------------------------------------
def _region(data: bytes, name: str) -> Optional[Tuple[int, int]]:
    s = M.section(data, name)
    return None if s is None or s.size == 0 else (s.offset, s.offset + s.size)


def _in_sections(data: bytes, rng: random.Random, names: Iterable[str], n: int,
                 what: str) -> Iterator[M.Mutant]:
    """Half bit flips, half byte garbles, spread over the named sections."""
    regions = [(nm, r) for nm in names if (r := _region(data, nm)) is not None]
    for i in range(n):
        nm, (lo, hi) = regions[i % len(regions)]
        if i % 2:
            yield M.flip_region(data, rng, lo, hi, f"{what} {nm}")
        else:
            yield next(M.byte_garbles(data, rng, 1, lo, hi, f"{what} {nm}"))


def _btf_region(data: bytes, rng: random.Random, part: str, n: int) -> Iterator[M.Mutant]:
    s = M.section(data, ".BTF")
    btf = data[s.offset:s.offset + s.size]
    lo, hi = M.btf_parts(btf)[part]
    yield from _in_range(data, rng, s.offset + lo, s.offset + hi, n, f".BTF {part}")


def _in_range(data: bytes, rng: random.Random, lo: int, hi: int, n: int, what: str) -> Iterator[M.Mutant]:
    for i in range(n):
        if i % 2:
            yield M.flip_region(data, rng, lo, hi, what)
        else:
            yield next(M.byte_garbles(data, rng, 1, lo, hi, what))


def _rel_sections(data: bytes) -> List[str]:
    return [s.name for s in M.sections(data) if s.type == 9 and ".debug" not in s.name]


# name -> generator(object bytes, rng) of (label, mutant bytes)
Category = Callable[[bytes, random.Random], Iterable[M.Mutant]]
CATEGORIES: Dict[str, Category] = {
    "truncate-random": lambda d, r: M.truncations(d, r, 40),
    "truncate-boundaries": lambda d, r: M.boundary_truncations(d),
    "flip-anywhere": lambda d, r: M.bit_flips(d, r, 100),
    "garble-anywhere": lambda d, r: M.byte_garbles(d, r, 60),
    "elf-header": lambda d, r: _in_range(d, r, 0, 64, 50, "ELF header"),
    "section-headers": lambda d, r: _in_range(d, r, *M.sht_region(d), 100, "section headers"),
    "symtab": lambda d, r: _in_sections(d, r, [".symtab", ".strtab"], 60, "symbols"),
    "relocations": lambda d, r: _in_sections(d, r, _rel_sections(d), 60, "relocations"),
    "btf-header": lambda d, r: _btf_region(d, r, "hdr", 40),
    "btf-types": lambda d, r: _btf_region(d, r, "types", 100),
    "btf-strings": lambda d, r: _btf_region(d, r, "strings", 40),
    "btf-ext": lambda d, r: _in_sections(d, r, [".BTF.ext"], 60, "flip"),
    "code-and-maps": lambda d, r: _in_sections(
        d, r, [s.name for s in M.sections(d) if s.name in ("syscall", "xdp", ".text", "maps", ".maps",
                                                         ".rodata", ".data", "license")], 30, "flip"),
    "shuffle-chunks": lambda d, r: M.chunk_shuffles(d, r, 60),
    "swap-headers": lambda d, r: M.header_swaps(d, r, 40),
    "garbage-btf": lambda d, r: M.garbage_btf(d, r, 20),
}


@pytest.mark.parametrize("category", list(CATEGORIES))
@pytest.mark.parametrize("obj", OBJECTS)
def test_mutants(objects: Dict[str, bytes], obj: str, category: str) -> None:
    """Seeded mutants of each object: each parses into a usable spec or raises a pybpf error."""
    data = objects[obj]
    failures: List[str] = []
    outcome: Dict[str, int] = {}
    total = 0
    for label, mutant in CATEGORIES[category](data, _rng(obj, category)):
        total += 1
        _load(f"{obj}: {label}", mutant, failures, outcome=outcome)
    _assert_clean(failures, total)


def test_originals_parse(objects: Dict[str, bytes]) -> None:
    """The unmutated objects parse and are usable: the baseline every mutant departs from."""
    failures: List[str] = []
    for name, data in objects.items():
        spec = _load(name, data, failures)
        assert spec is not None and spec.programs, failures
    _assert_clean(failures, len(objects))


# -- targeted damage ------------------------------------------------------------------------
def test_btf_removed(objects: Dict[str, bytes]) -> None:
    """.BTF renamed away (and .BTF.ext with it, or .BTF.ext alone): BTF-defined maps need it,
    so the objects with .maps fail naming .BTF; the legacy one still parses."""
    for obj, data in objects.items():
        no_btf = M.rename_section(M.rename_section(data, ".BTF.ext", ".XTF.ext"), ".BTF", ".XTF")
        no_ext = M.rename_section(data, ".BTF.ext", ".BTF.ex_")
        failures: List[str] = []
        if M.section(data, ".maps") is not None:
            with pytest.raises(ParseError, match=rf"{NAME}.*\.BTF"):
                pybpf.load_collection_spec(no_btf, name=NAME)
        else:
            spec = _load(f"{obj}: no .BTF", no_btf, failures)
            assert spec is not None and spec.btf is None, failures
        spec = _load(f"{obj}: no .BTF.ext", no_ext, failures)
        assert spec is not None, failures
        assert all(not p.line_info for p in spec.programs.values())
        _assert_clean(failures, 2)


def test_garbage_btf_header_fields(objects: Dict[str, bytes]) -> None:
    """Each field of the .BTF header set to 0, 1, 0xffffffff and the section size."""
    data = objects["basic"]
    s = M.section(data, ".BTF")
    failures: List[str] = []
    total = 0
    for off, fmt in ((2, "B"), (3, "B"), (4, "I"), (8, "I"), (12, "I"), (16, "I"), (20, "I")):
        for value in (0, 1, 0xFF if fmt == "B" else 0xFFFFFFFF, min(s.size, 0xFF if fmt == "B" else s.size)):
            b = bytearray(data)
            struct.pack_into("<" + fmt, b, s.offset + off, value)
            total += 1
            _load(f".BTF header +{off} = {value:#x}", bytes(b), failures)
    _assert_clean(failures, total)


def test_unknown_sec_name(objects: Dict[str, bytes]) -> None:
    """A program section renamed to something libbpf does not know: a ParseError naming the
    file and the section, saying the section is unknown."""
    total = 0
    for obj, data in objects.items():
        progs = {s.name for s in M.sections(data) if s.type == 1 and s.size and
                 s.name not in (".text",) and not s.name.startswith(".") and
                 s.name not in ("license", "maps", "version")}
        assert progs
        for sec in sorted(progs):
            bogus = "q" + sec[1:]
            with pytest.raises(ParseError) as ei:
                pybpf.load_collection_spec(M.rename_section(data, sec, bogus), name=NAME)
            msg = str(ei.value)
            assert NAME in msg and bogus in msg and "unknown program section" in msg, msg
            total += 1
    assert total >= 3


def _elf_patch(data: bytes, off: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, off, value)
    return bytes(b)


def _foreign_elves(tmp: Path, bpf: bytes) -> Dict[str, bytes]:
    out = {"/bin/true": Path("/bin/true").read_bytes()}
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc:
        src = tmp / "hello.c"
        src.write_text("int answer = 42;\nint get(void) { return answer; }\n")
        r = subprocess.run([gcc, "-c", "-g", str(src), "-o", str(tmp / "hello.o")], capture_output=True)
        if r.returncode == 0:
            out["gcc .o"] = (tmp / "hello.o").read_bytes()
    for name, data in list(out.items()):
        # Claim to be BPF: the parser then has to cope with x86 code, PLT relocations, DWARF...
        out[f"{name} claiming EM_BPF"] = _elf_patch(data, 18, "<H", 247)
    out["ELF32 header"] = bpf[:4] + b"\x01" + bpf[5:]
    out["big-endian header"] = bpf[:5] + b"\x02" + bpf[6:]
    out["big-endian, EM_BPF"] = _elf_patch(bpf[:5] + b"\x02" + bpf[6:], 18, ">H", 247)
    out["bad data encoding"] = bpf[:5] + b"\x07" + bpf[6:]
    return out


def test_foreign_elf(objects: Dict[str, bytes], tmp_path: Path) -> None:
    """Non-BPF ELF files (an executable, a gcc object, both also relabelled as BPF, 32-bit and
    big-endian headers): pybpf errors that name the file."""
    failures: List[str] = []
    cases = _foreign_elves(tmp_path, objects["basic"])
    for label, data in cases.items():
        spec = _load(label, data, failures)
        assert spec is None, f"{label} parsed as a BPF object"
    _assert_clean(failures, len(cases))
    with pytest.raises(ParseError, match=rf"{NAME}: ELF machine is 62, not BPF"):
        pybpf.load_collection_spec(cases["/bin/true"], name=NAME)


def test_not_elf() -> None:
    """Empty input, a few bytes, text, zeros, random bytes, an ELF magic and nothing else."""
    rng = _rng("not-elf")
    cases = {"empty": b"", "one byte": b"\x7f", "magic only": b"\x7fELF", "text": b"hello world\n" * 20,
             "zeros": bytes(4096), "magic + zeros": b"\x7fELF" + bytes(60),
             "magic + 64-bit + zeros": b"\x7fELF\x02\x01\x01" + bytes(57),
             "BPF header, nothing else": b"\x7fELF\x02\x01\x01" + bytes(11) + b"\xf7\x00" + bytes(44)}
    for i in range(40):
        cases[f"random #{i}"] = rng.randbytes(rng.randrange(1, 4096))
        cases[f"magic + random #{i}"] = b"\x7fELF\x02\x01\x01" + rng.randbytes(rng.randrange(0, 4096))
    failures: List[str] = []
    for label, data in cases.items():
        assert _load(label, data, failures) is None, label
    _assert_clean(failures, len(cases))
    with pytest.raises(ParseError, match=rf"^{NAME}: not an ELF file$"):
        pybpf.load_collection_spec(b"", name=NAME)


def test_paths_name_the_file_and_close_it(objects: Dict[str, bytes], tmp_path: Path) -> None:
    """Loading from a path: errors name the path, and no descriptor stays open (the autouse
    fixture checks), whether the parse succeeds or fails."""
    rng = _rng("paths")
    data = objects["legacy"]
    good = tmp_path / "good.bpf.o"
    good.write_bytes(data)
    assert pybpf.load_collection_spec(good).programs
    for i, (label, mutant) in enumerate(M.truncations(data, rng, 20)):
        p = tmp_path / f"cut{i}.bpf.o"
        p.write_bytes(mutant)
        with pytest.raises(BPFError, match=str(p)):
            pybpf.load_collection_spec(p)
    with pytest.raises(ParseError, match=r"missing\.bpf\.o: cannot read"):
        pybpf.load_collection_spec(tmp_path / "missing.bpf.o")
    with pytest.raises(ParseError, match="cannot read"):
        pybpf.load_collection_spec(tmp_path)  # a directory


# -- BTF and .BTF.ext on their own ----------------------------------------------------------
def _walk_btf(spec: Spec) -> None:
    """Decode every type and ask every question the loader asks of object BTF."""
    for tid, t in spec.types():
        for q in (spec.sizeof, spec.alignof, spec.skip_modifiers, spec.skip_qualifiers):
            try:
                q(tid)
            except ParseError as e:
                assert e.file == NAME, str(e)
        spec.type_name(tid)
        if t.name:
            assert tid in spec.find(t.name)
            assert tid in spec.find(t.name, t.kind)
    assert len(list(spec.names())) <= len(spec)


def _section_bytes(data: bytes, name: str) -> bytes:
    s = M.section(data, name)
    return data[s.offset:s.offset + s.size]


@pytest.mark.parametrize("obj", OBJECTS)
def test_btf_mutants(objects: Dict[str, bytes], obj: str) -> None:
    """Mutated .BTF blobs: Spec.parse, then every type decoded and measured; ParseError only."""
    btf = _section_bytes(objects[obj], ".BTF")
    failures: List[str] = []
    total = 0
    for label, mutant in M.btf_mutants(btf, _rng(obj, "btf"), 600):
        total += 1
        try:
            with _time_limit(HANG_SECONDS):
                try:
                    _walk_btf(Spec.parse(mutant, file=NAME))
                except ParseError as e:
                    if e.file != NAME:
                        failures.append(f"{obj}: {label}: ParseError without the file: {e}")
        except _Hang:
            failures.append(f"{obj}: {label}: hang")
        except Exception as e:
            failures.append(f"{obj}: {label}: {type(e).__name__}: {e} [{_where(e)}]")
    _assert_clean(failures, total)


@pytest.mark.parametrize("obj", OBJECTS)
def test_btf_ext_mutants(objects: Dict[str, bytes], obj: str) -> None:
    """Mutated .BTF.ext (flips, garbles, truncations, shuffles) against the object's good BTF."""
    data = objects[obj]
    ext = _section_bytes(data, ".BTF.ext")
    btf = Spec.parse(_section_bytes(data, ".BTF"), file=NAME)
    rng = _rng(obj, "ext")
    mutants: List[M.Mutant] = []
    mutants += M.bit_flips(ext, rng, 150, what=".BTF.ext")
    mutants += M.byte_garbles(ext, rng, 150, what=".BTF.ext")
    mutants += M.byte_garbles(ext, rng, 50, 0, 32, what=".BTF.ext header")
    mutants += M.truncations(ext, rng, 50)
    for i in range(50):
        words = [ext[p:p + 4] for p in range(0, len(ext) - len(ext) % 4, 4)]
        a = rng.randrange(len(words))
        seg = words[a:a + 8]
        rng.shuffle(seg)
        words[a:a + 8] = seg
        mutants.append((f"shuffle words {a}+8", b"".join(words) + ext[len(ext) - len(ext) % 4:]))
    failures: List[str] = []
    for label, mutant in mutants:
        try:
            with _time_limit(HANG_SECONDS):
                try:
                    info = parse_ext(mutant, btf, file=NAME)
                    for recs in (*info.func_info.values(), *info.line_info.values(),
                                 *info.core_relos.values()):
                        for r in recs:
                            assert r.insn_off >= 0
                except ParseError as e:
                    if e.file != NAME:
                        failures.append(f"{obj}: {label}: ParseError without the file: {e}")
        except _Hang:
            failures.append(f"{obj}: {label}: hang")
        except Exception as e:
            failures.append(f"{obj}: {label}: {type(e).__name__}: {e} [{_where(e)}]")
    _assert_clean(failures, len(mutants))


# -- cycles and pathological shapes in BTF --------------------------------------------------
_INT = Int("int", 4, IntEncoding.SIGNED, 0, 32)

CYCLES = {
    # Illegal: a type that contains itself.
    "typedef to itself": [Typedef("t", 1)],
    "const <-> volatile": [Const("", 2), Volatile("", 1)],
    "array of itself": [Array("", 1, 2, 4), _INT],
    "struct member of its own type": [Struct("s", 8, (Member("a", 1, 0),))],
    "struct member through a typedef": [Struct("s", 8, (Member("a", 2, 0),)), Typedef("t", 1)],
    "struct member through an array": [Struct("s", 8, (Member("a", 2, 0),)), Array("", 1, 3, 2), _INT],
    "var of itself": [Var("v", 1)],
}


@pytest.mark.parametrize("case", list(CYCLES))
def test_btf_cycles(case: str) -> None:
    """Types that contain themselves: every query ends with a pybpf error, not RecursionError
    or a hang."""
    spec = Spec.parse(marshal(CYCLES[case]), file=NAME)
    for tid in range(1, len(spec)):
        with _time_limit(HANG_SECONDS):
            for q in (spec.sizeof, spec.alignof, spec.skip_modifiers, spec.skip_qualifiers):
                try:
                    q(tid)
                except ParseError as e:
                    assert NAME in str(e)
            assert spec.type_name(tid)
            try:
                codec_for(spec, tid)
            except BPFError:
                pass


def test_btf_pointer_to_itself_is_fine() -> None:
    """``struct s { struct s *next; }``: legal, and every query answers."""
    spec = Spec.parse(marshal([Struct("s", 8, (Member("next", 2, 0),)), Ptr("", 1)]), file=NAME)
    assert spec.sizeof(1) == 8 and spec.alignof(1) == 8 and spec.sizeof(2) == 8
    assert spec.type_name(2) == "struct s *"
    assert codec_for(spec, 1).decode(struct.pack("<Q", 5)).next == 5


def test_btf_wide_dag_alignof() -> None:
    """40 levels of structs, each with two members of the level below: 2**40 paths, 41 types.
    alignof must not walk every path."""
    types = [_INT]
    for lvl in range(40):
        types.append(Struct(f"s{lvl}", 8, (Member("a", len(types), 0), Member("b", len(types), 0))))
    spec = Spec.parse(marshal(types), file=NAME)
    with _time_limit(HANG_SECONDS):
        assert spec.alignof(len(types)) == 4


def test_btf_nested_too_deep() -> None:
    """A 200-level chain of typedefs is refused with a ParseError, not followed to the end."""
    types = [_INT] + [Typedef(f"t{i}", i + 1) for i in range(200)]
    spec = Spec.parse(marshal(types), file=NAME)
    with pytest.raises(ParseError, match=NAME):
        spec.skip_modifiers(len(types))
    with pytest.raises(ParseError, match=NAME):
        spec.sizeof(len(types))
    with pytest.raises(ParseError, match=NAME):
        spec.alignof(len(types))


def test_huge_datasec_offsets_refused(objects: Dict[str, bytes]) -> None:
    """A data symbol whose 64-bit value does not fit BTF's 32-bit DATASEC offset is a ParseError
    (it used to escape from the BTF writer as struct.error)."""
    data = objects["basic"]
    symtab = M.section(data, ".symtab")
    strtab = M.section(data, ".strtab")
    for i in range(1, symtab.size // 24):
        name_off, info, _other, shndx = struct.unpack_from("<IBBH", data, symtab.offset + 24 * i)
        nm = data[strtab.offset + name_off:data.index(b"\0", strtab.offset + name_off)]
        if nm == b"data_var":
            break
    else:
        pytest.fail("data_var not in .symtab")
    bad = _elf_patch(data, symtab.offset + 24 * i + 8, "<Q", 1 << 40)
    with pytest.raises(ParseError, match=rf"{NAME}.*data_var.*32 bits"):
        pybpf.load_collection_spec(bad, name=NAME)


# -- value codecs over odd BTF --------------------------------------------------------------
def _codec_case(types: list, tid: int) -> None:
    """Build and use the codec of ``tid``: only pybpf errors may come out, within a second."""
    spec = Spec.parse(marshal(types), file=NAME)
    with _time_limit(1.0):
        try:
            c = codec_for(spec, tid)
            c.decode(bytes(min(c.size, 1 << 16)))
        except BPFError:
            pass


CODEC_ODD = {
    # A member past the end of its struct (decode used to raise struct.error).
    "member past the end": ([_INT, Struct("s", 4, (Member("a", 1, 8000),))], 2),
    # C member names that are Python keywords (kernel: xdp_cpumap_stats.pass, seq_file.from).
    "keyword member name": ([_INT, Struct("s", 4, (Member("pass", 1, 0),))], 2),
    # "_a" and "a": attrs-style underscore stripping would give two arguments named "a".
    "underscore member name": ([_INT, Struct("s", 8, (Member("_a", 1, 0), Member("a", 1, 32)))], 2),
}

CODEC_GAPS = {
    # 25 levels of two members each: a codec builder that is not memoised builds 2**25 codecs.
    "wide DAG": ([_INT] + [Struct(f"s{i}", 8, (Member("a", i + 1, 0), Member("b", i + 1, 0)))
                           for i in range(25)], 26),
    # An array of 2**32-1 zero-sized elements decodes into a 4-billion-item list.
    "zero-size elements": ([_INT, Array("", 1, 1, 0), Array("", 2, 1, 0xFFFFFFFF)], 3),
}


@pytest.mark.parametrize("case", list(CODEC_ODD))
def test_codec_odd_layouts(case: str) -> None:
    """BTF shapes whose value codec once crashed: now a codec or a pybpf error."""
    _codec_case(*CODEC_ODD[case])


@pytest.mark.parametrize("case", list(CODEC_GAPS))
def test_codec_gaps(case: str) -> None:
    """BTF shapes whose value codec once hung (a wide DAG of structs, huge arrays of
    zero-size elements): now a codec or a pybpf error, quickly."""
    try:
        _codec_case(*CODEC_GAPS[case])
    except _Hang:
        pytest.fail("hang")
