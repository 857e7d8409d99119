// SPDX-License-Identifier: GPL-2.0
/* USDT attach tests: arguments read through libbpf's own <bpf/usdt.bpf.h>, whose
 * __bpf_usdt_specs/__bpf_usdt_ip_to_spec_id maps pybpf fills from user space. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

long args[6];          /* last values of pybpf_test:args */
int arg_cnt;
long cookie;
char msg[16];
__u64 args_hits;
__u64 guarded_hits;
long guarded_last;
int target_pid;        /* 0: count every process */

SEC("usdt")
int BPF_USDT(on_args, int a, int b, int c, long d, char *m, int e)
{
	if (target_pid && (bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	args[0] = a;
	args[1] = b;
	args[2] = c;
	args[3] = d;
	args[5] = e;
	/* also through the generic accessor, which sign/zero-extends per the spec */
	bpf_usdt_arg(ctx, 4, &args[4]);
	bpf_probe_read_user_str(msg, sizeof(msg), m);
	arg_cnt = bpf_usdt_arg_cnt(ctx);
	cookie = bpf_usdt_cookie(ctx);
	__sync_fetch_and_add(&args_hits, 1);
	return 0;
}

SEC("usdt")
int BPF_USDT(on_guarded, int i)
{
	if (target_pid && (bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	guarded_last = i;
	__sync_fetch_and_add(&guarded_hits, 1);
	return 0;
}
