// SPDX-License-Identifier: GPL-2.0
/* Packet programs for tests/kernel/test_attach_net.py: XDP, tcx, tc (netlink) and
 * netfilter programs that count UDP datagrams to `drop_port` and drop them, and
 * count (and pass) every other UDP datagram.  counts[0] = dropped, counts[1] = passed. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define NF_DROP 0
#define NF_ACCEPT 1

const volatile __u16 drop_port = 0;   /* host byte order; set on the spec before load */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* -1: not UDP over IPv4; 1: UDP to drop_port; 0: other UDP. */
static __always_inline int classify_ip(void *ip, void *end)
{
	struct iphdr *iph = ip;
	struct udphdr *udp;

	if ((void *)(iph + 1) > end || iph->protocol != IPPROTO_UDP)
		return -1;
	udp = (void *)iph + iph->ihl * 4;
	if ((void *)(udp + 1) > end)
		return -1;
	return udp->dest == bpf_htons(drop_port);
}

static __always_inline int classify_eth(void *data, void *end)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	return classify_ip(eth + 1, end);
}

static __always_inline void bump(int verdict)
{
	__u32 key = verdict ? 0 : 1;
	__u64 *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("xdp")
int xdp_count_drop(struct xdp_md *ctx)
{
	int c = classify_eth((void *)(long)ctx->data, (void *)(long)ctx->data_end);

	if (c < 0)
		return XDP_PASS;
	bump(c);
	return c ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tcx/ingress")
int tcx_count_drop(struct __sk_buff *skb)
{
	int c = classify_eth((void *)(long)skb->data, (void *)(long)skb->data_end);

	if (c < 0)
		return TCX_NEXT;
	bump(c);
	return c ? TCX_DROP : TCX_NEXT;
}

SEC("tcx/ingress")
int tcx_next(struct __sk_buff *skb)
{
	return TCX_NEXT;
}

SEC("tc")
int tc_count_drop(struct __sk_buff *skb)
{
	int c = classify_eth((void *)(long)skb->data, (void *)(long)skb->data_end);

	if (c < 0)
		return TC_ACT_OK;
	bump(c);
	return c ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("tc")
int tc_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

SEC("netfilter")
int nf_count_drop(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	struct iphdr iph;
	struct udphdr udp;
	int c;

	if (bpf_probe_read_kernel(&iph, sizeof(iph), skb->head + skb->network_header))
		return NF_ACCEPT;
	if (iph.version != 4 || iph.protocol != IPPROTO_UDP)
		return NF_ACCEPT;
	if (bpf_probe_read_kernel(&udp, sizeof(udp), skb->head + skb->network_header + iph.ihl * 4))
		return NF_ACCEPT;
	c = udp.dest == bpf_htons(drop_port);
	bump(c);
	return c ? NF_DROP : NF_ACCEPT;
}
