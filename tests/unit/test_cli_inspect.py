"""The ``pybpf`` command line without the kernel: inspect, btf dump, usage and errors.

Objects are compiled in the test session (``bpf_objects``); BTF dumps are
checked byte for byte against ``bpftool btf dump`` (an oracle only), and
``inspect --insns`` against the instruction bytes in the ELF file as
pyelftools reads them.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from elftools.elf.elffile import ELFFile

from pybpf import load_collection_spec
from pybpf.cli import main

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "tests" / "progs" / "core"
CLANG = shutil.which("clang-19")
BPFTOOL = shutil.which("bpftool")
POISON = struct.pack("<BBhi", 0x85, 0, 0, 0xBAD2310).hex()   # call 0xbad2310

needs_clang = pytest.mark.skipif(CLANG is None, reason="clang-19 builds the test objects")
needs_bpftool = pytest.mark.skipif(BPFTOOL is None, reason="bpftool is the oracle")


def run(capsys, *argv: str) -> tuple:
    """(exit status, stdout, stderr) of ``pybpf ARGV``."""
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(capsys, *argv: str):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)          # exactly one document


@pytest.fixture(scope="module")
def core_objects(tmp_path_factory) -> Dict[str, Path]:
    """core_reloc.c (CO-RE relocations) and core_target.c (the target layouts)."""
    if CLANG is None:
        pytest.skip("clang-19 builds the test objects")
    out = tmp_path_factory.mktemp("cli-core")
    objs = {}
    for name in ("core_reloc", "core_target"):
        for target, suffix in (("bpfel", ""), ("bpfeb", "_eb")):
            dst = out / f"{name}{suffix}.o"
            subprocess.run([CLANG, "-target", target, "-g", "-O2", "-c", str(CORE / f"{name}.c"),
                            "-o", str(dst)], check=True, capture_output=True)
            objs[name + suffix] = dst
    return objs


@pytest.fixture(scope="module")
def nobtf_object(tmp_path_factory) -> Path:
    """legacy.bpf.c built without -g: no .BTF, no .BTF.ext."""
    if CLANG is None:
        pytest.skip("clang-19 builds the test objects")
    import os
    dst = tmp_path_factory.mktemp("cli-nobtf") / "legacy_nobtf.o"
    multiarch = f"/usr/include/{os.uname().machine}-linux-gnu"
    subprocess.run([CLANG, "-target", "bpf", "-O2", "-idirafter", multiarch, "-c",
                    str(ROOT / "tests" / "progs" / "legacy.bpf.c"), "-o", str(dst)],
                   check=True, capture_output=True)
    return dst


# -- inspect ----------------------------------------------------------------------------------

def test_inspect_text(capsys, bpf_objects):
    code, out, err = run(capsys, "inspect", bpf_objects["basic"])
    assert code == 0 and err == ""
    assert "little-endian BPF object 'basic'" in out
    for heading in ("Programs:", "Maps:", "Global variables:", "BTF:"):
        assert heading in out
    lines = out.splitlines()
    compute = next(l for l in lines if l.split()[:1] == ["compute"])
    assert compute.split()[1:3] == ["syscall", "syscall"]
    rodata = next(l for l in lines if l.split()[:1] == [".rodata"])
    assert "basic.rodata" in rodata and "datasec .rodata (56)" in rodata and "rdonly_prog" in rodata
    pinned = next(l for l in lines if l.split()[:1] == ["pinned_counter"])
    assert "__u32 (4)" in pinned and "__u64 (8)" in pinned and "pinned by name" in pinned
    multiplier = next(l for l in lines if l.split()[:1] == ["multiplier"])
    assert multiplier.split()[-1] == "3" and "const volatile __u64" in multiplier


def test_inspect_json_matches_spec(capsys, bpf_objects):
    path = bpf_objects["basic"]
    doc = run_json(capsys, "inspect", path)
    spec = load_collection_spec(path)
    assert [p["name"] for p in doc["programs"]] == list(spec.programs)
    for p in doc["programs"]:
        ps = spec.programs[p["name"]]
        assert (p["section"], p["insns"], p["autoload"]) == (ps.section, ps.insn_count, ps.autoload)
    progs = {p["name"]: p for p in doc["programs"]}
    assert progs["count_pcpu"]["type"] == "raw_tracepoint"
    assert progs["tp_getppid"]["type"] == "tracepoint"
    assert progs["fill_recs"]["maps"] == ["pinned_counter", "recs"]
    maps = {m["name"]: m for m in doc["maps"]}
    assert set(maps) == set(spec.maps)
    assert maps["recs"]["key"] == {"type": "struct pair", "type_id": spec.maps["recs"].key_type_id,
                                   "size": 8}
    assert maps["recs"]["value"]["type"] == "struct rec" and maps["recs"]["value"]["size"] == 40
    assert (maps["recs"]["type"], maps["recs"]["max_entries"]) == ("hash", 128)
    assert maps["jmp_table"]["key"] == {"type": None, "type_id": None, "size": 4}
    assert maps[".bss"]["kernel_name"] == "basic.bss" and maps[".bss"]["kind"] == "data"
    assert maps["pinned_counter"]["pinning"] == "by_name"
    variables = {v["name"]: v for v in doc["variables"]}
    assert variables["multiplier"]["value"] == 3
    assert variables["data_var"] == {"name": "data_var", "section": ".data", "offset": 0, "size": 8,
                                     "type": "__u64", "value": 7}
    assert variables["custom_ro"]["section"] == ".rodata.custom"
    assert variables["custom_ro"]["value"] == 13
    btf = doc["btf"]
    assert btf["types"] == len(spec.btf) - 1 == sum(btf["kinds"].values())
    assert btf["btf_ext"] is True and btf["core_relos"] == 0
    assert btf["func_info"] >= len(spec.programs) and btf["line_info"] > btf["func_info"]


def test_inspect_without_btf(capsys, nobtf_object):
    doc = run_json(capsys, "inspect", nobtf_object)
    assert doc["btf"] is None
    (m,) = doc["maps"]
    assert (m["name"], m["type"], m["kind"]) == ("legacy_counts", "array", "legacy")
    assert m["key"]["type"] is None and m["value"]["size"] == 8
    assert doc["programs"][0]["maps"] == ["legacy_counts"]
    code, out, _ = run(capsys, "inspect", nobtf_object)
    assert code == 0 and "BTF:\n  none" in out


def _elf_function(path: Path, name: str) -> bytes:
    """The instruction bytes of function ``name`` as stored in the ELF file."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        sym = elf.get_section_by_name(".symtab").get_symbol_by_name(name)[0]
        data = elf.get_section(sym["st_shndx"]).data()
        return data[sym["st_value"]:sym["st_value"] + sym["st_size"]]


