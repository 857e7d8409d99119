"""pybpf.btf.cdump (BTF -> C) and pybpf.btf.rawdump (bpftool-style text) on hand-built BTF.

The BTF blobs are assembled with struct.pack by :class:`BTFBuilder`, so these
tests need neither clang nor a kernel.  tests/kernel/test_vmlinux_h.py compiles
the output with clang against real BTF.
"""

from __future__ import annotations

import struct
from typing import List, Sequence, Tuple

import pytest

from pybpf.btf import Kind, Spec
from pybpf.btf.cdump import dump_c
from pybpf.btf.rawdump import dump_raw, format_type, type_to_dict
from pybpf.errors import ParseError


class BTFBuilder:
    """Assembles raw little-endian BTF; each add method returns the new type id."""

    def __init__(self) -> None:
        self.records: List[bytes] = []
        self.strings = bytearray(b"\0")
        self.offsets = {"": 0}

    def _str(self, s: str) -> int:
        if s not in self.offsets:
            self.offsets[s] = len(self.strings)
            self.strings += s.encode() + b"\0"
        return self.offsets[s]

    def _add(self, kind: Kind, name: str, vlen: int, size_or_type: int, extra: bytes = b"",
             kflag: bool = False) -> int:
        info = (int(kflag) << 31) | (int(kind) << 24) | vlen
        self.records.append(struct.pack("<III", self._str(name), info, size_or_type) + extra)
        return len(self.records)

    def int_(self, name: str, size: int, signed: bool = False, bits: int = 0, encoding: int = -1) -> int:
        enc = encoding if encoding >= 0 else int(signed)
        return self._add(Kind.INT, name, 0, size, struct.pack("<I", (enc << 24) | (bits or size * 8)))

    def ptr(self, t: int) -> int:
        return self._add(Kind.PTR, "", 0, t)

    def array(self, t: int, n: int, index: int = 0) -> int:
        return self._add(Kind.ARRAY, "", 0, 0, struct.pack("<III", t, index, n))

    def composite(self, kind: Kind, name: str, size: int,
                  members: Sequence[Tuple[str, int, int, int]]) -> int:
        """members: (name, type, bit offset, bitfield size)."""
        kflag = any(m[3] for m in members)
        extra = b"".join(struct.pack("<III", self._str(n), t, (bs << 24 | off) if kflag else off)
                         for n, t, off, bs in members)
        return self._add(kind, name, len(members), size, extra, kflag)

    def struct(self, name: str, size: int, members: Sequence[Tuple[str, int, int, int]]) -> int:
        return self.composite(Kind.STRUCT, name, size, members)

    def union(self, name: str, size: int, members: Sequence[Tuple[str, int, int, int]]) -> int:
        return self.composite(Kind.UNION, name, size, members)

    def enum(self, name: str, values: Sequence[Tuple[str, int]], size: int = 4,
             signed: bool = False) -> int:
        extra = b"".join(struct.pack("<Ii" if signed else "<II", self._str(n), v) for n, v in values)
        return self._add(Kind.ENUM, name, len(values), size, extra, signed)

    def enum64(self, name: str, values: Sequence[Tuple[str, int]], signed: bool = False) -> int:
        extra = b"".join(struct.pack("<III", self._str(n), v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF)
                         for n, v in values)
        return self._add(Kind.ENUM64, name, len(values), 8, extra, signed)

    def fwd(self, name: str, union: bool = False) -> int:
        return self._add(Kind.FWD, name, 0, 0, kflag=union)

    def typedef(self, name: str, t: int) -> int:
        return self._add(Kind.TYPEDEF, name, 0, t)

    def const(self, t: int) -> int:
        return self._add(Kind.CONST, "", 0, t)

    def volatile(self, t: int) -> int:
        return self._add(Kind.VOLATILE, "", 0, t)

    def restrict(self, t: int) -> int:
        return self._add(Kind.RESTRICT, "", 0, t)

    def type_tag(self, name: str, t: int) -> int:
        return self._add(Kind.TYPE_TAG, name, 0, t)

    def func_proto(self, ret: int, params: Sequence[Tuple[str, int]]) -> int:
        extra = b"".join(struct.pack("<II", self._str(n), t) for n, t in params)
        return self._add(Kind.FUNC_PROTO, "", len(params), ret, extra)

    def func(self, name: str, proto: int, linkage: int = 1) -> int:
        return self._add(Kind.FUNC, name, linkage, proto)

    def var(self, name: str, t: int, linkage: int = 1) -> int:
        return self._add(Kind.VAR, name, 0, t, struct.pack("<I", linkage))

    def datasec(self, name: str, size: int, vars: Sequence[Tuple[int, int, int]]) -> int:
        extra = b"".join(struct.pack("<III", *v) for v in vars)
        return self._add(Kind.DATASEC, name, len(vars), size, extra)

    def float_(self, name: str, size: int) -> int:
        return self._add(Kind.FLOAT, name, 0, size)

    def decl_tag(self, name: str, t: int, component: int = -1) -> int:
        return self._add(Kind.DECL_TAG, name, 0, t, struct.pack("<i", component))

    def build(self) -> bytes:
        types = b"".join(self.records)
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(self.strings))
        return hdr + types + bytes(self.strings)

    def spec(self) -> Spec:
        return Spec.parse(self.build())


