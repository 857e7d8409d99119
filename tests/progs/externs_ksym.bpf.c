// SPDX-License-Identifier: GPL-2.0
/* __ksym externs: typeless addresses, typed variables, kfunc calls and
 * __weak symbols the kernel lacks (tests/kernel/test_externs.py). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) ({ \
	_Static_assert(!__builtin_constant_p(!!sym), #sym " should be marked as __weak"); \
	!!sym; })
#endif

extern const void schedule __ksym;                      /* typeless: address from kallsyms */
extern const void pybpf_no_such_symbol __ksym __weak;   /* typeless, absent: 0 */
extern const struct rq runqueues __ksym;                /* typed per-CPU variable */

struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym __weak;     /* present: bpf_ksym_exists() is 1 */
extern void bpf_pybpf_no_such_kfunc(void) __ksym __weak;

struct addrs {
	unsigned long long schedule;
	unsigned long long absent;
};
struct addrs addrs = {};

SEC("syscall")
int ksym_addrs(void *ctx)
{
	addrs.schedule = (unsigned long long)&schedule;
	addrs.absent = (unsigned long long)&pybpf_no_such_symbol;
	return 0;
}

struct task_args {
	int pid;
	int tgid;
	int task_pid;
	int have_present;
	int have_missing;
};

SEC("syscall")
int kfunc_task(struct task_args *a)
{
	struct task_struct *t;

	a->have_present = bpf_ksym_exists(bpf_rcu_read_lock);
	a->have_missing = bpf_ksym_exists(bpf_pybpf_no_such_kfunc);
	if (bpf_ksym_exists(bpf_pybpf_no_such_kfunc))
		bpf_pybpf_no_such_kfunc();          /* dead: the weak kfunc is absent */
	t = bpf_task_from_pid(a->pid);
	if (!t)
		return -1;
	a->tgid = t->tgid;
	a->task_pid = t->pid;
	bpf_task_release(t);
	return 0;
}

/* Loaded on demand only: needs runqueues in kallsyms (CONFIG_KALLSYMS_ALL). */
SEC("?syscall")
int typed_ksym(int *cpu)
{
	struct rq *rq = bpf_per_cpu_ptr(&runqueues, 0);

	*cpu = rq ? rq->cpu : -1;
	return 0;
}

/* Loaded on demand only: calls the absent weak kfunc unguarded. */
SEC("?syscall")
int call_missing_kfunc(void *ctx)
{
	bpf_pybpf_no_such_kfunc();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
