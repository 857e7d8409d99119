// SPDX-License-Identifier: GPL-2.0
/* The "kernel" side of the CO-RE unit tests: this object's .BTF is the target
 * BTF.  Layouts differ from core_reloc.c on purpose (fields moved, resized,
 * renamed, missing, nested in anonymous members, bitfields elsewhere).
 *
 * `instance` holds a known value in every field; the tests read it back from
 * .data at the offsets and sizes the relocations resolved to, which checks the
 * relocations against the compiler's own layout in both byte orders.
 */
#include "core_common.h"

enum task_state { TS_RUNNING = 0, TS_SLEEPING = 2, TS_DEAD = 64, TS_GONE = -100 };

enum big_enum { BIG_A = 0x100000000ULL, BIG_B = 7 };           /* ENUM64 here, ENUM64 locally */
enum small_enum { SMALL_A = 3, SMALL_B = 0x7fffffff };         /* ENUM here, ENUM64 locally */

struct inner {
	long long b;
	int a;
};

struct task {
	long pad0;
	unsigned short flags;          /* local: unsigned int (a load shrinks to 2 bytes) */
	int sflags;                    /* local: long (signed, cannot shrink: poison) */
	int pid;
	char comm[32];                 /* local: char comm[16] */
	unsigned int bf_pad:7;
	unsigned int bf1:3;
	unsigned int bf2:12;
	int sbf:6;
	unsigned long long big:40;
	struct inner in;
	union {
		long u1;
		struct {
			int u2;                /* local: plain member u2 */
			int u3;
		};
	};
	struct task *parent;
	int arr[5][3];                 /* local: int arr[4][3] */
	enum task_state st;
	int new_name;                  /* task___v2 only */
	int tail[];
};

typedef struct task task_t;

/* Two candidates that agree (identical layouts) ... */
struct same { int x; int y; };
struct same___dup { int x; int y; };
/* ... and two that do not. */
struct dup { int a; int b; };
struct dup___2 { int b; int a; };

/* For bpf_core_type_matches. */
struct match_me { int x; struct inner *p; char c[4]; };
struct mismatch_me { int x; short y; };

struct task instance = {
	.pad0 = 1,
	.flags = 0xbeef,
	.sflags = -5,
	.pid = 4242,
	.comm = "kernel-comm",
	.bf_pad = 0x55,
	.bf1 = 5,
	.bf2 = 3000,
	.sbf = -17,
	.big = 0x123456789aULL,
	.in = { .b = 0x1122334455667788LL, .a = 77 },
	.u2 = 31337,
	.u3 = 99,
	.arr = { [2] = { [1] = 21 } },
	.st = TS_SLEEPING,
	.new_name = 555,
};

/* Make every type referenced so it is emitted in .BTF. */
enum big_enum big_e;
enum small_enum small_e;
task_t *task_ptr;
struct same same_v;
struct same___dup same_dup_v;
struct dup dup_v;
struct dup___2 dup2_v;
struct match_me match_v;
struct mismatch_me mismatch_v;
