// SPDX-License-Identifier: GPL-2.0
/* Perf buffer producer for tests/kernel/test_perfbuf.py: a SEC("raw_tp")
 * program run with BPF_PROG_TEST_RUN (optionally on a chosen CPU) writes
 * nr_records samples with bpf_perf_event_output(BPF_F_CURRENT_CPU).
 * Fixed samples are struct event (64 bytes -> 80-byte perf records, which do
 * not divide a page: records wrap the ring's end); variable ones have
 * 1 + (seq * 5) % 60 bytes, byte j = (seq + 3 * j) & 0xff. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} pb SEC(".maps");

struct event {
	__u64 seq;
	__u32 cpu;
	__u8 fill[48];
}; /* sizeof == 64 */

__u32 nr_records;
__u64 first_seq;
__u32 var_size;
__u64 produced;
__u64 dropped;

struct event ev;
__u8 scratch[64];

struct loop_ctx {
	void *ctx;
};

static long emit(__u32 i, struct loop_ctx *lc)
{
	__u64 seq = first_seq + i;
	long err;

	if (var_size) {
		__u32 len = (seq * 5) % 60;

		for (int j = 0; j < 60; j++)
			scratch[j] = (seq + 3 * j) & 0xff;
		asm volatile("" : "+r"(len)); /* hide the range from clang ... */
		len &= 63;                    /* ... to keep a bound the verifier can see */
		err = bpf_perf_event_output(lc->ctx, &pb, BPF_F_CURRENT_CPU, scratch, len + 1);
	} else {
		ev.seq = seq;
		ev.cpu = bpf_get_smp_processor_id();
		for (int j = 0; j < 48; j++)
			ev.fill[j] = (seq + j) & 0xff;
		err = bpf_perf_event_output(lc->ctx, &pb, BPF_F_CURRENT_CPU, &ev, sizeof(ev));
	}
	if (err)
		dropped++;
	else
		produced++;
	return 0;
}

SEC("raw_tp")
int produce(void *ctx)
{
	struct loop_ctx lc = { .ctx = ctx };

	bpf_loop(nr_records, emit, &lc, 0);
	return 0;
}
