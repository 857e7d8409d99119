// SPDX-License-Identifier: GPL-2.0
/* Stack traces for tests/kernel/test_stacks.py: on a chosen system call of a chosen
 * process, record its user stack (plain and as build ids) and the kernel stack. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_DEPTH 127

/* One map type, two maps: user stacks in `stacks`, kernel stacks in `kstacks`.  In one
 * map, a kernel stack whose hash falls in the user stack's bucket fails with -EEXIST
 * (1 run in 64 with 64 buckets). */
struct stack_map {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_DEPTH * sizeof(__u64));
};
struct stack_map stacks SEC(".maps");
struct stack_map kstacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_STACK_BUILD_ID);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_DEPTH * sizeof(struct bpf_stack_build_id));
} bid_stacks SEC(".maps");

struct stack_sample {
	__s64 user_id;
	__s64 kernel_id;
	__s64 build_id_id;
	__u32 pid;
	__u32 tid;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct stack_sample);
} samples SEC(".maps");

const volatile __u32 target_tgid = 0;
const volatile __s64 target_syscall = -1;
__u32 n_samples;

SEC("raw_tp/sys_enter")
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct stack_sample *s;
	__u32 i = n_samples;

	if ((pid_tgid >> 32) != target_tgid || (__s64)ctx->args[1] != target_syscall)
		return 0;
	s = bpf_map_lookup_elem(&samples, &i);
	if (!s)
		return 0;
	s->user_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	s->kernel_id = bpf_get_stackid(ctx, &kstacks, 0);
	s->build_id_id = bpf_get_stackid(ctx, &bid_stacks, BPF_F_USER_STACK);
	s->pid = pid_tgid >> 32;
	s->tid = (__u32)pid_tgid;
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	n_samples = i + 1;
	return 0;
}
