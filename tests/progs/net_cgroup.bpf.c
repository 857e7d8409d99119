// SPDX-License-Identifier: GPL-2.0
/* cgroup programs for tests/kernel/test_attach_net.py.  The tests move a forked child
 * into a fresh cgroup v2 directory, so each program only sees that child. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_DGRAM 2
#define SOL_SOCKET 1
#define SO_PRIORITY 12
#define DEVCG_DEV_CHAR 2   /* BPF_DEVCG_DEV_CHAR: a uapi enum missing from BTF */

/* set from Python (.bss) after load */
__u16 from_port;       /* connect4/connect6: a connect to this port ... */
__u16 to_port;         /* ... goes to this one instead (host byte order) */
__u16 denied_port;     /* bind4: binding this port fails with EPERM */

__u64 egress_packets, egress_bytes, ingress_packets, ingress_bytes;
__u64 connects_rewritten, sock_creates_denied, sysctl_reads_denied, dev_denied;
__u64 setsockopt_denied, binds_denied;

SEC("cgroup_skb/egress")
int cg_egress(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&egress_packets, 1);
	__sync_fetch_and_add(&egress_bytes, skb->len);
	return 1;
}

SEC("cgroup_skb/ingress")
int cg_ingress(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&ingress_packets, 1);
	__sync_fetch_and_add(&ingress_bytes, skb->len);
	return 1;
}

/* cgroup/skb names no attach type: attached with attach_type="egress". */
SEC("cgroup/skb")
int cg_skb_any(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup/connect4")
int cg_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == bpf_htons(from_port)) {
		ctx->user_port = bpf_htons(to_port);
		__sync_fetch_and_add(&connects_rewritten, 1);
	}
	return 1;
}

SEC("cgroup/connect6")
int cg_connect6(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == bpf_htons(from_port)) {
		ctx->user_port = bpf_htons(to_port);
		__sync_fetch_and_add(&connects_rewritten, 1);
	}
	return 1;
}

SEC("cgroup/bind4")
int cg_bind4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == bpf_htons(denied_port)) {
		__sync_fetch_and_add(&binds_denied, 1);
		return 0;
	}
	return 1;
}

SEC("cgroup/sock_create")
int cg_sock_create(struct bpf_sock *sk)
{
	if (sk->family == AF_INET && sk->type == SOCK_DGRAM) {
		__sync_fetch_and_add(&sock_creates_denied, 1);
		return 0;
	}
	return 1;
}

SEC("cgroup/sysctl")
int cg_sysctl(struct bpf_sysctl *ctx)
{
	char name[16] = {};

	if (ctx->write)
		return 1;
	/* deny reading kernel.ostype only */
	if (bpf_sysctl_get_name(ctx, name, sizeof(name), 0) < 0)
		return 1;
	if (__builtin_memcmp(name, "kernel/ostype", 14) == 0) {
		__sync_fetch_and_add(&sysctl_reads_denied, 1);
		return 0;
	}
	return 1;
}

SEC("cgroup/dev")
int cg_dev(struct bpf_cgroup_dev_ctx *ctx)
{
	/* deny /dev/null (char 1:3), allow everything else */
	if ((ctx->access_type & 0xffff) == DEVCG_DEV_CHAR && ctx->major == 1 && ctx->minor == 3) {
		__sync_fetch_and_add(&dev_denied, 1);
		return 0;
	}
	return 1;
}

SEC("cgroup/setsockopt")
int cg_setsockopt(struct bpf_sockopt *ctx)
{
	if (ctx->level == SOL_SOCKET && ctx->optname == SO_PRIORITY) {
		__sync_fetch_and_add(&setsockopt_denied, 1);
		return 0;
	}
	ctx->optlen = 0;   /* let the kernel handle it, unchanged */
	return 1;
}
