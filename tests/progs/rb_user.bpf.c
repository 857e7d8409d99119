// SPDX-License-Identifier: GPL-2.0
/* User ring buffer consumer for tests/kernel/test_ringbuf.py: a SEC("syscall")
 * program drains `urb` (written by pybpf.ringbuf.UserRingBuffer) with
 * bpf_user_ringbuf_drain() and checks every record: a struct hdr (seq, len)
 * whose seq follows the previous one and whose last byte is seq & 0xff. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} urb SEC(".maps");

struct hdr {
	__u64 seq;
	__u32 len;
	__u32 pad;
};

__u64 next_seq;
__u64 seen;
__u64 total_len;
__u64 bad;
long drain_ret;

static long on_sample(struct bpf_dynptr *d, void *ctx)
{
	struct hdr h;
	__u8 last = 0;

	if (bpf_dynptr_read(&h, sizeof(h), d, 0, 0)) {
		bad++;
		return 0;
	}
	if (h.len < sizeof(h) || h.len > 4096 ||
	    bpf_dynptr_read(&last, 1, d, h.len - 1, 0) ||
	    h.seq != next_seq || last != (h.seq & 0xff))
		bad++;
	next_seq = h.seq + 1;
	seen++;
	total_len += h.len;
	return 0;
}

SEC("syscall")
int drain(void *ctx)
{
	drain_ret = bpf_user_ringbuf_drain(&urb, on_sample, NULL, 0);
	return 0;
}
