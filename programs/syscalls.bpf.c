// SPDX-License-Identifier: GPL-2.0
/* Count system calls by number on raw_syscalls:sys_enter (raw tracepoint: the
 * cheapest hook; no perf event, cheap detach).  Per-CPU array indexed by the
 * syscall number, so the hot path takes no lock and shares no cache line. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_SYSCALLS 1024

/* 0 = all processes; otherwise only this thread group. */
const volatile __u32 filter_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, __u64);
} syscall_counts SEC(".maps");

SEC("raw_tp/sys_enter")
int BPF_PROG(count_sys_enter, struct pt_regs *regs, long id)
{
	if (filter_tgid && (bpf_get_current_pid_tgid() >> 32) != filter_tgid)
		return 0;
	__u32 key = (__u32)id;
	if (key >= MAX_SYSCALLS)
		return 0;
	__u64 *v = bpf_map_lookup_elem(&syscall_counts, &key);
	if (v)
		*v += 1;
	return 0;
}
