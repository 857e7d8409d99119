// SPDX-License-Identifier: GPL-2.0
/* A field the target BTF lacks (task_struct.real_parent against
 * core_target_btf.bpf.o): guarded, the poisoned read is dead code and the program
 * loads; unguarded, the verifier reaches it and pybpf explains the failure
 * (tests/kernel/test_core_kernel.py). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

int ppid = -1;
int pid = -1;

SEC("raw_tp/sys_enter")
int guarded(void *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

	pid = BPF_CORE_READ(t, tgid);
	if (bpf_core_field_exists(t->real_parent))
		ppid = BPF_CORE_READ(t, real_parent, tgid);
	return 0;
}

SEC("?raw_tp/sys_enter")
int unguarded(void *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

	ppid = BPF_CORE_READ(t, real_parent, tgid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