def body(header: str) -> str:
    """The part of a generated header between the prologue and the epilogue."""
    start = header.index("#endif\n\n", header.index("preserve_access_index")) + len("#endif\n\n")
    end = header.index("#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop")
    return header[start:end]


def c_of(b: BTFBuilder, **kw) -> str:
    return body(dump_c(b.spec(), **kw))


# -- dump_c: the frame --------------------------------------------------------------------------

def test_prologue_and_epilogue():
    b = BTFBuilder()
    b.int_("int", 4, signed=True)
    h = dump_c(b.spec(), guard="MY_H")
    assert h.startswith("#ifndef MY_H\n#define MY_H\n\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
                        "#pragma clang attribute push (__attribute__((preserve_access_index)), "
                        "apply_to = record)\n#endif\n\n")
    assert h.endswith("#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n"
                      "#endif /* MY_H */\n")
    assert "__btf_type_tag" not in h  # the macro only comes with type tags


def test_golden_small_header():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)
    u64 = b.int_("long long unsigned int", 8)
    ch = b.int_("char", 1, encoding=2)
    node = b.struct("node", 24, [("next", 5, 0, 0), ("value", 6, 64, 0), ("name", 8, 128, 0)])
    b.ptr(node)                              # 5
    b.typedef("u64", u64)                    # 6
    b.const(ch)                              # 7
    b.ptr(7)                                 # 8
    assert i32 == 1
    assert c_of(b) == (
        "struct node;\n\n"
        "typedef long long unsigned int u64;\n\n"
        "struct node {\n"
        "\tstruct node *next;\n"
        "\tu64 value;\n"
        "\tconst char *name;\n"
        "};\n\n"
    )


# -- ordering ----------------------------------------------------------------------------------

def test_by_value_member_is_defined_first():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)
    b.struct("outer", 8, [("in", 3, 0, 0), ("x", i32, 32, 0)])   # 2, uses 3 by value
    b.struct("inner", 4, [("v", i32, 0, 0)])                     # 3
    out = c_of(b)
    assert out.index("struct inner {") < out.index("struct outer {")
    assert out.count("struct inner {") == 1


def test_pointer_cycle_breaks_with_forward_declaration():
    b = BTFBuilder()
    b.struct("a", 8, [("b", 3, 0, 0)])        # 1: struct a { struct b *b; }
    b.struct("b", 8, [("a", 1, 0, 0)])        # 2: struct b { struct a a; }
    b.ptr(2)                                  # 3
    out = c_of(b)
    assert out.index("struct b;") < out.index("struct a {") < out.index("struct b {")
    assert "\tstruct b *b;\n" in out and "\tstruct a a;\n" in out


