"""pybpf.asm: encode/decode in both byte orders, in-place patching, disassembly."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from pybpf.asm import InsnBuffer, Instruction, decode, disassemble, encode, format_insn
from pybpf.asm import opcodes as op
from pybpf.errors import ParseError

HELPERS = {1: "bpf_map_lookup_elem", 2: "bpf_map_update_elem", 14: "bpf_get_current_pid_tgid"}


def I(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> Instruction:
    return Instruction(code, dst, src, off, imm)


# A program touching every encoding corner: negative off/imm, src/dst nibbles,
# ld_imm64 with a high half, pseudo calls, atomics.
PROGRAM = [
    I(0xB7, 1, 0, 0, 8),                         # r1 = 8
    I(0xBF, 2, 10),                              # r2 = r10
    I(0x07, 2, 0, 0, -4),                        # r2 += -4
    I(0x61, 0, 1, 4),                            # r0 = *(u32 *)(r1 +4)
    I(0x7B, 10, 1, -8),                          # *(u64 *)(r10 -8) = r1
    I(0x72, 10, 0, -1, 0x7F),                    # *(u8 *)(r10 -1) = 127
    I(op.LD_IMM64, 1, op.PSEUDO_MAP_FD, 0, 0),   # r1 = map[fd:0]
    I(op.LD_IMM64, 3, 0, 0, 0x1122334455667788),
    I(0x85, 0, 0, 0, 1),                         # call bpf_map_lookup_elem#1
    I(0x85, 0, op.PSEUDO_CALL, 0, 3),            # call pc+3
    I(0x25, 1, 0, 3, 5),                         # if r1 > 0x5 goto pc+3
    I(0xDB, 1, 2, 0, op.AtomicOp.FETCH_ADD),     # r2 = atomic64_fetch_add(...)
    I(0x05, 0, 0, -2, 0),                        # goto pc-2
    I(0x95),                                     # exit
]


# --- encode / decode ------------------------------------------------------

def test_known_bytes_little_and_big_endian():
    (le,) = decode(bytes.fromhex("b701000008000000"), "<")
    assert le == Instruction(0xB7, dst=1, src=0, off=0, imm=8)
    assert format_insn(le) == "r1 = 8"
    (be,) = decode(bytes.fromhex("b710000000000008"), "big")
    assert be == le
    assert le.encode(">") == bytes.fromhex("b710000000000008")
    # registers: dst is the low nibble on bpfel, the high nibble on bpfeb
    (x,) = decode(bytes.fromhex("bf21000000000000"), "<")
    assert (x.dst, x.src) == (1, 2)
    (y,) = decode(bytes.fromhex("bf12000000000000"), ">")
    assert (y.dst, y.src) == (1, 2)


@pytest.mark.parametrize("bo", ["<", ">"])
def test_roundtrip_both_byteorders(bo):
    raw = encode(PROGRAM, bo)
    assert len(raw) == 8 * sum(i.slots for i in PROGRAM)
    assert decode(raw, bo) == PROGRAM
    buf = InsnBuffer(raw, bo)
    assert buf.decode() == PROGRAM
    other = ">" if bo == "<" else "<"
    assert buf.encode(other) == encode(PROGRAM, other)
    assert buf.to_byteorder(other).to_byteorder(bo).encode() == raw
    assert buf == buf.to_byteorder(other)


def test_ld_imm64_is_one_instruction_of_two_slots():
    raw = encode([I(op.LD_IMM64, 3, 0, 0, 0x1122334455667788)], "<")
    assert raw == bytes.fromhex("1803000088776655" "0000000044332211")
    (insn,) = decode(raw)
    assert insn.slots == 2 and insn.is_ldimm64 and insn.imm == 0x1122334455667788
    assert format_insn(insn) == "r3 = 0x1122334455667788 ll"
    neg = decode(encode([I(op.LD_IMM64, 1, 0, 0, -1)]))[0]
    assert neg.imm == 0xFFFFFFFFFFFFFFFF


def test_malformed_input_raises_parse_error():
    with pytest.raises(ParseError, match="multiple of 8"):
        decode(b"\x00" * 12)
    with pytest.raises(ParseError, match="truncated"):
        decode(bytes.fromhex("1801000000000000"))
    with pytest.raises(ParseError, match="second slot"):
        decode(bytes.fromhex("1801000000000000" "0501000000000000"))
    with pytest.raises(ParseError):
        InsnBuffer(b"\x00" * 7)


def test_encode_rejects_out_of_range_fields():
    for bad in (I(0xB7, 16), I(0xB7, 0, 0, 0x8000), I(0xB7, 0, 0, 0, 1 << 32), I(0x100)):
        with pytest.raises(ValueError):
            bad.encode()
    assert I(0xB7, 1, 0, 0, 0xFFFFFFFF).encode() == I(0xB7, 1, 0, 0, -1).encode()


# --- InsnBuffer patching --------------------------------------------------

def _slot_of(program, index):
    return sum(i.slots for i in program[:index])


@pytest.mark.parametrize("bo", ["<", ">"])
def test_buffer_patches_in_place(bo):
    backing = bytearray(encode(PROGRAM, bo))
    buf = InsnBuffer(backing, bo)               # wraps, does not copy
    assert len(buf) == 16
    m = _slot_of(PROGRAM, 6)                    # r1 = map[fd:0]
    assert buf.is_ldimm64(m) and not buf.is_ldimm64(m + 1)
    buf.set_imm(m, 42)                          # map fd
    buf.set_src(m, op.PSEUDO_MAP_VALUE)
    buf.set_imm(m + 1, 16)                      # value offset in the second slot
    assert format_insn(buf.get(m)) == "r1 = map[fd:42][0]+16"
    assert decode(bytes(backing), bo)[6] == I(op.LD_IMM64, 1, op.PSEUDO_MAP_VALUE, 0, 42 | 16 << 32)

    wide = _slot_of(PROGRAM, 7)
    buf.set_imm64(wide, -2)
    assert buf.imm64(wide) == 0xFFFFFFFFFFFFFFFE
    assert buf.imm(wide) == -2 and buf.imm(wide + 1) == -1

    buf.set_dst(0, 9)
    buf.set_src(1, 3)
    buf.set_off(4, -16)
    assert (buf.dst(0), buf.src(0)) == (9, 0)
    assert (buf.dst(1), buf.src(1)) == (2, 3)
    assert buf.off(4) == -16 and buf.get(4).off == -16
    assert format_insn(buf.get(4)) == "*(u64 *)(r10 -16) = r1"


def test_predicates_and_call_targets():
    buf = InsnBuffer.from_instructions(PROGRAM, "<")
    helper, pcall = _slot_of(PROGRAM, 8), _slot_of(PROGRAM, 9)
    assert buf.is_call(helper) and buf.is_helper_call(helper) and not buf.is_pseudo_call(helper)
    assert buf.is_pseudo_call(pcall) and buf.call_target(pcall) == pcall + 4
    buf.set_call_target(pcall, 1)
    assert buf.imm(pcall) == 1 - pcall - 1 and buf.call_target(pcall) == 1
    assert buf.indices(op.CALL) == [helper, pcall]
    assert buf.indices(op.LD_IMM64) == [6, 8]
    assert buf.opcodes()[0] == 0xB7 and len(buf.opcodes()) == len(buf)

    jmp = _slot_of(PROGRAM, 10)
    assert buf.is_jump(jmp) and buf.branch_target(jmp) == jmp + 4
    assert buf.is_jump(_slot_of(PROGRAM, 12)) and not buf.is_jump(pcall)
    assert buf.is_exit(len(buf) - 1)
    gotol = InsnBuffer.from_instructions([I(op.GOTOL, imm=70000)] + [I(0x95)])
    assert gotol.branch_target(0) == 70001
    with pytest.raises(ValueError):
        buf.call_target(helper)

    func = InsnBuffer.from_instructions([I(op.LD_IMM64, 2, op.PSEUDO_FUNC, 0, 5)])
    assert func.is_pseudo_func(0) and func.call_target(0) == 6
    assert format_insn(func.get(0)) == "r2 = func pc+5"


def test_memory_access_size():
    buf = InsnBuffer.from_instructions(PROGRAM, ">")
    assert buf.is_ldx(3) and buf.size_of_mem(3) == 4
    assert buf.is_stx(4) and buf.size_of_mem(4) == 8
    assert buf.is_st(5) and buf.size_of_mem(5) == 1
    buf.set_mem_size(3, 2)
    assert format_insn(buf.get(3)) == "r0 = *(u16 *)(r1 +4)"
    atomic = _slot_of(PROGRAM, 11)
    assert buf.is_atomic(atomic) and buf.size_of_mem(atomic) == 8
    with pytest.raises(ValueError):
        buf.set_mem_size(atomic, 4)             # atomics keep their width
    with pytest.raises(ValueError):
        buf.set_mem_size(0, 4)                  # not a memory access
    with pytest.raises(ValueError):
        buf.set_mem_size(3, 3)


def test_buffer_structure_operations():
    buf = InsnBuffer.from_instructions(PROGRAM[:3], "<")
    tail = InsnBuffer.from_instructions(PROGRAM[3:], ">")
    buf.extend(tail)                            # converted to this buffer's order
    assert buf.decode() == PROGRAM
    part = buf.slice(6, 10)
    assert [i for _, i in part.instructions()] == PROGRAM[6:8]
    with pytest.raises(IndexError):
        buf.opcode(len(buf))
    with pytest.raises(IndexError):
        buf.slice(3, 1)
    buf.set(0, I(0xB7, 1, 0, 0, 9))
    assert buf.get(0).imm == 9
    with pytest.raises(ValueError):
        buf.set(0, I(op.LD_IMM64, 1))           # would change the program's length
    copy = buf.copy()
    copy.set_imm(0, 1)
    assert buf.imm(0) == 9
    assert [s for s, _ in buf.instructions()][:9] == [0, 1, 2, 3, 4, 5, 6, 8, 10]


# --- disassembly ------------------------------------------------------------

@pytest.mark.parametrize("insn, text", [
    (I(0xB7, 1, 0, 0, 8), "r1 = 8"),
    (I(0xB4, 1, 0, 0, -1), "w1 = -1"),
    (I(0xBF, 6, 1), "r6 = r1"),
    (I(0x0F, 2, 3), "r2 += r3"),
    (I(0x0C, 2, 3), "w2 += w3"),
    (I(0xC7, 0, 0, 0, 7), "r0 s>>= 7"),
    (I(0x3F, 1, 2, 1), "r1 s/= r2"),
    (I(0x94, 1, 0, 1, 3), "w1 s%= 3"),
    (I(0x87, 4), "r4 = -r4"),
    (I(0xBF, 1, 2, 8), "r1 = (s8)r2"),
    (I(0xDC, 1, 0, 0, 16), "r1 = be16 r1"),
    (I(0xD4, 1, 0, 0, 32), "r1 = le32 r1"),
    (I(0xD7, 1, 0, 0, 64), "r1 = bswap64 r1"),
    (I(0x61, 0, 1, 4), "r0 = *(u32 *)(r1 +4)"),
    (I(0x91, 1, 2, 1), "r1 = *(s8 *)(r2 +1)"),
    (I(0x63, 10, 0, -4), "*(u32 *)(r10 -4) = r0"),
    (I(0x7A, 10, 0, -16, 1), "*(u64 *)(r10 -16) = 1"),
    (I(0xDB, 2, 1, 0, 0x00), "lock *(u64 *)(r2 +0) += r1"),
    (I(0xC3, 2, 1, 8, 0x50), "lock *(u32 *)(r2 +8) &= r1"),
    (I(0xDB, 2, 1, 0, 0x01), "r1 = atomic64_fetch_add((u64 *)(r2 +0), r1)"),
    (I(0xC3, 2, 1, 0, 0xE1), "r1 = atomic_xchg((u32 *)(r2 +0), r1)"),
    (I(0xDB, 3, 1, 0, 0xF1), "r0 = atomic64_cmpxchg((u64 *)(r3 +0), r0, r1)"),
    (I(0x85, 0, 0, 0, 1), "call bpf_map_lookup_elem#1"),
    (I(0x85, 0, 1, 0, 3), "call pc+3"),
    (I(0x85, 0, 2, 0, 1234), "call kfunc#1234"),
    (I(0x85, 0, 0, 0, 99999), "call unknown#99999"),
    (I(0x95), "exit"),
    (I(0x05, 0, 0, -3), "goto pc-3"),
    (I(0x06, 0, 0, 0, 40000), "gotol pc+40000"),
    (I(0x25, 1, 0, 3, 5), "if r1 > 0x5 goto pc+3"),
    (I(0x1E, 1, 0, 33), "if w1 == w0 goto pc+33"),
    (I(0x65, 1, 0, 1, -1), "if r1 s> 0xffffffff goto pc+1"),
    (I(0xE5, 0, 0, 7), "may_goto pc+7"),
    (I(op.LD_IMM64, 1, op.PSEUDO_MAP_FD, 0, 5), "r1 = map[fd:5]"),
    (I(op.LD_IMM64, 1, op.PSEUDO_MAP_IDX, 0, 2), "r1 = map[idx:2]"),
    (I(0x30, 0, 0, 0, 12), "r0 = *(u8 *)skb[12]"),
    (I(0x48, 0, 2, 0, 14), "r0 = *(u16 *)skb[r2 + 14]"),
    (I(0xFF), "invalid opcode 0xff"),
    (I(0xDB, 2, 1, 0, 0x77), "invalid opcode 0xdb"),
])
def test_format_insn(insn, text):
    assert format_insn(insn, helper_names=HELPERS) == text


def test_disassemble_numbers_slots():
    lines = disassemble(encode(PROGRAM[5:10]), helper_names=HELPERS.get)
    assert lines == [
        "   0: *(u8 *)(r10 -1) = 127",
        "   1: r1 = map[fd:0]",
        "   3: r3 = 0x1122334455667788 ll",
        "   5: call bpf_map_lookup_elem#1",
        "   6: call pc+3",
    ]


# --- against clang-19 and llvm-objdump-19 -----------------------------------

BPF_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

__u64 total = 0;
volatile const __u32 filter = 7;

static __noinline __u64 mix(__u64 a, __u64 b)
{
	return (a * 31) ^ (b >> 3) ^ ((__s64)a >> 7) ^ __builtin_bswap32((__u32)b);
}

static long cb(__u32 index, void *ctx)
{
	__sync_fetch_and_add(&total, index);
	return 0;
}

SEC("tp/syscalls/sys_enter_openat")
int on_openat(void *ctx)
{
	__u32 key = bpf_get_current_pid_tgid() >> 32;
	__u64 init = 1, *v;

	if (key == filter)
		return 0;
	v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		__sync_fetch_and_add(v, mix(*v, key));
	else
		bpf_map_update_elem(&counts, &key, &init, BPF_NOEXIST);
	bpf_loop(4, cb, 0, 0);
	total += 0x1122334455667788ULL;
	return 0;
}

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	signed char *d = (void *)(long)ctx->data;
	signed char *e = (void *)(long)ctx->data_end;
	if (d + 4 > e)
		return XDP_DROP;
	__u64 old = __sync_val_compare_and_swap(&total, 5, (long)d[1]);
#if __BPF_CPU_VERSION__ >= 4
	return (int)(d[0] + old) % 3 == 0 ? XDP_PASS : XDP_TX;
#else
	return (d[0] + old) & 1 ? XDP_PASS : XDP_TX;
#endif
}

char LICENSE[] SEC("license") = "GPL";
"""

