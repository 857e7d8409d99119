// SPDX-License-Identifier: GPL-2.0
/* One minimal program per SEC() kind, to check that each parses and that every
 * kind this kernel supports loads.  Trampoline kinds (fentry/fexit/fmod_ret/lsm)
 * are refused by the development kernel and must give a clear NotSupportedError. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 hits;

#define BUMP() __sync_fetch_and_add(&hits, 1)

SEC("socket") int k_socket(struct __sk_buff *skb) { return 0; }
SEC("xdp") int k_xdp(struct xdp_md *ctx) { return XDP_PASS; }
SEC("xdp.frags") int k_xdp_frags(struct xdp_md *ctx) { return XDP_PASS; }
SEC("tc") int k_tc(struct __sk_buff *skb) { return 0; }
SEC("tcx/ingress") int k_tcx_ingress(struct __sk_buff *skb) { return 0; }
SEC("tcx/egress") int k_tcx_egress(struct __sk_buff *skb) { return 0; }
SEC("cgroup_skb/ingress") int k_cg_skb_in(struct __sk_buff *skb) { return 1; }
SEC("cgroup_skb/egress") int k_cg_skb_out(struct __sk_buff *skb) { return 1; }
SEC("cgroup/sock_create") int k_cg_sock_create(struct bpf_sock *sk) { return 1; }
SEC("cgroup/connect4") int k_cg_connect4(struct bpf_sock_addr *ctx) { return 1; }
SEC("cgroup/connect6") int k_cg_connect6(struct bpf_sock_addr *ctx) { return 1; }
SEC("cgroup/bind4") int k_cg_bind4(struct bpf_sock_addr *ctx) { return 1; }
SEC("cgroup/sysctl") int k_cg_sysctl(struct bpf_sysctl *ctx) { return 1; }
SEC("cgroup/getsockopt") int k_cg_getsockopt(struct bpf_sockopt *ctx) { return 1; }
SEC("cgroup/setsockopt") int k_cg_setsockopt(struct bpf_sockopt *ctx) { return 1; }
SEC("cgroup/dev") int k_cg_dev(struct bpf_cgroup_dev_ctx *ctx) { return 1; }
SEC("sockops") int k_sockops(struct bpf_sock_ops *ctx) { return 1; }
SEC("sk_skb/stream_verdict") int k_sk_skb(struct __sk_buff *skb) { return SK_PASS; }
SEC("sk_msg") int k_sk_msg(struct sk_msg_md *msg) { return SK_PASS; }
SEC("flow_dissector") int k_flow(struct __sk_buff *skb) { return 0; }
SEC("sk_lookup") int k_sk_lookup(struct bpf_sk_lookup *ctx) { return SK_PASS; }
SEC("lwt_in") int k_lwt_in(struct __sk_buff *skb) { return 0; }
SEC("raw_tp/sys_enter") int k_raw_tp(void *ctx) { BUMP(); return 0; }
SEC("raw_tracepoint.w/sys_enter") int k_raw_tp_w(void *ctx) { return 0; }
SEC("tp/syscalls/sys_enter_getpid") int k_tp(void *ctx) { BUMP(); return 0; }
SEC("tracepoint/sched/sched_switch") int k_tracepoint(void *ctx) { return 0; }
SEC("tp_btf/sched_switch") int BPF_PROG(k_tp_btf, bool preempt, struct task_struct *prev, struct task_struct *next) { return 0; }
SEC("iter/task") int k_iter(struct bpf_iter__task *ctx) { return 0; }
SEC("perf_event") int k_perf_event(void *ctx) { return 0; }
SEC("uprobe") int k_uprobe(struct pt_regs *ctx) { return 0; }
SEC("uretprobe") int k_uretprobe(struct pt_regs *ctx) { return 0; }
SEC("uprobe.s") int k_uprobe_s(struct pt_regs *ctx) { return 0; }
SEC("kprobe/do_nanosleep") int k_kprobe(struct pt_regs *ctx) { return 0; }
SEC("kretprobe/do_nanosleep") int k_kretprobe(struct pt_regs *ctx) { return 0; }
SEC("syscall") int k_syscall(void *ctx) { BUMP(); return 7; }
SEC("?fentry/do_nanosleep") int BPF_PROG(k_fentry) { return 0; }
SEC("?fexit/do_nanosleep") int BPF_PROG(k_fexit) { return 0; }
SEC("?fmod_ret/security_file_open") int BPF_PROG(k_fmod_ret, struct file *file, int ret) { return ret; }
SEC("?lsm/file_open") int BPF_PROG(k_lsm, struct file *file) { return 0; }
SEC("?lsm.s/file_open") int BPF_PROG(k_lsm_s, struct file *file) { return 0; }
