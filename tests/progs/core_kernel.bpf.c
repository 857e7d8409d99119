// SPDX-License-Identifier: GPL-2.0
/* CO-RE reads of real kernel structures, checked against /proc by
 * tests/kernel/test_core_kernel.py: task_struct (pid, parent, comm, start time,
 * cgroup, open files), sk_buff (length, protocol, a bitfield, mark) and CO-RE
 * facts about types and enums. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

const volatile int target_tgid = 0;
const volatile int target_fd = 0;

struct task_info {
	int pid;
	int tgid;
	int ppid;
	int done;
	unsigned long long start_boottime;
	unsigned long long cgroup_id;
	unsigned long long ino;
	char comm[16];
	char fname[32];
};
struct task_info task = {};

SEC("raw_tp/sys_enter")
int task_fields(void *ctx)
{
	struct task_struct *t;
	struct file **fds, *f = NULL;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid || task.done)
		return 0;
	t = (struct task_struct *)bpf_get_current_task();
	task.pid = BPF_CORE_READ(t, pid);
	task.tgid = BPF_CORE_READ(t, tgid);
	task.ppid = BPF_CORE_READ(t, real_parent, tgid);
	BPF_CORE_READ_STR_INTO(&task.comm, t, comm);
	task.start_boottime = BPF_CORE_READ(t, start_boottime);
	task.cgroup_id = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
	fds = BPF_CORE_READ(t, files, fdt, fd);
	bpf_core_read(&f, sizeof(f), &fds[target_fd]);
	task.ino = BPF_CORE_READ(f, f_inode, i_ino);
	bpf_probe_read_kernel_str(task.fname, sizeof(task.fname),
				  BPF_CORE_READ(f, f_path.dentry, d_name.name));
	task.done = 1;
	return 0;
}

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

struct skb_info {
	unsigned int len;
	unsigned int mark;
	unsigned short protocol;
	unsigned char pkt_type;
	unsigned char done;
};
struct skb_info skb_seen = {};

SEC("tc")
int skb_fields(struct __sk_buff *ctx)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);

	skb_seen.len = skb->len;
	skb_seen.mark = skb->mark;
	skb_seen.protocol = skb->protocol;
	skb_seen.pkt_type = BPF_CORE_READ_BITFIELD(skb, pkt_type);
	skb_seen.done = 1;
	return 0;  /* TC_ACT_OK */
}

struct core_facts {
	unsigned int task_struct_size;
	unsigned int has_task_struct;
	unsigned int has_no_such_type;
	unsigned int syscall_prog_type;
	unsigned int has_syscall_prog_type;
	unsigned int comm_size;
	unsigned int comm_offset;
};
struct core_facts facts = {};

struct pybpf_no_such_type { int x; };

SEC("syscall")
int core_facts(void *ctx)
{
	facts.task_struct_size = bpf_core_type_size(struct task_struct);
	facts.has_task_struct = bpf_core_type_exists(struct task_struct);
	facts.has_no_such_type = bpf_core_type_exists(struct pybpf_no_such_type);
	facts.syscall_prog_type = bpf_core_enum_value(enum bpf_prog_type, BPF_PROG_TYPE_SYSCALL);
	facts.has_syscall_prog_type = bpf_core_enum_value_exists(enum bpf_prog_type, BPF_PROG_TYPE_SYSCALL);
	facts.comm_size = bpf_core_field_size(struct task_struct, comm);
	facts.comm_offset = bpf_core_field_offset(struct task_struct, comm);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
