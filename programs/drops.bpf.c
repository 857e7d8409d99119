// SPDX-License-Identifier: GPL-2.0
/* drops collector: packets the kernel freed as dropped, by drop reason
 * (enum skb_drop_reason; the agent reads the names from kernel BTF) and
 * protocol, plus UDP receive-buffer overflows.
 *
 * Hook variants: tp_btf (default) or raw_tp on kfree_skb and
 * udp_fail_queue_rcv_skb.  Drops are attributed to the current task for the
 * scope check (loopback delivery runs in the sender's softirq). */
#include "agent.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

struct drop_key {
	__u32 reason;
	__u8 proto;	/* IP protocol number, 0 when not IP */
	__u8 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 2048);
	__type(key, struct drop_key);
	__type(value, __u64);
} drop_counts SEC(".maps");

/* slot 0: UDP receive-queue (buffer) failures */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} udp_counts SEC(".maps");

/* SKB_CONSUMED is not a drop (kernels that route consume_skb through kfree_skb). */
const volatile __u32 reason_consumed = 1;

static __always_inline void dropped(struct sk_buff *skb, __u32 reason)
{
	if (reason == reason_consumed)
		return;
	if (!in_scope() || sampled_out())
		return;
	struct drop_key k = { .reason = reason };
	__u16 eth = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	if (eth == ETH_P_IP)
		bpf_probe_read_kernel(&k.proto, 1, head + nh + 9);
	else if (eth == ETH_P_IPV6)
		bpf_probe_read_kernel(&k.proto, 1, head + nh + 6);
	percpu_hash_add(&drop_counts, &k, 1);
}

static __always_inline void udp_fail(void)
{
	if (!in_scope() || sampled_out())
		return;
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&udp_counts, &zero);
	if (v)
		*v += 1;
}

SEC("?tp_btf/kfree_skb")
int BPF_PROG(btf_kfree_skb, struct sk_buff *skb, void *location, int reason)
{
	dropped(skb, reason);
	return 0;
}

SEC("?tp_btf/udp_fail_queue_rcv_skb")
int BPF_PROG(btf_udp_fail, int rc, struct sock *sk)
{
	udp_fail();
	return 0;
}

SEC("?raw_tp/kfree_skb")
int BPF_PROG(raw_kfree_skb, struct sk_buff *skb, void *location, int reason)
{
	dropped(skb, reason);
	return 0;
}

SEC("?raw_tp/udp_fail_queue_rcv_skb")
int BPF_PROG(raw_udp_fail, int rc, struct sock *sk)
{
	udp_fail();
	return 0;
}