def test_struct_containing_itself_by_value_is_an_error():
    b = BTFBuilder()
    b.struct("loop", 8, [("self", 1, 0, 0)])
    with pytest.raises(ParseError, match="contains itself"):
        dump_c(b.spec())


def test_function_prototype_parameters_get_forward_declarations():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)
    fp = b.func_proto(i32, [("", 4), ("flags", i32)])   # 2
    b.typedef("handler_t", 5)                         # 3
    b.ptr(6)                                          # 4: struct req *
    b.ptr(fp)                                         # 5
    b.struct("req", 8, [("h", 3, 0, 0)])              # 6
    out = c_of(b)
    assert "typedef int (*handler_t)(struct req *, int flags);" in out
    assert out.index("struct req;") < out.index("typedef int (*handler_t)")
    assert out.index("typedef int (*handler_t)") < out.index("struct req {")


def test_roots_limit_the_output():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)
    b.struct("wanted", 4, [("v", 4, 0, 0)])          # 2
    b.struct("unwanted", 4, [("v", i32, 0, 0)])      # 3
    b.typedef("s32", i32)                             # 4
    out = c_of(b, roots=[2])
    assert "struct wanted {" in out and "typedef int s32;" in out
    assert "unwanted" not in out


# -- declarators -------------------------------------------------------------------------------

def test_declarators():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)                # 1
    ch = b.int_("char", 1, encoding=2)                 # 2
    cch = b.const(ch)                                  # 3 const char
    pcch = b.ptr(cch)                                  # 4 const char *
    cpcch = b.const(pcch)                              # 5 const char *const
    pch = b.ptr(ch)                                    # 6 char *
    mat = b.array(b.array(i32, 3), 2)                  # 7 = int[3], 8 = int[2][3]
    parr = b.ptr(7)                                    # 9 int (*)[3]
    argv = b.array(pch, 4)                             # 10 char *[4]
    flex = b.array(ch, 0)                              # 11 char[0]
    vi = b.volatile(i32)                               # 12
    pi = b.ptr(i32)                                    # 13
    rpi = b.restrict(pi)                               # 14 int *restrict
    fp = b.func_proto(pi, [("", i32)])                 # 15 int *(int)
    pfp = b.ptr(fp)                                    # 16
    afp = b.array(pfp, 2)                              # 17 int *(*[2])(int)
    ppch = b.ptr(pch)                                  # 18 char **
    cppch = b.const(ppch)                              # 19 char **const
    vfp = b.func_proto(0, [])                          # 20 void (void)
    pvfp = b.ptr(vfp)                                  # 21
    vararg = b.func_proto(i32, [("fmt", pcch), ("", 0)])  # 22 int (const char *fmt, ...)
    pva = b.ptr(vararg)                                # 23
    cmat = b.const(mat)                                # 24 const int[2][3]
    members = [("a", cpcch, 8), ("b", mat, 24), ("c", parr, 8), ("d", argv, 32), ("e", vi, 8),
               ("f", rpi, 8), ("g", afp, 16), ("h", cppch, 8), ("i", pvfp, 8), ("j", pva, 8),
               ("k", cmat, 24), ("l", flex, 0)]
    layout, off = [], 0
    for name, t, size in members:  # sizes rounded to 8 so every member stays naturally aligned
        layout.append((name, t, off * 8, 0))
        off += size
    b.struct("decls", off, layout)
    out = c_of(b)
    for line in ("const char *const a;", "int b[2][3];", "int (*c)[3];", "char *d[4];",
                 "volatile int e;", "int *restrict f;", "int *(*g[2])(int);", "char **const h;",
                 "void (*i)(void);", "int (*j)(const char *fmt, ...);", "const int k[2][3];",
                 "char l[0];"):
        assert f"\t{line}\n" in out, line


