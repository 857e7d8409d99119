// SPDX-License-Identifier: GPL-2.0
/* Not a program: a stand-in "kernel BTF" for CO-RE tests (load_kernel_btf accepts an
 * ELF with .BTF).  Its task_struct has no real_parent, so relocations against it fail
 * the way they would on a kernel that lacks the field. */

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
};

struct task_struct *pybpf_target_task __attribute__((used));
