// SPDX-License-Identifier: GPL-2.0
/* freplace test: replaces pybpf_verdict() of attach_tracing.bpf.c's freplace_target
 * (XDP_PASS) with a function returning XDP_DROP.  Loading needs the target program
 * (attach_prog_fd) and is done by the test. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("freplace/pybpf_verdict")
int drop_verdict(int len)
{
	return XDP_DROP;
}