def test_typedefs_of_anonymous_types_and_function_types():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)                         # 1
    anon = b.struct("", 4, [("counter", i32, 0, 0)])            # 2
    b.typedef("atomic_t", anon)                                 # 3
    e = b.enum("", [("MODE_A", 0), ("MODE_B", 1)])              # 4
    b.typedef("mode_t", e)                                      # 5
    fn = b.func_proto(0, [("", i32)])                           # 6
    b.typedef("fn_type", fn)                                    # 7
    b.typedef("fn_ptr", b.ptr(fn))                              # 8, 9
    out = c_of(b)
    assert "typedef struct {\n\tint counter;\n} atomic_t;\n" in out
    assert "typedef enum {\n\tMODE_A = 0,\n\tMODE_B = 1,\n} mode_t;\n" in out
    assert "typedef void fn_type(int);" in out
    assert "typedef void (*fn_ptr)(int);" in out
    assert out.count("MODE_A") == 1   # the anonymous enum is not repeated at top level


def test_anonymous_members_are_inlined():
    b = BTFBuilder()
    u32 = b.int_("unsigned int", 4)                                      # 1
    u8 = b.int_("unsigned char", 1)                                      # 2
    lohi = b.struct("", 2, [("lo", u8, 0, 0), ("hi", u8, 8, 0)])         # 3
    un = b.union("", 4, [("word", u32, 0, 0), ("", lohi, 0, 0)])         # 4
    b.struct("reg", 8, [("", un, 0, 0), ("named", lohi, 32, 0)])         # 5
    out = c_of(b)
    assert ("struct reg {\n\tunion {\n\t\tunsigned int word;\n\t\tstruct {\n"
            "\t\t\tunsigned char lo;\n\t\t\tunsigned char hi;\n\t\t};\n\t};\n"
            "\tstruct {\n\t\tunsigned char lo;\n\t\tunsigned char hi;\n\t} named;\n") in out


def test_float_void_pointer_and_skipped_kinds():
    b = BTFBuilder()
    d = b.float_("double", 8)                                     # 1
    vp = b.ptr(0)                                                 # 2
    s = b.struct("f", 16, [("d", d, 0, 0), ("p", vp, 64, 0)])    # 3
    proto = b.func_proto(d, [("x", s)])                           # 4
    fn = b.func("compute", proto)                                 # 5
    v = b.var("global_f", s)                                      # 6
    b.datasec(".data", 16, [(v, 0, 16)])                          # 7
    b.decl_tag("tag", fn)                                         # 8
    out = c_of(b)
    assert "struct f {\n\tdouble d;\n\tvoid *p;\n};\n" in out
    assert "compute" not in out and "global_f" not in out and ".data" not in out


def test_builtin_va_list_is_replaced_by_its_type():
    b = BTFBuilder()
    u32 = b.int_("unsigned int", 4)                                        # 1
    tag = b.struct("__va_list_tag", 8, [("gp", u32, 0, 0), ("fp", u32, 32, 0)])  # 2
    arr = b.array(tag, 1)                                                   # 3
    builtin = b.typedef("__builtin_va_list", arr)                           # 4
    b.typedef("va_list", builtin)                                           # 5
    out = c_of(b)
    assert "typedef struct __va_list_tag va_list[1];" in out
    assert "typedef" not in out.replace("typedef struct __va_list_tag va_list[1];", "")


def test_type_tags_use_a_guarded_macro():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)                       # 1
    tagged = b.type_tag("user", i32)                          # 2
    p = b.ptr(tagged)                                         # 3
    inner = b.type_tag("a", i32)                              # 4
    outer = b.type_tag("b", inner)                            # 5
    p2 = b.ptr(outer)                                         # 6
    b.struct("tags", 16, [("u", p, 0, 0), ("two", p2, 64, 0)])
    h = dump_c(b.spec())
    assert "#define __btf_type_tag(x) __attribute__((btf_type_tag(x)))" in h
    assert '\tint __btf_type_tag("user") *u;\n' in h
    assert '\tint __btf_type_tag("a") __btf_type_tag("b") *two;\n' in h


# -- layout ------------------------------------------------------------------------------------

