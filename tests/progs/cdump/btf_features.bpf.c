// SPDX-License-Identifier: GPL-2.0
/*
 * Every BTF kind and every layout trick the C dumper must reproduce, in one
 * object.  tests/kernel/test_vmlinux_h.py compiles it, dumps its .BTF back to C
 * with pybpf.btf.cdump, recompiles that header and checks the layouts match;
 * the same .BTF is the oracle input for the raw dump (bpftool format raw).
 */
typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

#define __tag(x) __attribute__((btf_type_tag(x)))
#define __decl(x) __attribute__((btf_decl_tag(x)))

enum small { SMALL_A = 1, SMALL_B = 200 } __attribute__((packed));
enum negative { NEG_MIN = -2147483647 - 1, NEG_ONE = -1, NEG_MAX = 2147483647 };
enum wide { WIDE_LOW = 1, WIDE_HIGH = 0xffffffffffffffffULL };
enum signed64 { S64_MIN = -9223372036854775807LL - 1, S64_MAX = 9223372036854775807LL };
enum { ANON_FLAG_A = 1 << 0, ANON_FLAG_B = 1 << 1 };

struct list { struct list *next, *prev; };

struct bits {
	u32 a: 3;
	u32 b: 5;
	u8 c: 1;
	enum small s: 2;
	u64 wide: 40;
	int tail;
};

struct packed_one { char c; u64 v; } __attribute__((packed));
struct packed_aligned { char c; u32 v; } __attribute__((packed, aligned(2)));
struct over_aligned { long x; } __attribute__((aligned(64)));
union over_aligned_union { int a; char b[3]; } __attribute__((aligned(32)));

struct holes {
	char c;
	u32 after_hole __attribute__((aligned(16)));
	struct over_aligned oa;
	struct packed_one p1;
	short s;
	union over_aligned_union u;
	char flex[];
};

typedef struct { int counter; } atomic_like;
typedef int (*callback_t)(struct list *, const char *const, ...);
typedef void fn_type(int);
typedef struct list list_t;

struct everything {
	atomic_like cnt;
	callback_t cb;
	fn_type *fn;
	list_t *lst;
	const char *name;
	char *const fixed;
	volatile int vol;
	int *restrict rp;
	int matrix[2][3];
	int (*row)[3];
	char *argv[4];
	float f;
	double d;
	int __tag("user") *user_ptr;
	int __tag("a") __tag("b") *two_tags;
	struct bits bits;
	struct holes *holes;
	struct opaque *never_defined;
	union {
		u32 word;
		struct { u8 lo, hi; };
	};
	enum { INLINE_X, INLINE_Y } inline_enum;
	int decl_tagged __decl("member_tag");
};

struct everything g_everything __decl("var_tag");
struct holes g_holes;
struct packed_aligned g_pa[2];
enum negative g_neg;
enum wide g_wide;
enum signed64 g_s64;
int g_anon = ANON_FLAG_A;

__attribute__((noinline)) int __decl("func_tag") helper(struct everything *e, int x __decl("arg_tag"))
{
	return e->vol + x;
}

__attribute__((section("tc"), used)) int prog(struct everything *ctx)
{
	return helper(ctx, 1) + g_anon;
}

char LICENSE[] __attribute__((section("license"), used)) = "GPL";
