// SPDX-License-Identifier: GPL-2.0
/* Ring buffer with a perf buffer fallback (pybpf.ringbuf.prepare_events /
 * open_events): one program, both maps, a const volatile switch.  With
 * use_ringbuf = 0 the verifier prunes the ring buffer branch, so the object
 * loads on kernels without BPF_MAP_TYPE_RINGBUF (pybpf turns `events` into a
 * placeholder array there). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile bool use_ringbuf = true;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events_perf SEC(".maps");

struct event {
	__u64 seq;
	__u32 magic;
	__u32 pad;
};

__u32 nr_records;
__u64 dropped;

struct loop_ctx {
	void *ctx;
};

static long emit(__u32 i, struct loop_ctx *lc)
{
	struct event e = { .seq = i, .magic = 0xfeedbeef };
	long err;

	if (use_ringbuf)
		err = bpf_ringbuf_output(&events, &e, sizeof(e), 0);
	else
		err = bpf_perf_event_output(lc->ctx, &events_perf, BPF_F_CURRENT_CPU, &e, sizeof(e));
	if (err)
		dropped++;
	return 0;
}

SEC("raw_tp")
int produce(void *ctx)
{
	struct loop_ctx lc = { .ctx = ctx };

	bpf_loop(nr_records, emit, &lc, 0);
	return 0;
}