def test_bitfields_and_padding_bitfields():
    b = BTFBuilder()
    u32 = b.int_("unsigned int", 4)                                                 # 1
    u64 = b.int_("long long unsigned int", 8)                                       # 2
    b.struct("flags", 16, [("a", u32, 0, 3), ("b", u32, 3, 5), ("wide", u64, 16, 40),
                           ("late", u32, 96, 4)])
    out = c_of(b)
    assert ("struct flags {\n\tunsigned int a: 3;\n\tunsigned int b: 5;\n"
            "\tlong: 8;\n\tlong long unsigned int wide: 40;\n"
            "\tlong: 8;\n\tlong: 32;\n\tunsigned int late: 4;\n};\n") in out


def test_old_style_int_bitfields():
    b = BTFBuilder()
    b.int_("unsigned int", 4, bits=3)                                # 1: a 3-bit int
    b.int_("unsigned int", 4)                                        # 2
    b.struct("old", 4, [("x", 1, 0, 0), ("y", 1, 3, 0)])
    out = c_of(b)
    assert "\tunsigned int x: 3;\n\tunsigned int y: 3;\n" in out


def test_gap_before_member_is_filled_with_unnamed_bitfields():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)
    b.struct("gap", 12, [("a", i32, 0, 0), ("b", i32, 64, 0)])
    assert "struct gap {\n\tint a;\n\tlong: 32;\n\tint b;\n};\n" in c_of(b)


def test_over_aligned_struct_gets_tail_padding():
    b = BTFBuilder()
    i64 = b.int_("long int", 8, signed=True)
    b.struct("cacheline", 64, [("x", i64, 0, 0)])
    out = c_of(b)
    assert "struct cacheline {\n\tlong int x;\n" + "\tlong: 64;\n" * 7 + "};\n" in out


def test_misaligned_member_makes_struct_packed():
    b = BTFBuilder()
    ch = b.int_("char", 1, encoding=2)                                 # 1
    u64 = b.int_("long long unsigned int", 8)                          # 2
    b.struct("packed", 9, [("c", ch, 0, 0), ("v", u64, 8, 0)])         # 3
    b.struct("holder", 10, [("c", ch, 0, 0), ("p", 3, 8, 0)])          # 4: packed at offset 1
    b.struct("aligned_but_short", 12, [("v", u64, 0, 0), ("w", 6, 64, 0)])  # 5
    b.int_("unsigned int", 4)                                          # 6
    out = c_of(b)
    assert "struct packed {\n\tchar c;\n\tlong long unsigned int v;\n} __attribute__((packed));" in out
    assert "struct holder {\n\tchar c;\n\tstruct packed p;\n};" in out
    assert "} __attribute__((packed));" in out.split("struct aligned_but_short {")[1]


def test_union_bigger_than_members():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)
    b.union("aligned", 32, [("a", i32, 0, 0)])
    b.union("odd", 12, [("a", i32, 0, 0)])
    out = c_of(b)
    assert "union aligned {\n\tint a;\n} __attribute__((aligned(32)));" in out
    assert "union odd {\n\tint a;\n\tstruct {\n\t\tlong: 64;\n\t\tlong: 32;\n\t};\n};" in out


def test_empty_struct_and_flexible_array():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)
    empty = b.struct("", 0, [])
    flex = b.array(i32, 0)
    b.struct("dyn", 4, [("n", i32, 0, 0), ("__empty", empty, 32, 0), ("items", flex, 32, 0)])
    assert "struct dyn {\n\tint n;\n\tstruct {} __empty;\n\tint items[0];\n};" in c_of(b)


# -- enums -------------------------------------------------------------------------------------

