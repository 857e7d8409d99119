// SPDX-License-Identifier: GPL-2.0
/* block I/O collector: request latency (issue to completion) as a log2
 * histogram in nanoseconds, requests and bytes, keyed by device and operation.
 *
 * Hook variants: tp_btf (default) or raw_tp on block_rq_issue/block_rq_complete.
 * Completion runs in interrupt context, so the task scope does not apply; the
 * `devices` allow-list (map dev_filter, knob filter_devices) restricts instead. */
#include "agent.h"

char LICENSE[] SEC("license") = "GPL";

#define REQ_OP_MASK 0xff
#define MINORBITS 20

const volatile __u8 filter_devices = 0;

struct io_key {
	__u32 dev;	/* major << 20 | minor (kernel dev_t) */
	__u8 op;	/* REQ_OP_* */
	__u8 bucket;	/* histogram maps only */
	__u16 _pad;
};

struct io_start {
	__u64 ts;
	__u32 dev;
	__u32 op;
};

struct io_stat {
	__u64 requests;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, struct io_start);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct io_key);
	__type(value, __u64);
} io_latency SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct io_key);
	__type(value, struct io_stat);
} io_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} dev_filter SEC(".maps");

/* Kernels before 5.17 keep the disk in request->rq_disk; later ones in request_queue->disk. */
struct request___old {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline __u32 rq_dev(struct request *rq)
{
	struct gendisk *disk;
	if (bpf_core_field_exists(((struct request___old *)rq)->rq_disk))
		disk = BPF_CORE_READ((struct request___old *)rq, rq_disk);
	else
		disk = BPF_CORE_READ(rq, q, disk);
	if (!disk)
		return 0;
	return ((__u32)BPF_CORE_READ(disk, major) << MINORBITS) | (__u32)BPF_CORE_READ(disk, first_minor);
}

static __always_inline void issued(struct request *rq)
{
	struct io_start s = {};
	s.dev = rq_dev(rq);
	if (filter_devices && !bpf_map_lookup_elem(&dev_filter, &s.dev))
		return;
	if (sampled_out())
		return;
	s.ts = bpf_ktime_get_ns();
	s.op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK;
	__u64 key = (__u64)rq;
	if (bpf_map_update_elem(&inflight, &key, &s, BPF_ANY))
		count_error(ERR_MAP_UPDATE);
}

static __always_inline void completed(struct request *rq, unsigned int nr_bytes)
{
	__u64 key = (__u64)rq;
	struct io_start *s = bpf_map_lookup_elem(&inflight, &key);
	if (!s)
		return;
	__u64 now = bpf_ktime_get_ns();
	__u64 delta = now > s->ts ? now - s->ts : 0;
	struct io_key k = { .dev = s->dev, .op = (__u8)s->op };
	bpf_map_delete_elem(&inflight, &key);

	struct io_stat *st = bpf_map_lookup_elem(&io_stats, &k);
	if (st) {
		st->requests += 1;
		st->bytes += nr_bytes;
	} else {
		struct io_stat init = { .requests = 1, .bytes = nr_bytes };
		if (bpf_map_update_elem(&io_stats, &k, &init, BPF_NOEXIST))
			count_error(ERR_MAP_UPDATE);
	}
	k.bucket = hist_bucket(delta);
	percpu_hash_add(&io_latency, &k, 1);
	k.bucket = HIST_SUM;
	percpu_hash_add(&io_latency, &k, delta);
}

SEC("?tp_btf/block_rq_issue")
int BPF_PROG(btf_issue, struct request *rq)
{
	issued(rq);
	return 0;
}

SEC("?tp_btf/block_rq_complete")
int BPF_PROG(btf_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	completed(rq, nr_bytes);
	return 0;
}

SEC("?raw_tp/block_rq_issue")
int BPF_PROG(raw_issue, struct request *rq)
{
	issued(rq);
	return 0;
}

SEC("?raw_tp/block_rq_complete")
int BPF_PROG(raw_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	completed(rq, nr_bytes);
	return 0;
}
