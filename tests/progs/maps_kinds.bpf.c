// SPDX-License-Identifier: GPL-2.0
/* Map kinds read and written from user space (tests/kernel/test_maps_*.py):
 * hash/array/per-CPU/LRU/LPM/queue/stack/bloom/local storage/map-in-map,
 * a pinned map, an mmapable array, and global data a program changes. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct val { __u64 a; __u64 b; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct val);
} hmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);	/* 4 bytes: each CPU's slot is rounded up to 8 */
} pchash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct val);
} pcarr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct val);
} marr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} lru SEC(".maps");

struct ipv4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipv4_key);
	__type(value, __u32);
} lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4);
	__type(value, __u32);
} queue SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 4);
	__type(value, __u32);
} stack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 64);
	__uint(map_extra, 3);			/* hash functions */
	__uint(map_flags, BPF_F_ZERO_SEED);	/* deterministic for the test */
	__type(value, __u32);
} bloom SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} tstore SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} cstore SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} skstore SEC(".maps");

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} maps_pinned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} results SEC(".maps");

/* Global data: .bss, .data, .rodata */
__u64 counter;
__u64 last_step;
struct val pair_var = { .a = 1, .b = 2 };
const volatile __u64 step = 1;
const volatile __u32 target_tgid = 0;
__u64 ticks;

SEC("raw_tp")
int bump(void *ctx)
{
	counter += step;
	last_step = step;
	pair_var.a += 10;
	return 0;
}

/* Counts the target process's system calls into .bss: user space watches it through the
 * mmap'd section change while the program runs. */
SEC("raw_tp/sys_enter")
int tick(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	ticks++;
	return 0;
}

/* results[k] = value 0 of the inner map stored at outer[k] (or ~0 when none) */
static __always_inline void read_slot(__u32 k)
{
	__u32 zero = 0;
	__u64 v = ~0ULL;
	void *inner = bpf_map_lookup_elem(&outer, &k);

	if (inner) {
		__u64 *p = bpf_map_lookup_elem(inner, &zero);

		if (p)
			v = *p;
	}
	bpf_map_update_elem(&results, &k, &v, BPF_ANY);
}

SEC("raw_tp")
int read_inner(void *ctx)
{
	read_slot(0);
	read_slot(1);
	read_slot(2);
	read_slot(3);
	return 0;
}
