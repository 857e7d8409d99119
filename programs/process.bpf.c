// SPDX-License-Identifier: GPL-2.0
/* process collector: exec/fork/exit counts in a per-CPU array, and one event
 * per exec (pid, ppid, uid, cgroup, comm, filename) on a ring buffer (or, on
 * kernels without one, a perf buffer; or none: counts only).
 *
 * Hook variants: tp_btf (default) or raw_tp on sched_process_exec/fork/exit. */
#include "agent.h"

char LICENSE[] SEC("license") = "GPL";

enum { CNT_EXEC, CNT_FORK, CNT_THREAD, CNT_EXIT, CNT_EXIT_SIGNALED, CNT_SLOTS };

/* emit_events: 1 = send an event per exec; use_ringbuf: 1 = on the ring buffer
 * `events`, 0 = on the perf buffer `events_perf` (kernels without ring buffers;
 * pybpf.ringbuf.prepare_events turns `events` into a placeholder then). */
const volatile __u8 emit_events = 0;
const volatile __u8 use_ringbuf = 1;

struct exec_event {
	__u64 ts_ns;
	__u64 cgroup_id;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 _pad;
	char comm[16];
	char filename[256];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} process_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events_perf SEC(".maps");

/* Scratch for the perf path (the event is too big for the 512-byte stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_event);
} scratch SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&process_counts, &slot);
	if (v)
		*v += 1;
}

static __always_inline void fill(struct exec_event *e, struct task_struct *p, struct linux_binprm *bprm)
{
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = BPF_CORE_READ(p, tgid);
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
}

static __always_inline void on_exec(void *ctx, struct task_struct *p, struct linux_binprm *bprm)
{
	if (!in_scope() || sampled_out())
		return;
	bump(CNT_EXEC);
	if (!emit_events)
		return;
	if (use_ringbuf) {
		struct exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			count_error(ERR_RINGBUF_RESERVE);
			return;
		}
		fill(e, p, bprm);
		bpf_ringbuf_submit(e, 0);
		count_error(ERR_RINGBUF_PRODUCED);
	} else {
		__u32 zero = 0;
		struct exec_event *e = bpf_map_lookup_elem(&scratch, &zero);
		if (!e)
			return;
		fill(e, p, bprm);
		if (bpf_perf_event_output(ctx, &events_perf, BPF_F_CURRENT_CPU, e, sizeof(*e)))
			count_error(ERR_RINGBUF_RESERVE);
		else
			count_error(ERR_RINGBUF_PRODUCED);
	}
}

static __always_inline void on_fork(struct task_struct *parent, struct task_struct *child)
{
	if (!in_scope() || sampled_out())
		return;
	if (BPF_CORE_READ(child, pid) == BPF_CORE_READ(child, tgid))
		bump(CNT_FORK);
	else
		bump(CNT_THREAD);
}

static __always_inline void on_exit(struct task_struct *p)
{
	if (BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
		return;   /* a thread, not the process */
	if (!in_scope() || sampled_out())
		return;
	bump(CNT_EXIT);
	if (BPF_CORE_READ(p, exit_code) & 0x7f)
		bump(CNT_EXIT_SIGNALED);
}

SEC("?tp_btf/sched_process_exec")
int BPF_PROG(btf_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	on_exec(ctx, p, bprm);
	return 0;
}

SEC("?tp_btf/sched_process_fork")
int BPF_PROG(btf_fork, struct task_struct *parent, struct task_struct *child)
{
	on_fork(parent, child);
	return 0;
}

SEC("?tp_btf/sched_process_exit")
int BPF_PROG(btf_exit, struct task_struct *p)
{
	on_exit(p);
	return 0;
}

SEC("?raw_tp/sched_process_exec")
int BPF_PROG(raw_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	on_exec(ctx, p, bprm);
	return 0;
}

SEC("?raw_tp/sched_process_fork")
int BPF_PROG(raw_fork, struct task_struct *parent, struct task_struct *child)
{
	on_fork(parent, child);
	return 0;
}

SEC("?raw_tp/sched_process_exit")
int BPF_PROG(raw_exit, struct task_struct *p)
{
	on_exit(p);
	return 0;
}