_OBJDUMP_LINE = re.compile(r"^\s*(\d+):\t([0-9a-f]{2}(?: [0-9a-f]{2})*)\t")
_needs_llvm = pytest.mark.skipif(not (shutil.which("clang-19") and shutil.which("llvm-objdump-19")),
                                 reason="clang-19 / llvm-objdump-19 not installed")


def _objdump(path) -> dict:
    """{section: [(slot, bytes)]} from llvm-objdump-19 -d."""
    out = subprocess.run(["llvm-objdump-19", "-d", str(path)], check=True,
                         capture_output=True, text=True).stdout
    result: dict = {}
    section = None
    for line in out.splitlines():
        if line.startswith("Disassembly of section "):
            section = line[len("Disassembly of section "):].rstrip(":")
            result[section] = []
        elif (m := _OBJDUMP_LINE.match(line)) and section is not None:
            result[section].append((int(m.group(1)), bytes.fromhex(m.group(2).replace(" ", ""))))
    return result


@_needs_llvm
@pytest.mark.parametrize("target, bo", [("bpfel", "<"), ("bpfeb", ">")])
@pytest.mark.parametrize("cpu", ["v3", "v4"])
def test_decode_matches_llvm_objdump(tmp_path, target, bo, cpu):
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    src = tmp_path / "prog.c"
    src.write_text(BPF_C)
    obj = tmp_path / "prog.o"
    subprocess.run(["clang-19", "-O2", "-g", "-target", target, f"-mcpu={cpu}",
                    "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(obj)], check=True)
    expected = _objdump(obj)
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        code = {s.name: s.data() for s in elf.iter_sections()
                if s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR and s.data_size}
    assert set(code) == set(expected) == {".text", "tp/syscalls/sys_enter_openat", "xdp"}
    for name, data in code.items():
        insns = decode(data, bo)
        slots, pos = [], 0
        for insn in insns:
            slots.append((pos, insn.encode(bo)))
            pos += insn.slots
        assert slots == expected[name], name
        assert [i.opcode for i in insns] == [raw[0] for _, raw in expected[name]]
        assert InsnBuffer(data, bo).encode() == data
        for line in disassemble(data, bo):     # never fails on real code
            assert "invalid" not in line

    text = InsnBuffer(code["tp/syscalls/sys_enter_openat"], bo)
    calls = text.indices(op.CALL)
    pseudo = [i for i in calls if text.is_pseudo_call(i)]
    helpers = [text.imm(i) for i in calls if text.is_helper_call(i)]
    assert len(pseudo) == 1                    # the call to the noinline subprogram mix()
    assert helpers == [14, 1, 2, 181]          # pid_tgid, lookup, update, bpf_loop
    lines = disassemble(text, helper_names=HELPERS)
    assert "call bpf_get_current_pid_tgid#14" in lines[0]
    assert any(l.endswith("r3 = 0x1122334455667788 ll") for l in lines)
