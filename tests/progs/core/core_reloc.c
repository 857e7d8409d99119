// SPDX-License-Identifier: GPL-2.0
/* The "program" side of the CO-RE unit tests: every kind of CO-RE relocation,
 * against the layouts of core_target.c.  Each result lands in its own slot of
 * `out` so the compiler keeps every relocated instruction.  Not meant to be
 * loaded: the tests only relocate it.
 */
#include "core_common.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

enum task_state { TS_RUNNING = 0, TS_SLEEPING = 1, TS_GONE = 5, TS_LOCAL_ONLY = 9 };
enum task_state___x { TS_DEAD___x = 1 };
enum big_enum { BIG_A = 0x200000000ULL, BIG_B = 1 };
enum small_enum { SMALL_A = 0x300000000ULL, SMALL_B = 2 };

struct inner {
	int a;
	long long b;
} __attribute__((preserve_access_index));

struct task {
	int pid;
	unsigned int flags;
	long sflags;
	char comm[16];
	unsigned int bf1:3;
	unsigned int bf2:12;
	int sbf:6;
	unsigned long long big:40;
	struct inner in;
	int u2;
	int gone;
	struct task *parent;
	int arr[4][3];
	enum task_state st;
	int tail[];
} __attribute__((preserve_access_index));

struct task___v1 { int old_name; } __attribute__((preserve_access_index));
struct task___v2 { int new_name; } __attribute__((preserve_access_index));
typedef struct task task_t;

struct missing_type { int x; };
struct match_me { int x; struct inner *p; char c[4]; };
struct mismatch_me { int x; int y; };

struct same { int x; int y; } __attribute__((preserve_access_index));
struct dup { int a; int b; } __attribute__((preserve_access_index));

__u64 out[64];

SEC("kprobe/core")
int core_prog(struct task *t)
{
	out[0] = t->pid;
	out[1] = t->flags;
	out[2] = t->sflags;
	out[3] = bpf_core_field_size(t->comm);
	out[4] = t->in.b;
	out[5] = t->u2;
	out[6] = bpf_core_field_exists(t->gone);
	if (bpf_core_field_exists(t->gone))
		out[7] = t->gone;
	out[8] = t->arr[2][1];
	out[9] = BPF_CORE_READ_BITFIELD(t, bf1);
	out[10] = BPF_CORE_READ_BITFIELD(t, bf2);
	out[11] = BPF_CORE_READ_BITFIELD(t, sbf);
	out[12] = BPF_CORE_READ_BITFIELD(t, big);
	out[13] = bpf_core_field_exists(((struct task___v1 *)t)->old_name);
	out[14] = bpf_core_field_exists(((struct task___v2 *)t)->new_name);
	out[15] = bpf_core_type_exists(struct missing_type);
	out[16] = bpf_core_type_exists(task_t);
	out[17] = bpf_core_type_size(struct task);
	out[18] = bpf_core_type_id_kernel(struct task);
	out[19] = bpf_core_type_id_local(struct task);
	out[20] = bpf_core_type_matches(struct match_me);
	out[21] = bpf_core_type_matches(struct mismatch_me);
	out[22] = bpf_core_enum_value_exists(enum task_state, TS_LOCAL_ONLY);
	out[23] = bpf_core_enum_value(enum task_state, TS_SLEEPING);
	out[24] = bpf_core_enum_value(enum task_state, TS_GONE);
	out[25] = bpf_core_enum_value(enum big_enum, BIG_A);
	out[26] = bpf_core_enum_value(enum small_enum, SMALL_A);
	out[27] = bpf_core_enum_value(enum task_state___x, TS_DEAD___x);
	if (bpf_core_enum_value_exists(enum task_state, TS_LOCAL_ONLY))
		out[28] = bpf_core_enum_value(enum task_state, TS_LOCAL_ONLY);
	out[29] = t->st;
	out[30] = bpf_core_field_offset(t->tail[3]);
	out[31] = BPF_CORE_READ(t, parent, in.a);
	out[32] = bpf_core_field_offset(t->comm[5]);
	t->pid = 7;
	t->flags = (unsigned int)out[40];
	return 0;
}

SEC("kprobe/same")
int same_prog(struct same *s)
{
	return s->y;
}

SEC("kprobe/dup")
int dup_prog(struct dup *d)
{
	return d->a;
}

char LICENSE[] SEC("license") = "GPL";
