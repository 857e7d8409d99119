"""CO-RE relocation of clang-built objects (tests/progs/core/*.c).

core_reloc.c is relocated against the .BTF of core_target.c, whose layouts
differ on purpose.  Instead of hard-coding offsets, most checks *read back*
the value core_target.c stored in its global ``instance`` (from its .data)
using the offsets, sizes and shifts the relocations resolved to, so they
check the relocations against the compiler's own layout, in both byte orders.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from elftools.elf.elffile import ELFFile

from pybpf.btf import Kind, Spec
from pybpf.btf.ext import COREReloKind as K, parse_ext
from pybpf.core import POISON_IMM, Fixup, apply_fixups, relocate
from pybpf.errors import CORERelocationError

PROGS = Path(__file__).resolve().parent.parent / "progs" / "core"
CLANG = shutil.which("clang-19")
VMLINUX = Path("/sys/kernel/btf/vmlinux")

pytestmark = pytest.mark.skipif(CLANG is None, reason="clang-19 is needed to build the test objects")

BITFIELDS = {"task.bf1": 5, "task.bf2": 3000, "task.sbf": -17, "task.big": 0x123456789A}


class Obj:
    """The parts of a BPF ELF object the tests need."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            elf = ELFFile(f)
            self.byteorder = "<" if elf.little_endian else ">"
            self.btf = Spec.parse(elf.get_section_by_name(".BTF").data(), file=path.name)
            ext = elf.get_section_by_name(".BTF.ext")
            self.relos = parse_ext(ext.data(), self.btf).core_relos if ext else {}
            self.sections = {s.name: s.data() for s in elf.iter_sections()}
            self.symbols: Dict[str, Tuple[str, int, int]] = {}
            for sym in elf.get_section_by_name(".symtab").iter_symbols():
                shndx = sym["st_shndx"]
                if isinstance(shndx, int) and sym.name:
                    sec = elf.get_section(shndx).name
                    self.symbols[sym.name] = (sec, sym["st_value"], sym["st_size"])

    def symbol_bytes(self, name: str) -> bytes:
        sec, off, size = self.symbols[name]
        return self.sections[sec][off:off + size]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("core")

    def compile_(name: str, target: str) -> Obj:
        dst = out / f"{name}.{target}.o"
        if not dst.exists():
            subprocess.run([CLANG, "-target", target, "-g", "-O2", "-c", str(PROGS / f"{name}.c"),
                            "-o", str(dst)], check=True, capture_output=True)
        return Obj(dst)
    return compile_


def decode(buf: bytes, idx: int, bo: str) -> Tuple[int, int, int, int]:
    return struct.unpack_from(bo + "BBhi", buf, idx * 8)


def is_poison(buf: bytes, idx: int, bo: str) -> bool:
    return decode(buf, idx, bo) == (0x85, 0, 0, POISON_IMM)


class Relocated:
    """core_reloc.c's kprobe/core section relocated against core_target.c."""

    def __init__(self, local: Obj, target: Obj):
        self.local, self.target, self.bo = local, target, local.byteorder
        self.insns = local.sections["kprobe/core"]
        self.fixups = relocate(local.btf, local.relos["kprobe/core"], [target.btf], self.insns,
                               section="kprobe/core")
        self.patched = bytearray(self.insns)
        apply_fixups(self.patched, self.fixups, self.bo)
        self.instance = target.symbol_bytes("instance")

    def all(self, path: str, kind: K) -> List[Fixup]:
        found = [f for f in self.fixups if f.path == path and f.kind == kind]
        assert found, f"no {kind.name} relocation for {path}"
        return found

    def one(self, path: str, kind: K) -> Fixup:
        return self.all(path, kind)[0]

    def insn(self, fx: Fixup) -> Tuple[int, int, int, int]:
        return decode(self.patched, fx.insn_index, self.bo)

    def imm64(self, fx: Fixup) -> int:
        lo = decode(self.patched, fx.insn_index, self.bo)[3] & 0xFFFFFFFF
        hi = decode(self.patched, fx.insn_index + 1, self.bo)[3] & 0xFFFFFFFF
        return lo | hi << 32

    def read(self, off: int, size: int, signed: bool = False) -> int:
        return int.from_bytes(self.instance[off:off + size], "little" if self.bo == "<" else "big",
                              signed=signed)

    def load(self, fx: Fixup) -> int:
        """Execute the patched load at ``fx`` against ``instance``."""
        code, _, off, _ = self.insn(fx)
        assert code & 0x07 == 0x01, f"insn {fx.insn_index} is not a load"
        return self.read(off, {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}[code & 0x18])


