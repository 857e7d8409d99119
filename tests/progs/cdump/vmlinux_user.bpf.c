// SPDX-License-Identifier: GPL-2.0
/*
 * A CO-RE program built against the vmlinux.h that pybpf.btf.cdump generates
 * from the running kernel's BTF (tests/kernel/test_vmlinux_h.py).  It touches
 * what real tools touch: task_struct, sk_buff (bitfields inside anonymous
 * structs), file/inode chains, enums and enum CO-RE checks, BTF-defined maps.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct event {
	u32 pid;
	u32 tgid;
	u64 ino;
	u8 pkt_type;
	u32 sk_len;
	long state;
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, struct event);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} counts SEC(".maps");

SEC("kprobe/vfs_read")
int BPF_KPROBE(trace_vfs_read, struct file *file, char *buf, size_t count, loff_t *pos)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct event ev = {};
	u32 key = 0;
	u64 *n;

	ev.pid = BPF_CORE_READ(task, pid);
	ev.tgid = BPF_CORE_READ(task, real_parent, tgid);
	ev.ino = BPF_CORE_READ(file, f_inode, i_ino);
	BPF_CORE_READ_STR_INTO(&ev.comm, task, comm);
	if (bpf_core_field_exists(task->__state))
		ev.state = BPF_CORE_READ(task, __state);
	bpf_map_update_elem(&events, &ev.pid, &ev, BPF_ANY);
	n = bpf_map_lookup_elem(&counts, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

SEC("kprobe/kfree_skb_reason")
int BPF_KPROBE(trace_kfree_skb, struct sk_buff *skb, enum skb_drop_reason reason)
{
	struct event *ev;

	ev = bpf_ringbuf_reserve(&ring, sizeof(*ev), 0);
	if (!ev)
		return 0;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->pkt_type = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	ev->sk_len = BPF_CORE_READ(skb, len);
	if (reason == SKB_DROP_REASON_NOT_SPECIFIED)
		ev->state = bpf_core_type_size(struct sk_buff);
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_ringbuf_output))
		ev->tgid = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	if (bpf_core_type_exists(struct bpf_iter_meta))
		ev->pid = 1;
	bpf_ringbuf_submit(ev, 0);
	return 0;
}
