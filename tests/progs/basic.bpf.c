// SPDX-License-Identifier: GPL-2.0
/* Foundation test object: BTF maps of several types, global data in every
 * section kind, subprograms (.text static + global, static in the program
 * section, callbacks), tail calls through a prog array initialised in the
 * ELF, per-CPU maps and a tracepoint program triggered by the test. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct pair { __u32 a; __u32 b; };
enum color { RED = 1, GREEN = 2, BLUE = 40 };
struct rec {
	__u64 count;
	enum color color;
	char name[8];
	struct pair p;
	__u16 small[3];
	int sign:4;
	unsigned int flag:1;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} results SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, struct pair);
	__type(value, struct rec);
} recs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} pcpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_counter SEC(".maps");

/* .rodata knobs, .data, .bss, custom sections */
const volatile __u64 multiplier = 3;
const volatile __u32 target_pid = 0;
__u64 data_var = 7;
__u64 bss_counter;
__u64 tp_hits;
__u64 custom_data SEC(".data.custom") = 11;
const volatile __u32 custom_ro SEC(".rodata.custom") = 13;

static __noinline __u64 times_multiplier(__u64 x)
{
	return x * multiplier;
}

__noinline int global_add(int x)
{
	return x + 100;
}

static int loop_cb(__u32 i, void *ctx)
{
	bss_counter += 1;
	return 0;
}

static __always_inline void set_result(__u32 idx, __u64 v)
{
	bpf_map_update_elem(&results, &idx, &v, BPF_ANY);
}

SEC("syscall")
int compute(void *ctx)
{
	set_result(0, times_multiplier(data_var));        /* 7 * multiplier */
	set_result(1, global_add(5));                     /* 105 */
	bpf_loop(4, loop_cb, NULL, 0);                    /* bss_counter += 4 */
	set_result(2, bss_counter);
	set_result(3, custom_data + custom_ro);           /* 24 */
	data_var += 1;
	return 42;
}

SEC("syscall")
int fill_recs(void *ctx)
{
	struct pair k = { .a = 1, .b = 2 };
	struct rec r = { .count = 5, .color = BLUE, .name = "hello", .p = { 3, 4 },
			 .small = { 1, 2, 3 }, .sign = -3, .flag = 1 };
	bpf_map_update_elem(&recs, &k, &r, BPF_ANY);
	__u32 z = 0;
	__u64 *c = bpf_map_lookup_elem(&pinned_counter, &z);
	if (c)
		__sync_fetch_and_add(c, 1);
	return 0;
}

/* Tail calls: entry jumps to slot 1 of jmp_table, filled from the ELF. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jmp_table SEC(".maps");

SEC("xdp")
int tail_target(struct xdp_md *ctx)
{
	__u32 k = 5;
	__u64 v = 555;
	bpf_map_update_elem(&results, &k, &v, BPF_ANY);
	return XDP_DROP;
}

SEC("xdp")
int tail_entry(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jmp_table, 1);
	return XDP_PASS;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jmp_init SEC(".maps") = {
	.values = { [1] = (void *)&tail_target },
};

SEC("xdp")
int tail_entry2(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jmp_init, 1);
	return XDP_PASS;
}

/* A static helper living in the program section itself. */
static __noinline int in_section_helper(int x)
{
	return x * 2;
}

SEC("raw_tp/sys_enter")
int count_pcpu(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&pcpu, &k);
	if (v)
		*v += 1;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int tp_getppid(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (target_pid && pid != target_pid)
		return 0;
	tp_hits += in_section_helper(1) / 2;
	return 0;
}

/* Map-in-map: an array of hash maps whose slot 0 is filled from the ELF. */
struct inner_hash {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner_hash);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a },
};

static __always_inline void fill_slot(__u32 slot)
{
	__u32 k = 1;
	__u64 v = 1000 + slot;
	void *inner = bpf_map_lookup_elem(&outer, &slot);
	if (inner)
		bpf_map_update_elem(inner, &k, &v, BPF_ANY);
}

SEC("syscall")
int use_inner(void *ctx)
{
	fill_slot(0);
	fill_slot(1);
	return 0;
}
