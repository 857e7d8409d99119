// SPDX-License-Identifier: GPL-2.0
/* memory collector: OOM kills (oom:mark_victim, the victim task's scope) and
 * user-space page faults (exceptions:page_fault_user, x86 only).
 *
 * Hook variants: tp_btf (default) or raw_tp.  The page-fault program is
 * optional: on kernels without the tracepoint the agent leaves it out. */
#include "agent.h"

char LICENSE[] SEC("license") = "GPL";

enum { CNT_OOM_KILLS, CNT_PAGE_FAULTS, CNT_SLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} memory_counts SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&memory_counts, &slot);
	if (v)
		*v += 1;
}

static __always_inline void oom(struct task_struct *victim)
{
	if (task_in_scope(victim))
		bump(CNT_OOM_KILLS);
}

static __always_inline void fault(void)
{
	if (in_scope() && !sampled_out())
		bump(CNT_PAGE_FAULTS);
}

SEC("?tp_btf/mark_victim")
int BPF_PROG(btf_oom, struct task_struct *task)
{
	oom(task);
	return 0;
}

SEC("?tp_btf/page_fault_user")
int BPF_PROG(btf_fault, unsigned long address)
{
	fault();
	return 0;
}

SEC("?raw_tp/mark_victim")
int BPF_PROG(raw_oom, struct task_struct *task)
{
	oom(task);
	return 0;
}

SEC("?raw_tp/page_fault_user")
int BPF_PROG(raw_fault, unsigned long address)
{
	fault();
	return 0;
}
