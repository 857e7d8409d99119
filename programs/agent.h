/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by the agent's collectors (programs/<collector>.bpf.c).
 *
 * Knobs are `const volatile` (.rodata): the agent sets them on the spec before
 * load, the verifier then sees constants and prunes the disabled branches.
 *
 *   scope_cgroup_id  0 = everything; else only tasks whose cgroup v2 id (the
 *                    inode number of the cgroup directory, what
 *                    bpf_get_current_cgroup_id() returns) equals it
 *   scope_tgid       0 = everything; else only this thread group
 *   sample_rate      1 = every event; N > 1 = count 1 event in N (chosen with
 *                    bpf_get_prandom_u32()); user space multiplies counts by N
 *
 * Histograms are log2 with ceil semantics (ebpf_exporter's exp2 after its
 * PR #515): bucket k counts values v with 2^(k-1) < v <= 2^k, so a value of
 * exactly 2^k lands in bucket k and bucket k is Prometheus' le = 2^k.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

const volatile __u64 scope_cgroup_id = 0;
const volatile __u32 scope_tgid = 0;
const volatile __u32 sample_rate = 1;

/* Histogram layout: buckets 0..HIST_MAX_BUCKET, then one overflow slot
 * (values above 2^HIST_MAX_BUCKET: only in +Inf) and one slot holding the sum. */
#define HIST_MAX_BUCKET 40
#define HIST_OVERFLOW (HIST_MAX_BUCKET + 1)
#define HIST_SUM (HIST_MAX_BUCKET + 2)
#define HIST_SLOTS (HIST_MAX_BUCKET + 3)

/* Self-metrics every collector keeps in an `agent_errors` per-CPU array. */
enum agent_error {
	ERR_MAP_UPDATE = 0,	/* bpf_map_update_elem failed (map full) */
	ERR_RINGBUF_RESERVE,	/* ring buffer full: event dropped */
	ERR_RINGBUF_PRODUCED,	/* events successfully submitted */
	ERR_SLOTS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ERR_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} agent_errors SEC(".maps");

static __always_inline void count_error(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&agent_errors, &which);
	if (v)
		*v += 1;
}

static __always_inline __u64 task_cgroup_id(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

/* Is the current task inside the configured scope? */
static __always_inline bool in_scope(void)
{
	if (scope_tgid && (__u32)(bpf_get_current_pid_tgid() >> 32) != scope_tgid)
		return false;
	if (scope_cgroup_id && bpf_get_current_cgroup_id() != scope_cgroup_id)
		return false;
	return true;
}

/* Is task `t` (not necessarily current) inside the configured scope? */
static __always_inline bool task_in_scope(struct task_struct *t)
{
	if (scope_tgid && (__u32)BPF_CORE_READ(t, tgid) != scope_tgid)
		return false;
	if (scope_cgroup_id && task_cgroup_id(t) != scope_cgroup_id)
		return false;
	return true;
}

/* 1-in-N sampling: true when this event is NOT part of the sample. */
static __always_inline bool sampled_out(void)
{
	return sample_rate > 1 && bpf_get_prandom_u32() % sample_rate != 0;
}

/* floor(log2(v)) for v > 0, branch-light (no clz instruction in BPF). */
static __always_inline __u32 log2_floor(__u64 v)
{
	__u32 r = 0, s;
	s = (v > 0xFFFFFFFFULL) << 5; v >>= s; r |= s;
	s = (v > 0xFFFF) << 4; v >>= s; r |= s;
	s = (v > 0xFF) << 3; v >>= s; r |= s;
	s = (v > 0xF) << 2; v >>= s; r |= s;
	s = (v > 0x3) << 1; v >>= s; r |= s;
	r |= (v >> 1);
	return r;
}

/* Bucket index with ceil semantics: smallest k with v <= 2^k (0 for v <= 1);
 * HIST_OVERFLOW above the last bucket. */
static __always_inline __u32 hist_bucket(__u64 v)
{
	__u32 k;
	if (v <= 1)
		return 0;
	k = log2_floor(v - 1) + 1;
	return k > HIST_MAX_BUCKET ? HIST_OVERFLOW : k;
}

/* Add one observation to a per-CPU array histogram of HIST_SLOTS slots starting at `base`. */
static __always_inline void hist_array_add(void *map, __u32 base, __u64 v)
{
	__u32 slot = base + hist_bucket(v);
	__u64 *c = bpf_map_lookup_elem(map, &slot);
	if (c)
		*c += 1;
	slot = base + HIST_SUM;
	c = bpf_map_lookup_elem(map, &slot);
	if (c)
		*c += v;
}

/* Increment a u64 counter in a hash map, inserting it when absent. */
static __always_inline void hash_add(void *map, const void *key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, key);
	if (v) {
		__sync_fetch_and_add(v, n);
		return;
	}
	if (bpf_map_update_elem(map, key, &n, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(map, key);   /* lost a race with another CPU */
		if (v)
			__sync_fetch_and_add(v, n);
		else
			count_error(ERR_MAP_UPDATE);
	}
}

/* Same for per-CPU hash maps (no atomics needed: the slot is this CPU's). */
static __always_inline void percpu_hash_add(void *map, const void *key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, key);
	if (v) {
		*v += n;
		return;
	}
	if (bpf_map_update_elem(map, key, &n, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(map, key);
		if (v)
			*v += n;
		else
			count_error(ERR_MAP_UPDATE);
	}
}
