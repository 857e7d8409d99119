// SPDX-License-Identifier: GPL-2.0
/* Programs for tests/kernel/test_test_run.py: run with BPF_PROG_TEST_RUN through
 * Program.test_run(), never attached. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_ALEN 6
#define TC_ACT_OK 0

__u64 xdp_runs;
__u64 raw_tp_sum;
__s32 raw_tp_cpu = -1;

/* Swap the Ethernet addresses and bounce the frame (XDP_TX). */
SEC("xdp")
int tr_xdp_swap(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;
	unsigned char tmp[ETH_ALEN];

	__sync_fetch_and_add(&xdp_runs, 1);
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

/* Grow the packet at the front by 4 bytes (bpf_xdp_adjust_head) and fill them. */
SEC("xdp")
int tr_xdp_grow(struct xdp_md *ctx)
{
	__u8 *data;

	if (bpf_xdp_adjust_head(ctx, -4))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	if ((void *)(data + 4) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	data[0] = 0xde; data[1] = 0xad; data[2] = 0xbe; data[3] = 0xef;
	return XDP_PASS;
}

/* Some work per run, so that `duration` is measurable over repeats. */
SEC("xdp")
int tr_xdp_busy(struct xdp_md *ctx)
{
	volatile __u32 acc = 0;

	for (int i = 0; i < 200; i++)
		acc += i * ctx->ingress_ifindex;
	__sync_fetch_and_add(&xdp_runs, 1);
	return XDP_DROP;
}

/* __sk_buff in/out: mark + 1, priority = 7, cb[0] = packet length, cb[1] kept. */
SEC("tc")
int tr_tc_ctx(struct __sk_buff *skb)
{
	skb->mark += 1;
	skb->priority = 7;
	skb->cb[0] = skb->len;
	return skb->protocol == bpf_htons(ETH_P_IP) ? TC_ACT_OK : 2 /* TC_ACT_SHOT */;
}

/* Keep 8 bytes of packets whose payload starts with 'k', drop the others. */
SEC("socket")
int tr_socket(struct __sk_buff *skb)
{
	char c = 0;

	bpf_skb_load_bytes(skb, 0, &c, 1);
	return c == 'k' ? 8 : 0;
}

SEC("raw_tp")
int tr_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	raw_tp_sum = ctx->args[0] + ctx->args[1];
	raw_tp_cpu = bpf_get_smp_processor_id();
	return ctx->args[0] * 2;
}

struct tr_args {
	int a;
	int b;
	int sum;
};

/* ctx in/out: the kernel copies the context back to the caller's buffer. */
SEC("syscall")
int tr_syscall(struct tr_args *args)
{
	args->sum = args->a + args->b;
	return args->a * args->b;
}

/* A minimal dissector: IPv4 addresses, protocol and TCP/UDP ports. */
SEC("flow_dissector")
int tr_flow(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u16 nhoff = keys->nhoff, thoff;
	struct iphdr *iph;
	__be16 *ports;

	if (nhoff > 64)          /* bounded offsets keep the verifier's packet ranges */
		return BPF_DROP;
	iph = data + nhoff;
	if ((void *)(iph + 1) > end || iph->version != 4)
		return BPF_DROP;
	keys->addr_proto = bpf_htons(ETH_P_IP);
	keys->n_proto = bpf_htons(ETH_P_IP);
	keys->ip_proto = iph->protocol;
	keys->ipv4_src = iph->saddr;
	keys->ipv4_dst = iph->daddr;
	thoff = nhoff + iph->ihl * 4;
	keys->thoff = thoff;
	ports = data + thoff;
	if ((void *)(ports + 2) > end)
		return BPF_DROP;
	keys->sport = ports[0];
	keys->dport = ports[1];
	return BPF_OK;
}