def _insns(out: str) -> Dict[str, List[str]]:
    progs: Dict[str, List[str]] = {}
    cur: List[str] = []
    for line in out.splitlines():
        if line.startswith("# "):
            cur = progs.setdefault(line[2:], [])
        else:
            assert len(line) == 16 and int(line, 16) >= 0, line
            cur.append(line)
    return progs


def test_insns_against_elf(capsys, bpf_objects):
    """The program's own instructions come first, unchanged but for the map references,
    which become ld_imm64 with src_reg 1 (map fd) or 2 (map value) and fd 0."""
    path = bpf_objects["basic"]
    spec = load_collection_spec(path)
    code, out, err = run(capsys, "inspect", path, "--insns")
    assert code == 0, err
    progs = _insns(out)
    assert list(progs) == list(spec.programs)
    for name, lines in progs.items():
        ps = spec.programs[name]
        assert len(lines) == ps.insn_count
        own = _elf_function(path, name)
        refs = {r.insn: r for r in ps.map_refs}
        for i in range(len(own) // 8):
            got = bytes.fromhex(lines[i])
            want = own[i * 8:i * 8 + 8]
            ref = refs.get(i) or refs.get(i - 1)
            if ref is None:
                prev = bytes.fromhex(lines[i - 1]) if i else b"\0\0"
                # bpf-to-bpf calls and callback addresses (ld_imm64 src 4) are relinked
                relinked = (got[0] == 0x85 and got[1] >> 4 == 1) or \
                    (got[0] == 0x18 and got[1] >> 4 == 4) or (prev[0] == 0x18 and prev[1] >> 4 == 4)
                if not relinked:
                    assert got == want, (name, i)
                continue
            if ref.insn == i:                       # first half: opcode, dst kept; src = kind
                assert got[0] == 0x18 and got[1] & 0x0F == want[1] & 0x0F
                assert got[1] >> 4 == (1 if ref.offset is None else 2)
                assert got[4:] == b"\0\0\0\0"       # the map fd, not known without a kernel
            else:                                   # second half: value offset in imm
                assert struct.unpack("<i", got[4:])[0] == (ref.offset or 0)
    one = _insns(run(capsys, "inspect", path, "--insns", "--prog", "tail_entry")[1])
    assert one == {"tail_entry": progs["tail_entry"]}
    doc = run_json(capsys, "inspect", path, "--insns")
    assert doc["insns"] == progs


@needs_clang
def test_core_report_and_insns_agree(capsys, core_objects):
    obj, target = core_objects["core_reloc"], core_objects["core_target"]
    args = ("inspect", obj, "--btf", target, "--prog", "core_prog")
    doc = run_json(capsys, *args, "--core", "--insns")
    rows, insns = doc["core"], doc["insns"]["core_prog"]
    assert rows and all(r["program"] == "core_prog" for r in rows)
    by_access = {}
    for r in rows:
        by_access.setdefault((r["kind"], r["access"]), r)
        insn = bytes.fromhex(insns[r["insn"]])
        if r["poisoned"]:
            assert insns[r["insn"]] == POISON and r["target"] is None and r["reason"]
        elif r["kind"] in ("byte_off",) and insn[0] & 0x07 in (1, 2, 3):   # LDX/ST/STX: off
            assert struct.unpack_from("<h", insn, 2)[0] == r["target"]
        elif insn[0] & 0x07 in (4, 7) and not insn[0] & 0x08:              # ALU imm
            assert struct.unpack_from("<i", insn, 4)[0] == r["target"]
    pid = by_access[("byte_off", "task.pid")]
    assert (pid["local"], pid["target"], pid["local_type"]) == (0, 16, "struct task")
    assert "struct task" in pid["target_type"]
    gone = by_access[("byte_off", "task.gone")]
    assert gone["poisoned"] and "'gone' not found" in gone["reason"]
    assert by_access[("field_exists", "task.gone")]["target"] == 0
    flags = by_access[("byte_off", "task.flags")]
    assert flags["access_size"] == [4, 2]

    code, out, err = run(capsys, *args, "--core")
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert header[:4] == ["PROGRAM", "INSN", "KIND", "ACCESS"]
    assert any("POISONED" in l and "task.gone" in l for l in out.splitlines())
    assert any(l.split()[3:6] == ["task.pid", "0", "16"] for l in out.splitlines())


@needs_clang
def test_big_endian_object(capsys, core_objects):
    """A bpfeb object inspects on this little-endian host; its relocations resolve alike."""
    doc = run_json(capsys, "inspect", core_objects["core_reloc_eb"])
    assert doc["byteorder"] == "big" and doc["btf"]["core_relos"] > 0
    rows = {}
    for suffix in ("", "_eb"):
        core = run_json(capsys, "inspect", core_objects["core_reloc" + suffix], "--core",
                        "--prog", "core_prog", "--btf", core_objects["core_target" + suffix])["core"]
        rows[suffix] = [(r["insn"], r["access"], r["target"]) for r in core if r["kind"] == "byte_off"]
    assert rows[""] == rows["_eb"] and rows[""]
    code, out, _ = run(capsys, "inspect", core_objects["core_reloc_eb"], "--insns", "--prog",
                       "core_prog", "--btf", core_objects["core_target_eb"])
    assert code == 0 and POISON not in out                       # poison is big-endian too
    assert struct.pack(">BBhi", 0x85, 0, 0, 0xBAD2310).hex() in out


@needs_clang
def test_core_error_is_reported_per_program(capsys, core_objects):
    """dup_prog's relocation is ambiguous against core_target: reported, exit status 1,
    the other programs' relocations still listed."""
    code, out, err = run(capsys, "inspect", core_objects["core_reloc"], "--core",
                         "--btf", core_objects["core_target"])
    assert code == 1
    assert "dup_prog: error:" in out and "candidates disagree" in out
    assert "same_prog" in out


def test_core_without_relocations(capsys, bpf_objects):
    code, out, _ = run(capsys, "inspect", bpf_objects["basic"], "--core")
    assert (code, out.strip()) == (0, "no CO-RE relocations")


def test_inspect_errors(capsys, bpf_objects, tmp_path):
    code, _, err = run(capsys, "inspect", tmp_path / "missing.o")
    assert code == 1 and err.startswith("pybpf: error: ") and "missing.o" in err
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an elf at all" * 8)
    code, _, err = run(capsys, "inspect", junk)
    assert code == 1 and "not an ELF file" in err
    code, _, err = run(capsys, "inspect", bpf_objects["basic"], "--insns", "--prog", "nope")
    assert code == 1 and "no program named 'nope'" in err and "compute" in err
    code, _, err = run(capsys, "inspect", bpf_objects["basic"], "--prog", "compute")
    assert code == 1 and "--prog" in err


# -- btf dump ---------------------------------------------------------------------------------

@needs_bpftool
@pytest.mark.parametrize("fmt", ["raw", "json"])
def test_btf_dump_matches_bpftool(capsys, bpf_objects, fmt):
    path = bpf_objects["basic"]
    code, out, err = run(capsys, "btf", "dump", path, "--format", fmt)
    assert code == 0, err
    cmd = [BPFTOOL, "btf", "dump", "file", str(path), "format", "raw"]
    if fmt == "json":
        cmd.insert(1, "--json")
        want = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        assert json.loads(out) == want
    else:
        assert out == subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@needs_bpftool
def test_btf_dump_vmlinux_matches_bpftool(capsys, tmp_path):
    vmlinux = Path("/sys/kernel/btf/vmlinux")
    if not vmlinux.exists():
        pytest.skip("no kernel BTF")
    code, out, err = run(capsys, "btf", "dump", vmlinux)
    assert code == 0, err
    want = subprocess.run([BPFTOOL, "btf", "dump", "file", str(vmlinux), "format", "raw"],
                          check=True, capture_output=True, text=True).stdout
    assert out == want


def test_btf_dump_c_and_json_flag(capsys, bpf_objects):
    code, out, _ = run(capsys, "btf", "dump", bpf_objects["basic"], "--format", "c")
    assert code == 0 and "struct pair {" in out and "enum color {" in out
    doc = run_json(capsys, "btf", "dump", bpf_objects["basic"])
    spec = load_collection_spec(bpf_objects["basic"])
    assert [t["id"] for t in doc["types"]] == list(range(1, len(spec.btf)))


def test_btf_dump_errors(capsys, nobtf_object, tmp_path):
    code, _, err = run(capsys, "btf", "dump", nobtf_object)
    assert code == 1 and "no .BTF section" in err
    bad = tmp_path / "bad.btf"
    bad.write_bytes(b"\x9f\xeb\x01\x00" + b"\xff" * 20)
    code, _, err = run(capsys, "btf", "dump", bad)
    assert code == 1 and err.startswith("pybpf: error: ") and "bad.btf" in err


# -- usage ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [[], ["inspect"], ["btf"], ["btf", "dump", "x", "--format", "yaml"],
                                  ["prog"], ["map", "dump"], ["frobnicate"]])
def test_usage_errors_exit_2(capsys, argv):
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_help_and_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "pybpf", "--help"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0
    for cmd in ("inspect", "load", "btf", "prog", "map"):
        assert cmd in r.stdout
    r = subprocess.run([sys.executable, "-m", "pybpf", "load", "--help"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "DIR/maps/<map>" in r.stdout and "released" in r.stdout
