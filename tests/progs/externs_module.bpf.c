// SPDX-License-Identifier: GPL-2.0
/* A kfunc that lives in a module on distribution kernels (nf_conntrack's
 * bpf_skb_ct_lookup) and is built in on others: the call goes through fd_array
 * with insn->off naming the module's BTF, or straight to vmlinux
 * (tests/kernel/test_externs.py; the module case runs in tools/vmtest guests). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *bpf_tuple,
				  u32 tuple__sz, struct bpf_ct_opts *opts, u32 opts__sz) __ksym;
void bpf_ct_release(struct nf_conn *ct) __ksym;

int ct_found = -1;
int ct_error = 1;

SEC("tc")
int ct_lookup(struct __sk_buff *ctx)
{
	struct bpf_sock_tuple tup = {};
	struct bpf_ct_opts opts = { .netns_id = -1, .l4proto = 6 };   /* current netns, TCP */
	struct nf_conn *ct;

	tup.ipv4.saddr = 0x0100007f;
	tup.ipv4.daddr = 0x0100007f;
	tup.ipv4.sport = 0x3930;       /* 12345, 12346 in network order: no such connection */
	tup.ipv4.dport = 0x3a30;
	ct = bpf_skb_ct_lookup(ctx, &tup, sizeof(tup.ipv4), &opts, sizeof(opts));
	if (ct) {
		ct_found = 1;
		bpf_ct_release(ct);
	} else {
		ct_found = 0;
	}
	ct_error = opts.error;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