@pytest.fixture(scope="module", params=["bpfel", "bpfeb"])
def rel(request, build) -> Relocated:
    return Relocated(build("core_reloc", request.param), build("core_target", request.param))


def test_loads_read_the_target_fields(rel):
    loads = {"task.pid": 4242, "task.flags": 0xBEEF, "task.in.b": 0x1122334455667788,
             "task.u2": 31337, "task.st": 2}
    for path, want in loads.items():
        fx = rel.one(path, K.FIELD_BYTE_OFFSET)
        assert not fx.poisoned and fx.target_type.startswith("struct task [")
        assert rel.load(fx) == want, path


def test_unsigned_load_is_narrowed_to_the_target_size(rel):
    load, store = rel.all("task.flags", K.FIELD_BYTE_OFFSET)
    for fx in (load, store):
        assert (fx.local_size, fx.target_size, fx.new_size) == (4, 2, 2)
        assert rel.insn(fx)[0] & 0x18 == 0x08  # BPF_H
    assert rel.insn(store)[0] & 0x07 == 0x03  # still an STX


def test_signed_field_of_other_size_poisons_the_load(rel):
    fx = rel.one("task.sflags", K.FIELD_BYTE_OFFSET)
    assert fx.poisoned and is_poison(rel.patched, fx.insn_index, rel.bo)
    assert fx.reason.startswith("task.sflags: accesses field incorrectly: it is long (8 bytes) "
                                "locally but int (4 bytes)")


def test_missing_field_exists_zero_and_access_poisoned(rel):
    exists = rel.one("task.gone", K.FIELD_EXISTS)
    assert (exists.local_value, exists.target_value, exists.poisoned) == (1, 0, False)
    assert rel.insn(exists)[3] == 0
    access = rel.one("task.gone", K.FIELD_BYTE_OFFSET)
    assert access.poisoned and is_poison(rel.patched, access.insn_index, rel.bo)
    assert access.reason == ("task.gone: field 'gone' not found in struct task "
                             f"[{access.target_type_id or rel.target.btf.find_one('task', Kind.STRUCT)}]"
                             f" of core_target.{'bpfel' if rel.bo == '<' else 'bpfeb'}.o")


def test_array_and_nested_offsets(rel):
    row = rel.one("task.arr[2]", K.FIELD_BYTE_OFFSET).target_value
    assert rel.read(row + 4, 4) == 21                      # arr[2][1]
    assert rel.one("task.comm", K.FIELD_BYTE_SIZE).target_value == 32
    comm5 = rel.one("task.comm[5]", K.FIELD_BYTE_OFFSET).target_value
    assert rel.instance[comm5:comm5 + 1] == b"l"          # "kernel-comm"[5]
    in_a = rel.one("task.in.a", K.FIELD_BYTE_OFFSET).target_value
    assert rel.read(in_a, 4) == 77
    task = rel.target.btf.type(rel.target.btf.find_one("task", Kind.STRUCT))
    assert rel.one("task.parent", K.FIELD_BYTE_OFFSET).target_value == task.member("parent").offset // 8
    assert rel.one("task.tail[3]", K.FIELD_BYTE_OFFSET).target_value == task.member("tail").offset // 8 + 12


def test_bitfields_extract_the_target_values(rel):
    for path, want in BITFIELDS.items():
        off = rel.one(path, K.FIELD_BYTE_OFFSET).target_value
        size = rel.one(path, K.FIELD_BYTE_SIZE).target_value
        lshift = rel.one(path, K.FIELD_LSHIFT_U64).target_value
        signed = rel.one(path, K.FIELD_SIGNED).target_value
        rshifts = {f.target_value for f in rel.all(path, K.FIELD_RSHIFT_U64)}
        assert len(rshifts) == 1
        val = (rel.read(off, size) << lshift) & (2**64 - 1)
        if signed:
            val = (val - 2**64 if val >> 63 else val) >> rshifts.pop()
        else:
            val >>= rshifts.pop()
        assert val == want, path
        assert bool(signed) == (want < 0)
        fx = rel.one(path, K.FIELD_LSHIFT_U64)
        assert not fx.validate and rel.insn(fx)[3] == lshift