def test_enum_values_and_sizes():
    b = BTFBuilder()
    b.enum("neg", [("NEG_MIN", -(1 << 31)), ("NEG_ONE", -1)], signed=True)
    b.enum("big", [("BIG", 0xFFFFFFFF)])
    b.enum64("wide", [("WIDE", (1 << 64) - 1), ("SMALL", 1)])
    b.enum64("swide", [("SMIN", -(1 << 63)), ("SMAX", (1 << 63) - 1)], signed=True)
    b.enum("tiny", [("TINY_A", 1), ("TINY_B", 200)], size=1)
    b.enum("short_fixed", [("SF_A", 1)], size=2)
    b.enum64("long_fixed", [("LF_A", 1)])
    b.enum("fwd_enum", [], size=4)
    out = c_of(b)
    assert "enum neg {\n\tNEG_MIN = -2147483648,\n\tNEG_ONE = -1,\n};" in out
    assert "enum big {\n\tBIG = 4294967295,\n};" in out
    assert "enum wide {\n\tWIDE = 18446744073709551615ULL,\n\tSMALL = 1,\n};" in out
    assert "\tSMIN = (-9223372036854775807LL - 1),\n\tSMAX = 9223372036854775807,\n" in out
    assert "enum tiny {\n\tTINY_A = 1,\n\tTINY_B = 200,\n} __attribute__((packed));" in out
    assert "enum short_fixed : unsigned short {\n\tSF_A = 1,\n};" in out
    assert "enum long_fixed : unsigned long {\n\tLF_A = 1,\n};" in out
    assert "enum fwd_enum;" in out


def test_anonymous_enum_constants_are_defined_once():
    b = BTFBuilder()
    e = b.enum("", [("STATE_ON", 1), ("STATE_OFF", 0)])          # 1
    b.struct("two", 8, [("first", e, 0, 0), ("second", e, 32, 0)])
    b.enum("", [("UNUSED_FLAG", 4)])                              # 3: used by nothing
    out = c_of(b)
    assert out.count("STATE_ON = 1") == 1
    assert "\t} first;\n\tunsigned int second;\n" in out
    assert "enum {\n\tUNUSED_FLAG = 4,\n};" in out


# -- names -------------------------------------------------------------------------------------

def test_duplicate_names_are_disambiguated():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)                            # 1
    u8 = b.int_("unsigned char", 1)                                # 2
    b.struct("dup", 4, [("a", i32, 0, 0)])                         # 3
    b.struct("dup", 1, [("b", u8, 0, 0)])                          # 4
    b.fwd("dup")                                                   # 5: resolves to the first
    b.struct("user", 16, [("x", 4, 0, 0), ("p", 7, 64, 0)])        # 6
    b.ptr(5)                                                       # 7
    b.typedef("u8", u8)                                            # 8
    b.typedef("u8", i32)                                           # 9
    b.enum("state", [("ON", 1)])                                   # 10
    b.enum("", [("ON", 2), ("OFF", 3)])                            # 11
    b.struct("state", 4, [("s", 10, 0, 0)])                        # 12: tag clash with enum
    b.fwd("lonely", union=True)                                    # 13
    out = c_of(b)
    assert "struct dup {\n\tint a;\n};" in out and "struct dup___2 {\n\tunsigned char b;\n};" in out
    assert "\tstruct dup___2 x;\n\tstruct dup *p;\n" in out
    assert "typedef unsigned char u8;" in out and "typedef int u8___2;" in out
    assert "\tON = 1,\n" in out and "\tON___2 = 2,\n\tOFF = 3,\n" in out
    assert "struct state___2 {\n\tenum state s;\n};" in out
    assert "union lonely;" in out


def test_parameter_names_that_shadow_typedefs_are_dropped():
    b = BTFBuilder()
    u8 = b.int_("unsigned char", 1)                          # 1
    b.typedef("u8", u8)                                      # 2
    proto = b.func_proto(0, [("u8", 2), ("len", 2)])         # 3
    b.typedef("cb_t", b.ptr(proto))                          # 4, 5
    assert "typedef void (*cb_t)(u8, u8 len);" in c_of(b)


def test_ms_extension_anonymous_named_member_is_copied():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)
    base = b.struct("base", 4, [("x", i32, 0, 0)])
    b.struct("derived", 8, [("", base, 0, 0), ("y", i32, 32, 0)])
    out = c_of(b)
    assert "struct derived {\n\tstruct {\n\t\tint x;\n\t};\n\tint y;\n};" in out


# -- raw dump ----------------------------------------------------------------------------------

