// SPDX-License-Identifier: GPL-2.0
/* scheduler collector: run-queue latency (time from wakeup, or from being
 * preempted while runnable, to running on a CPU) as a log2 histogram in
 * nanoseconds, and context switches into in-scope tasks.
 *
 * Hook variants: tp_btf (default) or raw_tp on sched_wakeup, sched_wakeup_new
 * and sched_switch.  (SCHEDSTATS=n kernels have no sched_stat_wait.) */
#include "agent.h"

char LICENSE[] SEC("license") = "GPL";

#define TASK_RUNNING 0

/* pid -> time it became runnable.  Sized by the agent (tracked-entity limit). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} runnable_since SEC(".maps");

/* HIST_SLOTS: run-queue latency histogram; slot HIST_SLOTS: context switches. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HIST_SLOTS + 1);
	__type(key, __u32);
	__type(value, __u64);
} runq_latency SEC(".maps");

struct task_struct___pre518 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline long task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre518 *)t, state);
}

static __always_inline void enqueued(struct task_struct *p)
{
	if (!task_in_scope(p))
		return;
	__u32 pid = BPF_CORE_READ(p, pid);
	if (!pid)
		return;   /* idle */
	__u64 ts = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&runnable_since, &pid, &ts, BPF_ANY))
		count_error(ERR_MAP_UPDATE);
}

static __always_inline void switched(struct task_struct *prev, struct task_struct *next)
{
	if (task_state(prev) == TASK_RUNNING)
		enqueued(prev);   /* preempted: back on the run queue */
	__u32 pid = BPF_CORE_READ(next, pid);
	__u64 *tsp = bpf_map_lookup_elem(&runnable_since, &pid);
	if (!tsp)
		return;
	__u64 ts = *tsp;
	bpf_map_delete_elem(&runnable_since, &pid);
	if (sampled_out())
		return;
	__u64 now = bpf_ktime_get_ns();
	if (now > ts)
		hist_array_add(&runq_latency, 0, now - ts);
	__u32 slot = HIST_SLOTS;
	__u64 *c = bpf_map_lookup_elem(&runq_latency, &slot);
	if (c)
		*c += 1;
}

SEC("?tp_btf/sched_wakeup")
int BPF_PROG(btf_wakeup, struct task_struct *p)
{
	enqueued(p);
	return 0;
}

SEC("?tp_btf/sched_wakeup_new")
int BPF_PROG(btf_wakeup_new, struct task_struct *p)
{
	enqueued(p);
	return 0;
}

SEC("?tp_btf/sched_switch")
int BPF_PROG(btf_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	switched(prev, next);
	return 0;
}

SEC("?raw_tp/sched_wakeup")
int BPF_PROG(raw_wakeup, struct task_struct *p)
{
	enqueued(p);
	return 0;
}

SEC("?raw_tp/sched_wakeup_new")
int BPF_PROG(raw_wakeup_new, struct task_struct *p)
{
	enqueued(p);
	return 0;
}

SEC("?raw_tp/sched_switch")
int BPF_PROG(raw_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	switched(prev, next);
	return 0;
}