def test_flavors_and_type_relocations(rel):
    tb, lb = rel.target.btf, rel.local.btf
    assert rel.one("task___v1.old_name", K.FIELD_EXISTS).target_value == 0
    assert rel.one("task___v2.new_name", K.FIELD_EXISTS).target_value == 1
    missing = rel.one("struct missing_type", K.TYPE_EXISTS)
    assert (missing.target_value, missing.poisoned) == (0, False)
    assert "no struct named 'missing_type'" in missing.reason
    assert rel.one("task_t", K.TYPE_EXISTS).target_value == 1
    assert rel.one("struct task", K.TYPE_SIZE).target_value == rel.target.symbols["instance"][2]
    tid = rel.one("struct task", K.TYPE_ID_TARGET)
    assert tid.target_value == tb.find_one("task", Kind.STRUCT) == rel.imm64(tid)
    lid = rel.one("struct task", K.TYPE_ID_LOCAL)
    assert lid.target_value == lb.find_one("task", Kind.STRUCT) == rel.imm64(lid)
    assert rel.one("struct match_me", K.TYPE_MATCHES).target_value == 1
    assert rel.one("struct mismatch_me", K.TYPE_MATCHES).target_value == 0


def test_enum_values(rel):
    values = {"enum task_state::TS_SLEEPING": 2, "enum task_state::TS_GONE": -100,
              "enum big_enum::BIG_A": 0x100000000, "enum small_enum::SMALL_A": 3,
              "enum task_state___x::TS_DEAD___x": 64}
    for path, want in values.items():
        fx = rel.one(path, K.ENUMVAL_VALUE)
        assert fx.target_value == want and rel.imm64(fx) == want & (2**64 - 1), path
    exists = rel.one("enum task_state::TS_LOCAL_ONLY", K.ENUMVAL_EXISTS)
    assert exists.target_value == 0 and not exists.poisoned
    value = rel.one("enum task_state::TS_LOCAL_ONLY", K.ENUMVAL_VALUE)
    assert value.poisoned and "enumerator 'TS_LOCAL_ONLY' not found" in value.reason
    # ld_imm64 is poisoned in both slots, so instruction counts do not change
    assert is_poison(rel.patched, value.insn_index, rel.bo)
    assert is_poison(rel.patched, value.insn_index + 1, rel.bo)


