// SPDX-License-Identifier: GPL-2.0
/* A user program for the agent's `user` collector test, written the way
 * ebpf_exporter examples are: maps keyed by label fields, u64 values, and a
 * log2 histogram keyed by (labels..., bucket). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;

struct call_key {
	__u32 nr;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct call_key);
	__type(value, __u64);
} calls SEC(".maps");

struct hist_key {
	__u32 nr;
	__u32 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct hist_key);
	__type(value, __u64);
} arg_sizes SEC(".maps");

SEC("raw_tp/sys_enter")
int BPF_PROG(count_calls, struct pt_regs *regs, long id)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	struct call_key k = { .nr = (__u32)id };
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	__u64 one = 1, *v = bpf_map_lookup_elem(&calls, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&calls, &k, &one, BPF_NOEXIST);
	/* "histogram" of the syscall number itself: bucket = ceil(log2(nr)) for nr <= 1024 */
	struct hist_key hk = { .nr = (__u32)id };
	__u32 b = 0;
	while (b < 11 && (1U << b) < (__u32)id)
		b++;
	hk.bucket = b;
	__u64 *c = bpf_map_lookup_elem(&arg_sizes, &hk);
	if (c)
		*c += 1;
	else
		bpf_map_update_elem(&arg_sizes, &hk, &one, BPF_NOEXIST);
	return 0;
}