def _raw_sample() -> Spec:
    b = BTFBuilder()
    b.int_("int", 4, signed=True)                                        # 1
    b.ptr(1)                                                             # 2
    b.array(1, 4, index=1)                                               # 3
    b.struct("s", 8, [("a", 1, 0, 0), ("", 1, 32, 0)])                   # 4
    b.union("u", 4, [("bits", 1, 0, 3)])                                 # 5
    b.enum("e", [("A", 1), ("B", 0xFFFFFFFF)])                           # 6
    b.enum("se", [("M", -1)], signed=True)                               # 7
    b.fwd("f", union=True)                                               # 8
    b.typedef("t", 1)                                                    # 9
    b.volatile(1)                                                        # 10
    b.const(1)                                                           # 11
    b.restrict(2)                                                        # 12
    b.func("fn", 14, linkage=1)                                          # 13
    b.func_proto(1, [("x", 1), ("", 0)])                                 # 14
    b.var("v", 1, linkage=0)                                             # 15
    b.datasec(".data", 4, [(15, 0, 4)])                                  # 16
    b.float_("double", 8)                                                # 17
    b.decl_tag("dt", 13, 0)                                              # 18
    b.type_tag("user", 1)                                                # 19
    b.enum64("e64", [("BIG", 1 << 40)])                                  # 20
    b.enum64("se64", [("NEG", -5)], signed=True)                         # 21
    b.int_("_Bool", 1, encoding=4, bits=8)                               # 22
    b.func("ext", 14, linkage=2)                                         # 23
    return b.spec()


def test_raw_dump_lines():
    assert list(dump_raw(_raw_sample())) == [
        "[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED",
        "[2] PTR '(anon)' type_id=1",
        "[3] ARRAY '(anon)' type_id=1 index_type_id=1 nr_elems=4",
        "[4] STRUCT 's' size=8 vlen=2",
        "\t'a' type_id=1 bits_offset=0",
        "\t'(anon)' type_id=1 bits_offset=32",
        "[5] UNION 'u' size=4 vlen=1",
        "\t'bits' type_id=1 bits_offset=0 bitfield_size=3",
        "[6] ENUM 'e' encoding=UNSIGNED size=4 vlen=2",
        "\t'A' val=1",
        "\t'B' val=4294967295",
        "[7] ENUM 'se' encoding=SIGNED size=4 vlen=1",
        "\t'M' val=-1",
        "[8] FWD 'f' fwd_kind=union",
        "[9] TYPEDEF 't' type_id=1",
        "[10] VOLATILE '(anon)' type_id=1",
        "[11] CONST '(anon)' type_id=1",
        "[12] RESTRICT '(anon)' type_id=2",
        "[13] FUNC 'fn' type_id=14 linkage=global",
        "[14] FUNC_PROTO '(anon)' ret_type_id=1 vlen=2",
        "\t'x' type_id=1",
        "\t'(anon)' type_id=0",
        "[15] VAR 'v' type_id=1, linkage=static",
        "[16] DATASEC '.data' size=4 vlen=1",
        "\ttype_id=15 offset=0 size=4 (VAR 'v')",
        "[17] FLOAT 'double' size=8",
        "[18] DECL_TAG 'dt' type_id=13 component_idx=0",
        "[19] TYPE_TAG 'user' type_id=1",
        "[20] ENUM64 'e64' encoding=UNSIGNED size=8 vlen=1",
        "\t'BIG' val=1099511627776ULL",
        "[21] ENUM64 'se64' encoding=SIGNED size=8 vlen=1",
        "\t'NEG' val=-5LL",
        "[22] INT '_Bool' size=1 bits_offset=0 nr_bits=8 encoding=BOOL",
        "[23] FUNC 'ext' type_id=14 linkage=extern",
    ]


