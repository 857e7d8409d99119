// SPDX-License-Identifier: GPL-2.0
/* Socket programs for tests/kernel/test_attach_net.py: a socket filter, an sk_msg
 * verdict on a sockmap, an sk_skb stream verdict on a sockhash. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 keep_bytes = 4;   /* the socket filter trims packets to this */

__u64 filter_dropped, filter_trimmed;
__u64 msg_passed, msg_dropped, msg_redirected;
__u64 skb_bytes;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} sock_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} sock_hash SEC(".maps");

/* Drop packets starting with 'D', trim the others to keep_bytes. */
SEC("socket")
int sock_filter(struct __sk_buff *skb)
{
	char c = 0;

	if (bpf_skb_load_bytes(skb, 0, &c, 1) == 0 && c == 'D') {
		__sync_fetch_and_add(&filter_dropped, 1);
		return 0;
	}
	__sync_fetch_and_add(&filter_trimmed, 1);
	return keep_bytes;
}

/* 'X...': drop (sendmsg fails with EACCES); 'R...': redirect to the ingress queue of
 * the socket at sock_map[0]; anything else passes. */
SEC("sk_msg")
int msg_verdict(struct sk_msg_md *msg)
{
	char *data = msg->data, *end = msg->data_end;

	if (data + 1 > end)
		return SK_PASS;
	if (data[0] == 'X') {
		__sync_fetch_and_add(&msg_dropped, 1);
		return SK_DROP;
	}
	if (data[0] == 'R') {
		__sync_fetch_and_add(&msg_redirected, 1);
		return bpf_msg_redirect_map(msg, &sock_map, 0, BPF_F_INGRESS);
	}
	__sync_fetch_and_add(&msg_passed, 1);
	return SK_PASS;
}

SEC("sk_skb/stream_verdict")
int skb_verdict(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&skb_bytes, skb->len);
	return SK_PASS;
}

/* SEC("sk_skb") names no attach type: attached with attach_type="SK_SKB_VERDICT". */
SEC("sk_skb")
int skb_any(struct __sk_buff *skb)
{
	return SK_PASS;
}
