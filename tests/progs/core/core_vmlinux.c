// SPDX-License-Identifier: GPL-2.0
/* CO-RE against the running kernel's BTF: a few long-lived task_struct fields,
 * declared locally with a flavored name and a deliberately wrong layout.
 * Not meant to be loaded: the unit tests only relocate it.
 */
#include "core_common.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

enum pid_type { PIDTYPE_TGID = 7 };

struct sched_entity {
	unsigned long long vruntime;
} __attribute__((preserve_access_index));

struct task_struct___pybpf {
	int pid;
	int tgid;
	struct task_struct___pybpf *real_parent;
	char comm[16];
	unsigned int flags;
	struct sched_entity se;
	unsigned int in_execve:1;
	int pybpf_no_such_field;
} __attribute__((preserve_access_index));

__u64 out[16];

SEC("kprobe/vmlinux")
int vmlinux_prog(struct task_struct___pybpf *t)
{
	out[0] = t->pid;
	out[1] = t->tgid;
	out[2] = BPF_CORE_READ(t, real_parent, tgid);
	out[3] = bpf_core_field_size(t->comm);
	out[4] = t->flags;
	out[5] = t->se.vruntime;
	out[6] = BPF_CORE_READ_BITFIELD(t, in_execve);
	out[7] = bpf_core_field_exists(t->pybpf_no_such_field);
	out[8] = bpf_core_type_id_kernel(struct task_struct___pybpf);
	out[9] = bpf_core_type_size(struct task_struct___pybpf);
	out[10] = bpf_core_enum_value(enum pid_type, PIDTYPE_TGID);
	out[11] = t->comm[3];
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