def test_format_type_and_type_to_dict():
    spec = _raw_sample()
    assert format_type(spec, 5) == ("[5] UNION 'u' size=4 vlen=1\n"
                                    "\t'bits' type_id=1 bits_offset=0 bitfield_size=3")
    assert type_to_dict(spec, 4) == {
        "id": 4, "kind": "STRUCT", "name": "s", "size": 8, "vlen": 2,
        "members": [{"name": "a", "type_id": 1, "bits_offset": 0},
                    {"name": "(anon)", "type_id": 1, "bits_offset": 32}]}
    assert type_to_dict(spec, 7)["values"] == [{"name": "M", "val": -1}]
    assert type_to_dict(spec, 16)["vars"] == [{"type_id": 15, "offset": 0, "size": 4}]
    assert type_to_dict(spec, 14)["params"][1] == {"name": "(anon)", "type_id": 0}
    assert type_to_dict(spec, 1) == {"id": 1, "kind": "INT", "name": "int", "size": 4,
                                     "bits_offset": 0, "nr_bits": 32, "encoding": "SIGNED"}
    assert type_to_dict(spec, 18) == {"id": 18, "kind": "DECL_TAG", "name": "dt", "type_id": 13,
                                      "component_idx": 0}


def test_raw_dump_of_split_btf_starts_after_the_base():
    base = _raw_sample()
    b = BTFBuilder()
    b.ptr(1)
    raw = b.build()
    # Split BTF: no leading empty string; ids continue after the base.
    types = raw[24:24 + 12]
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), 1)
    split = Spec.parse(hdr + types + b"\0", base=base)
    assert list(dump_raw(split)) == [f"[{len(base)}] PTR '(anon)' type_id=1"]


# -- malformed or non-C BTF --------------------------------------------------------------------

def test_cyclic_modifier_chain_is_a_parse_error():
    b = BTFBuilder()
    b.const(1)                                   # 1: const of itself
    b.struct("s", 8, [("m", 1, 0, 0)])
    with pytest.raises(ParseError, match="too long or cyclic"):
        dump_c(b.spec())


def test_anonymous_struct_containing_itself_is_a_parse_error():
    b = BTFBuilder()
    b.struct("", 8, [("again", 1, 0, 0)])        # 1
    b.typedef("loop_t", 1)
    with pytest.raises(ParseError, match="contains itself"):
        dump_c(b.spec())


def test_non_c_names_are_made_identifiers():
    b = BTFBuilder()
    u32 = b.int_("unsigned int", 4)
    b.struct("Option<u32>", 8, [("tag", u32, 0, 0), ("0", u32, 32, 0)])
    b.typedef("core::num::Wrapping", u32)
    b.enum("Kind", [("Kind::A", 0)])
    out = c_of(b)
    assert "struct Option_u32_ {\n\tunsigned int tag;\n\tunsigned int _0;\n};" in out
    assert "typedef unsigned int core__num__Wrapping;" in out
    assert "\tKind__A = 0,\n" in out


def test_nameless_typedef_and_fwd_are_looked_through():
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)          # 1
    b.typedef("", i32)                           # 2: invalid, but must not produce `typedef int ;`
    b.fwd("")                                    # 3
    b.struct("s", 16, [("a", 2, 0, 0), ("p", 5, 64, 0)])   # 4
    b.ptr(3)                                     # 5
    assert "struct s {\n\tint a;\n\tvoid *p;\n};" in c_of(b)


def test_non_c_int_and_float_names_become_c_types():
    b = BTFBuilder()
    usize = b.int_("usize", 8)                                   # 1
    rchar = b.int_("char", 4)                                    # 2: Rust's 4-byte char
    rbool = b.int_("bool", 1, encoding=4)                        # 3
    i128 = b.int_("i128", 16, signed=True)                       # 4
    f64 = b.float_("f64", 8)                                     # 5
    ok = b.int_("long long unsigned int", 8)                     # 6
    b.struct("r", 64, [("a", usize, 0, 0), ("b", rchar, 64, 0), ("c", rbool, 96, 0),
                       ("d", i128, 128, 0), ("e", f64, 256, 0), ("f", ok, 320, 0)])
    out = c_of(b)
    assert ("\tunsigned long a;\n\tunsigned int b;\n\t_Bool c;\n"
            "\t__int128 d;\n\tdouble e;\n\tlong long unsigned int f;\n"
            "\tlong: 64;\n\tlong: 64;\n}") in out
