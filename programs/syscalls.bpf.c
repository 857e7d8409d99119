// SPDX-License-Identifier: GPL-2.0
/* syscalls collector: system calls by number, failures by (number, errno) and
 * per-process call counts.
 *
 * Hook variants (the agent enables one pair; `?` = not loaded unless chosen):
 *   raw_tp     raw_tp/sys_enter (count_sys_enter) + raw_tp/sys_exit  (default: cheapest,
 *              cheap detach)
 *   tp_btf     tp_btf/sys_enter + tp_btf/sys_exit
 *   tracepoint tracepoint/raw_syscalls/sys_enter + sys_exit (perf event based)
 * All aggregation is in per-CPU maps: the hot path takes no lock and shares no
 * cache line between CPUs. */
#include "agent.h"

char LICENSE[] SEC("license") = "GPL";

#define MAX_SYSCALLS 1024

/* 1 = also count calls per thread group (the top-N-by-process metric). */
const volatile __u8 track_processes = 1;
/* 1 = count failed calls by (syscall, errno). */
const volatile __u8 track_errors = 1;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, __u64);
} syscall_counts SEC(".maps");

struct err_key {
	__u32 nr;
	__u32 err;	/* positive errno */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct err_key);
	__type(value, __u64);
} syscall_errors SEC(".maps");

/* tgid -> calls; LRU so exited processes age out (the agent also deletes them). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} process_counts SEC(".maps");

#if defined(__TARGET_ARCH_arm64)
#define REGS_SYSCALL_NR(regs) BPF_CORE_READ((struct user_pt_regs *)(regs), regs[8])
#elif defined(__TARGET_ARCH_s390)
#define REGS_SYSCALL_NR(regs) BPF_CORE_READ(regs, int_code) & 0xffff
#else
#define REGS_SYSCALL_NR(regs) BPF_CORE_READ(regs, orig_ax)
#endif

static __always_inline void on_enter(long id)
{
	if (!in_scope() || sampled_out())
		return;
	__u32 nr = (__u32)id;
	if (nr < MAX_SYSCALLS) {
		__u64 *v = bpf_map_lookup_elem(&syscall_counts, &nr);
		if (v)
			*v += 1;
	}
	if (track_processes) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		percpu_hash_add(&process_counts, &tgid, 1);
	}
}

static __always_inline void on_exit(long id, long ret)
{
	if (!track_errors || ret >= 0 || ret < -4095)
		return;
	if (!in_scope() || sampled_out())
		return;
	struct err_key k = { .nr = (__u32)id, .err = (__u32)-ret };
	percpu_hash_add(&syscall_errors, &k, 1);
}

/* Not `?`: an object loaded as is (a skeleton-style attach of every program, as the
 * wheel test does) counts syscalls with this one program; the agent enables
 * exactly the programs of the variant it picks. */
SEC("raw_tp/sys_enter")
int BPF_PROG(count_sys_enter, struct pt_regs *regs, long id)
{
	on_enter(id);
	return 0;
}

SEC("?raw_tp/sys_exit")
int BPF_PROG(raw_sys_exit, struct pt_regs *regs, long ret)
{
	if (ret < 0)
		on_exit(REGS_SYSCALL_NR(regs), ret);
	return 0;
}

SEC("?tp_btf/sys_enter")
int BPF_PROG(btf_sys_enter, struct pt_regs *regs, long id)
{
	on_enter(id);
	return 0;
}

SEC("?tp_btf/sys_exit")
int BPF_PROG(btf_sys_exit, struct pt_regs *regs, long ret)
{
	if (ret < 0)
		on_exit(REGS_SYSCALL_NR(regs), ret);
	return 0;
}

SEC("?tracepoint/raw_syscalls/sys_enter")
int tp_sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	on_enter(ctx->id);
	return 0;
}

SEC("?tracepoint/raw_syscalls/sys_exit")
int tp_sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	on_exit(ctx->id, ctx->ret);
	return 0;
}
