// SPDX-License-Identifier: GPL-2.0
/* Tracing attach tests (tests/kernel/test_attach_tracing.py): uprobes, perf_event
 * sampling, iterators, kprobes (guests) and trampolines (guests).  Every program
 * only counts events of the process whose tgid is in target_pid, so other processes
 * on the machine cannot disturb the counts. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1

int target_pid;            /* tgid whose events count */
__u64 target_cgroup;       /* cgroup id the LSM program denies in */
char marker[32];           /* file name the fmod_ret/LSM programs deny */

__u64 calls;               /* entries seen */
__u64 returns;             /* returns seen */
long last_arg0, last_arg1; /* arguments of the last entry */
long last_ret;             /* value of the last return */
__u64 cookie;              /* bpf_get_attach_cookie() of the last entry */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);       /* tgid */
	__type(value, __u64);     /* count */
} per_pid SEC(".maps");

static __always_inline bool mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_pid;
}

static __always_inline void count_pid(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *v = bpf_map_lookup_elem(&per_pid, &tgid);

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&per_pid, &tgid, &one, BPF_NOEXIST);
}

/* --- uprobes ------------------------------------------------------------------ */

SEC("uprobe")
int BPF_KPROBE(on_entry, long a, long b)
{
	if (!mine())
		return 0;
	last_arg0 = a;
	last_arg1 = b;
	__sync_fetch_and_add(&calls, 1);
	return 0;
}

/* bpf_get_attach_cookie() needs 5.15: loaded on its own by the cookie test */
SEC("?uprobe")
int on_entry_cookie(struct pt_regs *ctx)
{
	if (mine())
		cookie = bpf_get_attach_cookie(ctx);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(on_return, long ret)
{
	if (!mine())
		return 0;
	last_ret = ret;
	__sync_fetch_and_add(&returns, 1);
	return 0;
}

/* uprobe.multi (6.6+): loaded on its own by its test */
SEC("?uprobe.multi")
int on_multi(struct pt_regs *ctx)
{
	if (mine()) {
		last_arg0 = PT_REGS_PARM1(ctx);
		__sync_fetch_and_add(&calls, 1);
	}
	return 0;
}

/* Every process calling getppid() in libc (the test restricts it with a pid filter). */
SEC("uprobe/libc.so.6:getppid")
int count_getppid(struct pt_regs *ctx)
{
	count_pid();
	return 0;
}

/* --- perf_event sampling ----------------------------------------------------------- */

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	count_pid();
	return 0;
}

/* --- iterators ------------------------------------------------------------------ */

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;

	if (!task || task->pid != task->tgid)
		return 0;
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "tgid comm\n");
	BPF_SEQ_PRINTF(seq, "%d %s\n", task->tgid, task->comm);
	return 0;
}

SEC("iter/bpf_map_elem")
int dump_per_pid(struct bpf_iter__bpf_map_elem *ctx)
{
	__u32 *key = ctx->key;
	__u64 *val = ctx->value;

	if (key && val)
		BPF_SEQ_PRINTF(ctx->meta->seq, "%u=%llu\n", *key, *val);
	return 0;
}

/* --- kprobes (kernels with CONFIG_KPROBES) --------------------------------------------- */

SEC("kprobe/do_nanosleep")
int BPF_KPROBE(kp_nanosleep)
{
	if (mine())
		__sync_fetch_and_add(&calls, 1);
	return 0;
}

SEC("kretprobe/do_nanosleep")
int BPF_KRETPROBE(krp_nanosleep, long ret)
{
	if (mine()) {
		last_ret = ret;
		__sync_fetch_and_add(&returns, 1);
	}
	return 0;
}

SEC("?kprobe.multi/do_nanosleep")
int kpm_nanosleep(struct pt_regs *ctx)
{
	if (mine())
		__sync_fetch_and_add(&calls, 1);
	return 0;
}

/* (BPF_KSYSCALL would need the LINUX_HAS_SYSCALL_WRAPPER .kconfig extern: no arguments here) */
SEC("ksyscall/getppid")
int ks_getppid(struct pt_regs *ctx)
{
	if (mine())
		__sync_fetch_and_add(&calls, 1);
	return 0;
}

/* --- trampolines (kernels that allow them; '?': not loaded by default) ----------------- */

SEC("?fentry/do_nanosleep")
int BPF_PROG(fentry_nanosleep)
{
	if (mine())
		__sync_fetch_and_add(&calls, 1);
	return 0;
}

SEC("?fexit/do_nanosleep")
int BPF_PROG(fexit_nanosleep, struct hrtimer_sleeper *t, enum hrtimer_mode mode, int ret)
{
	if (mine()) {
		last_ret = ret;
		__sync_fetch_and_add(&returns, 1);
	}
	return 0;
}

static __always_inline bool is_marker(struct file *file)
{
	char name[sizeof(marker)];
	const unsigned char *p = BPF_CORE_READ(file, f_path.dentry, d_name.name);

	if (bpf_probe_read_kernel_str(name, sizeof(name), p) < 0 || !marker[0])
		return false;
	for (int i = 0; i < sizeof(marker); i++) {
		if (name[i] != marker[i])
			return false;
		if (!name[i])
			return true;
	}
	return true;
}

SEC("?fmod_ret/security_file_open")
int BPF_PROG(deny_marker_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	if (is_marker(file)) {
		__sync_fetch_and_add(&calls, 1);
		return -EPERM;
	}
	return 0;
}

SEC("?lsm/file_open")
int BPF_PROG(lsm_deny_in_cgroup, struct file *file, int ret)
{
	if (ret)
		return ret;
	if (bpf_get_current_cgroup_id() == target_cgroup && is_marker(file)) {
		__sync_fetch_and_add(&calls, 1);
		return -EPERM;
	}
	return 0;
}

SEC("?lsm.s/file_open")
int BPF_PROG(lsm_s_count, struct file *file)
{
	if (mine() && is_marker(file))
		__sync_fetch_and_add(&calls, 1);
	return 0;
}

/* --- freplace target: an XDP program whose verdict comes from a global function --- */

__noinline int pybpf_verdict(int len)
{
	return len >= 0 ? XDP_PASS : XDP_ABORTED;
}

SEC("xdp")
int freplace_target(struct xdp_md *ctx)
{
	return pybpf_verdict(ctx->data_end - ctx->data);
}