def test_only_relocated_instructions_change(rel):
    touched = set()
    for f in rel.fixups:
        touched.add(f.insn_index)
        if rel.insns[f.insn_index * 8] == 0x18:
            touched.add(f.insn_index + 1)
    for i in range(len(rel.insns) // 8):
        if i not in touched:
            assert rel.patched[i * 8:i * 8 + 8] == rel.insns[i * 8:i * 8 + 8]


def test_relocate_without_insns_then_apply(rel):
    plain = relocate(rel.local.btf, rel.local.relos["kprobe/core"], [rel.target.btf],
                     section="kprobe/core")
    sflags = next(f for f in plain if f.path == "task.sflags")
    assert not sflags.poisoned and sflags.size_problem  # decided when the insn is seen
    buf = bytearray(rel.insns)
    applied = apply_fixups(buf, plain, rel.bo)
    assert buf == rel.patched
    assert applied == rel.fixups


def test_patched_insns_are_checked_for_the_local_value(rel):
    with pytest.raises(CORERelocationError, match="unexpected instruction"):
        apply_fixups(bytearray(rel.patched), rel.fixups, rel.bo)


def test_describe_is_readable(rel):
    text = rel.one("task.flags", K.FIELD_BYTE_OFFSET).describe()
    assert "byte_off task.flags: 4 -> 8, access size 4 -> 2 [struct task [" in text
    assert "poisoned: task.gone: field 'gone'" in rel.one("task.gone", K.FIELD_BYTE_OFFSET).describe()


def test_agreeing_candidates_are_fine(build):
    local, target = build("core_reloc", "bpfel"), build("core_target", "bpfel")
    (fx,) = relocate(local.btf, local.relos["kprobe/same"], [target.btf],
                     local.sections["kprobe/same"])
    assert fx.target_value == 4
    assert fx.target_type_id == target.btf.find_one("same", Kind.STRUCT)  # the first candidate


def test_conflicting_candidates_are_an_error(build):
    local, target = build("core_reloc", "bpfel"), build("core_target", "bpfel")
    d1 = target.btf.find_one("dup", Kind.STRUCT)
    d2 = target.btf.find_one("dup___2", Kind.STRUCT)
    with pytest.raises(CORERelocationError) as err:
        relocate(local.btf, local.relos["kprobe/dup"], [target.btf], section="kprobe/dup")
    msg = str(err.value)
    assert "section 'kprobe/dup'" in msg and "dup.a" in msg
    assert f"struct dup [{d1}]" in msg and f"struct dup___2 [{d2}]" in msg


def _member_bits(spec: Spec, comp_id: int, name: str) -> Tuple[int, int, int]:
    """(bit offset, bitfield size, type id) of member ``name``, looking into anonymous members."""
    for m in spec.type(spec.skip_modifiers(comp_id)).members:
        if m.name == name:
            return m.offset, m.bitfield_size, m.type
        if not m.name and spec.kind_of(spec.skip_modifiers(m.type)) in (Kind.STRUCT, Kind.UNION):
            try:
                off, bits, tid = _member_bits(spec, m.type, name)
            except KeyError:
                continue
            return m.offset + off, bits, tid
    raise KeyError(name)


@pytest.mark.skipif(not VMLINUX.exists(), reason="no kernel BTF")
def test_task_struct_against_running_kernel(build):
    local = build("core_vmlinux", "bpfel")
    vmlinux = Spec.parse(VMLINUX.read_bytes(), file=str(VMLINUX))
    fixups = relocate(local.btf, local.relos["kprobe/vmlinux"], [vmlinux],
                      local.sections["kprobe/vmlinux"], section="kprobe/vmlinux")
    by = {(f.path, f.kind): f for f in fixups}
    task = vmlinux.find_one("task_struct", Kind.STRUCT)

    def off(name: str) -> int:
        return _member_bits(vmlinux, task, name)[0] // 8

    p = "task_struct___pybpf"
    for name in ("pid", "tgid", "real_parent", "flags"):
        fx = by[(f"{p}.{name}", K.FIELD_BYTE_OFFSET)]
        assert fx.target_value == off(name) and fx.target_type_id == task
    assert by[(f"{p}.comm", K.FIELD_BYTE_SIZE)].target_value == 16
    assert by[(f"{p}.comm[3]", K.FIELD_BYTE_OFFSET)].target_value == off("comm") + 3
    se_type = _member_bits(vmlinux, task, "se")[2]
    assert by[(f"{p}.se.vruntime", K.FIELD_BYTE_OFFSET)].target_value == \
        off("se") + _member_bits(vmlinux, se_type, "vruntime")[0] // 8
    bit_off, bits, _ = _member_bits(vmlinux, task, "in_execve")
    byte_off = by[(f"{p}.in_execve", K.FIELD_BYTE_OFFSET)].target_value
    lshift = by[(f"{p}.in_execve", K.FIELD_LSHIFT_U64)].target_value
    rshift = by[(f"{p}.in_execve", K.FIELD_RSHIFT_U64)].target_value
    assert (64 - rshift, byte_off * 8 + 64 - lshift - (64 - rshift)) == (bits, bit_off)
    assert by[(f"{p}.pybpf_no_such_field", K.FIELD_EXISTS)].target_value == 0
    assert by[(f"struct {p}", K.TYPE_ID_TARGET)].target_value == task
    assert by[(f"struct {p}", K.TYPE_SIZE)].target_value == vmlinux.type(task).size
    pid_type = vmlinux.type(vmlinux.find_one("pid_type", Kind.ENUM))
    assert by[("enum pid_type::PIDTYPE_TGID", K.ENUMVAL_VALUE)].target_value == \
        pid_type.value_of("PIDTYPE_TGID")
    assert not any(f.poisoned for f in fixups)
