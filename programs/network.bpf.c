// SPDX-License-Identifier: GPL-2.0
/* network collector: packets and bytes by interface, direction and protocol.
 *
 * Hook variants:
 *   tcx        tcx/ingress + tcx/egress on each configured interface (6.6+)
 *   tc         the same programs through a clsact qdisc + cls_bpf (netlink)
 *   tp_btf     netif_receive_skb + net_dev_xmit on every interface (default
 *              when no interface list is configured), raw_tp likewise.
 * Bytes are link-layer (from the MAC header) in every variant.  The
 * tracepoint variants only count devices in the agent's network namespace
 * (knob netns_ino); `ifindex_filter` (knob filter_ifindex) restricts further. */
#include "agent.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_ARP 0x0806
#define ETH_HLEN 14
#define TC_ACT_UNSPEC (-1)

const volatile __u32 netns_ino = 0;
const volatile __u8 filter_ifindex = 0;

/* protocol codes in the key: 0 other, 1 tcp, 2 udp, 3 icmp, 4 icmpv6, 5 other ipv4,
 * 6 other ipv6, 7 arp */
struct net_key {
	__u32 ifindex;
	__u8 direction;	/* 0 ingress, 1 egress */
	__u8 proto;
	__u16 _pad;
};

struct net_stat {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct net_key);
	__type(value, struct net_stat);
} net_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} ifindex_filter SEC(".maps");

static __always_inline __u8 l4_code(__u16 ethertype, __u8 ipproto)
{
	if (ethertype == ETH_P_ARP)
		return 7;
	if (ethertype == ETH_P_IP) {
		if (ipproto == 6) return 1;
		if (ipproto == 17) return 2;
		if (ipproto == 1) return 3;
		return 5;
	}
	if (ethertype == ETH_P_IPV6) {
		if (ipproto == 6) return 1;
		if (ipproto == 17) return 2;
		if (ipproto == 58) return 4;
		return 6;
	}
	return 0;
}

static __always_inline void account(__u32 ifindex, __u8 dir, __u8 proto, __u64 bytes)
{
	if (filter_ifindex && !bpf_map_lookup_elem(&ifindex_filter, &ifindex))
		return;
	if (sampled_out())
		return;
	struct net_key k = { .ifindex = ifindex, .direction = dir, .proto = proto };
	struct net_stat *s = bpf_map_lookup_elem(&net_stats, &k);
	if (s) {
		s->packets += 1;
		s->bytes += bytes;
		return;
	}
	struct net_stat init = { .packets = 1, .bytes = bytes };
	if (bpf_map_update_elem(&net_stats, &k, &init, BPF_NOEXIST)) {
		s = bpf_map_lookup_elem(&net_stats, &k);
		if (s) {
			s->packets += 1;
			s->bytes += bytes;
		} else {
			count_error(ERR_MAP_UPDATE);
		}
	}
}

/* --- tc / tcx ------------------------------------------------------------------ */

static __always_inline int tc_account(struct __sk_buff *skb, __u8 dir)
{
	__u16 eth = bpf_ntohs(skb->protocol);
	__u8 ipproto = 0;
	if (eth == ETH_P_IP)
		bpf_skb_load_bytes(skb, ETH_HLEN + 9, &ipproto, 1);
	else if (eth == ETH_P_IPV6)
		bpf_skb_load_bytes(skb, ETH_HLEN + 6, &ipproto, 1);
	account(skb->ifindex, dir, l4_code(eth, ipproto), skb->len);
	return TC_ACT_UNSPEC;   /* observe only: next program / default action */
}

SEC("?tc/ingress")
int tc_ingress(struct __sk_buff *skb)
{
	return tc_account(skb, 0);
}

SEC("?tc/egress")
int tc_egress(struct __sk_buff *skb)
{
	return tc_account(skb, 1);
}

/* --- tracepoints ---------------------------------------------------------------- */

static __always_inline void skb_account(struct sk_buff *skb, __u8 dir)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (!dev)
		return;
	if (netns_ino && BPF_CORE_READ(dev, nd_net.net, ns.inum) != netns_ino)
		return;
	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned char *data = BPF_CORE_READ(skb, data);
	__u16 mac = BPF_CORE_READ(skb, mac_header);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u64 len = BPF_CORE_READ(skb, len);
	if (mac != (__u16)~0U && head + mac < data)
		len += data - (head + mac);
	__u16 eth = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	__u8 ipproto = 0;
	if (eth == ETH_P_IP)
		bpf_probe_read_kernel(&ipproto, 1, head + nh + 9);
	else if (eth == ETH_P_IPV6)
		bpf_probe_read_kernel(&ipproto, 1, head + nh + 6);
	account(BPF_CORE_READ(dev, ifindex), dir, l4_code(eth, ipproto), len);
}

SEC("?tp_btf/netif_receive_skb")
int BPF_PROG(btf_rx, struct sk_buff *skb)
{
	skb_account(skb, 0);
	return 0;
}

SEC("?tp_btf/net_dev_xmit")
int BPF_PROG(btf_tx, struct sk_buff *skb, int rc)
{
	if (rc == 0)
		skb_account(skb, 1);
	return 0;
}

SEC("?raw_tp/netif_receive_skb")
int BPF_PROG(raw_rx, struct sk_buff *skb)
{
	skb_account(skb, 0);
	return 0;
}

SEC("?raw_tp/net_dev_xmit")
int BPF_PROG(raw_tx, struct sk_buff *skb, int rc)
{
	if (rc == 0)
		skb_account(skb, 1);
	return 0;
}
