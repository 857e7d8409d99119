// SPDX-License-Identifier: GPL-2.0
/* Ring buffer producers for tests/kernel/test_ringbuf.py, run with
 * BPF_PROG_TEST_RUN (SEC("syscall") + bpf_loop).  `rb` is only 4 pages, so the
 * tests wrap it and fill it; records of struct event take 56 bytes of ring
 * (48 + 8-byte header), which does not divide the ring size: records straddle
 * its end.  Drops are counted as a user would: a global and a per-CPU counter
 * incremented when bpf_ringbuf_reserve() fails. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 4096);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct event {
	__u64 seq;
	__u32 tag;
	__u8 fill[32];
}; /* sizeof == 48 (tail padding) */

/* inputs */
__u32 nr_records;
__u64 first_seq;
__u32 discard_every;  /* discard records whose seq is a multiple (0: never) */
__u32 tag;
__u64 submit_flags;   /* 0, BPF_RB_NO_WAKEUP or BPF_RB_FORCE_WAKEUP */
__u32 auto_seq;       /* number records from next_seq, across runs */
__u64 next_seq;
/* outputs */
__u64 produced;
__u64 dropped;
__u64 discarded;

__u8 scratch[128];

static void count_drop(void)
{
	__u32 zero = 0;
	__u64 *d = bpf_map_lookup_elem(&drops, &zero);

	dropped++;
	if (d)
		*d += 1;
}

struct which {
	int second; /* 1: rb2 */
};

static long emit_fixed(__u32 i, struct which *w)
{
	__u64 seq = auto_seq ? next_seq++ : first_seq + i;
	struct event *e;

	if (w->second)
		e = bpf_ringbuf_reserve(&rb2, sizeof(*e), 0);
	else
		e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);

	if (!e) {
		count_drop();
		return 0;
	}
	e->seq = seq;
	e->tag = tag;
	for (int j = 0; j < 32; j++)
		e->fill[j] = (seq + j) & 0xff;
	if (discard_every && seq % discard_every == 0) {
		bpf_ringbuf_discard(e, submit_flags);
		discarded++;
	} else {
		bpf_ringbuf_submit(e, submit_flags);
		produced++;
	}
	return 0;
}

SEC("syscall")
int produce_fixed(void *ctx)
{
	struct which w = { .second = 0 };

	bpf_loop(nr_records, emit_fixed, &w, 0);
	return 0;
}

SEC("syscall")
int produce_rb2(void *ctx)
{
	struct which w = { .second = 1 };

	bpf_loop(nr_records, emit_fixed, &w, 0);
	return 0;
}

/* Variable sizes: record `seq` has 1 + (seq * 13) % 100 bytes,
 * byte j = (seq + 7 * j) & 0xff. */
static long emit_var(__u32 i, void *unused)
{
	__u64 seq = first_seq + i;
	__u32 len = (seq * 13) % 100;

	for (int j = 0; j < 100; j++)
		scratch[j] = (seq + 7 * j) & 0xff;
	asm volatile("" : "+r"(len)); /* hide the range from clang ... */
	len &= 127;                    /* ... to keep a bound the verifier can see */
	if (bpf_ringbuf_output(&rb, scratch, len + 1, submit_flags))
		count_drop();
	else
		produced++;
	return 0;
}

SEC("syscall")
int produce_var(void *ctx)
{
	bpf_loop(nr_records, emit_var, NULL, 0);
	return 0;
}
