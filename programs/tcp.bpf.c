// SPDX-License-Identifier: GPL-2.0
/* tcp collector: state transitions, active-open (connect) latency,
 * retransmits and resets (sent, by kernel reason; received).
 *
 * Hook variants: tp_btf (default) or raw_tp on inet_sock_set_state,
 * tcp_retransmit_skb, tcp_send_reset and tcp_receive_reset.  Many of these run
 * in softirq context, so the scope is decided per *socket*, not by the current task:
 *  - cgroup scope: the socket's cgroup (sk_cgrp_data, inherited by accepted
 *    sockets from their listener);
 *  - pid scope: sockets the process connect()s or listen()s on (both transitions
 *    happen in its own syscall, so the current task is it), and the sockets
 *    accepted from those listeners (matched by network namespace and port when the
 *    child appears, LISTEN -> SYN_RECV).  Sockets it opened before the agent
 *    started are not known. */
#include "agent.h"

char LICENSE[] SEC("license") = "GPL";

#define IPPROTO_TCP 6
#define NSTATES 16
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10

enum {
	SLOT_TRANSITIONS = 0,				/* NSTATES*NSTATES transition counts */
	SLOT_RETRANSMITS = NSTATES * NSTATES,
	SLOT_RESETS_RECEIVED,
	SLOT_RESETS_SENT = SLOT_RESETS_RECEIVED + 1,	/* 128 reasons */
	SLOT_CONNECT_HIST = SLOT_RESETS_SENT + 128,	/* HIST_SLOTS */
	SLOT_COUNT = SLOT_CONNECT_HIST + HIST_SLOTS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} tcp_counts SEC(".maps");

/* sock -> connect() start time */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u64);
} connect_start SEC(".maps");

/* pid scope: sockets of the scoped process (struct sock * -> its listening port, or 0
 * for a socket that does not listen: the port is gone from the socket by the time the
 * LISTEN -> CLOSE transition is traced) ... */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u32);
} scoped_socks SEC(".maps");

/* ... and its listening ports, per network namespace, to adopt accepted sockets. */
struct listen_key {
	__u32 netns;
	__u32 port;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct listen_key);
	__type(value, __u8);
} scoped_listeners SEC(".maps");

static __always_inline struct listen_key listen_key_of(const struct sock *sk)
{
	struct listen_key k = {
		.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum),
		.port = BPF_CORE_READ(sk, __sk_common.skc_num),
	};
	return k;
}

/* Adopt `sk` into the pid scope when the transition says it is the scoped process's. */
static __always_inline void pid_scope_track(const struct sock *sk, int old, int new)
{
	__u64 key = (__u64)sk;
	__u32 none = 0;
	__u8 one = 1;

	if (old == TCP_CLOSE && (new == TCP_SYN_SENT || new == TCP_LISTEN)) {
		/* connect() / listen(): process context, the owner is current */
		if ((__u32)(bpf_get_current_pid_tgid() >> 32) != scope_tgid)
			return;
		if (new == TCP_LISTEN) {
			struct listen_key lk = listen_key_of(sk);
			bpf_map_update_elem(&scoped_listeners, &lk, &one, BPF_ANY);
			bpf_map_update_elem(&scoped_socks, &key, &lk.port, BPF_ANY);
		} else {
			bpf_map_update_elem(&scoped_socks, &key, &none, BPF_ANY);
		}
	} else if (old == TCP_LISTEN && new == TCP_SYN_RECV) {
		/* a child socket cloned from a listener (softirq): same netns and port */
		struct listen_key lk = listen_key_of(sk);
		if (bpf_map_lookup_elem(&scoped_listeners, &lk))
			bpf_map_update_elem(&scoped_socks, &key, &none, BPF_ANY);
	}
}

static __always_inline void pid_scope_forget(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	__u32 *port = bpf_map_lookup_elem(&scoped_socks, &key);

	if (port && *port) {
		struct listen_key lk = {
			.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum),
			.port = *port,
		};
		bpf_map_delete_elem(&scoped_listeners, &lk);
	}
	bpf_map_delete_elem(&scoped_socks, &key);
}

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&tcp_counts, &slot);
	if (v)
		*v += 1;
}

static __always_inline bool sock_in_scope(const struct sock *sk)
{
	if (!scope_cgroup_id && !scope_tgid)
		return true;
	if (!sk)
		return false;
	if (scope_tgid) {
		__u64 key = (__u64)sk;
		if (!bpf_map_lookup_elem(&scoped_socks, &key))
			return false;
	}
	if (scope_cgroup_id)
		return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id) == scope_cgroup_id;
	return true;
}

static __always_inline void set_state(const struct sock *sk, int old, int new)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	if (scope_tgid)
		pid_scope_track(sk, old, new);
	if (!sock_in_scope(sk))
		return;
	if (scope_tgid && new == TCP_CLOSE)
		pid_scope_forget(sk);	/* counted below; the pointer may be reused */
	__u64 key = (__u64)sk;
	if (new == TCP_SYN_SENT) {
		__u64 ts = bpf_ktime_get_ns();
		bpf_map_update_elem(&connect_start, &key, &ts, BPF_ANY);
	} else if (old == TCP_SYN_SENT) {
		__u64 *ts = bpf_map_lookup_elem(&connect_start, &key);
		if (ts) {
			__u64 start = *ts;
			bpf_map_delete_elem(&connect_start, &key);
			__u64 now = bpf_ktime_get_ns();
			if (new == TCP_ESTABLISHED && now > start && !sampled_out())
				hist_array_add(&tcp_counts, SLOT_CONNECT_HIST, now - start);
		}
	}
	if (sampled_out())
		return;
	if (old >= 0 && old < NSTATES && new >= 0 && new < NSTATES)
		bump(SLOT_TRANSITIONS + old * NSTATES + new);
}

static __always_inline void retransmit(const struct sock *sk)
{
	if (sock_in_scope(sk) && !sampled_out())
		bump(SLOT_RETRANSMITS);
}

static __always_inline void send_reset(const struct sock *sk, __u32 reason)
{
	if (!sock_in_scope(sk) || sampled_out())
		return;
	bump(SLOT_RESETS_SENT + (reason < 128 ? reason : 127));
}

static __always_inline void receive_reset(const struct sock *sk)
{
	if (sock_in_scope(sk) && !sampled_out())
		bump(SLOT_RESETS_RECEIVED);
}

SEC("?tp_btf/inet_sock_set_state")
int BPF_PROG(btf_set_state, const struct sock *sk, const int old, const int new)
{
	set_state(sk, old, new);
	return 0;
}

SEC("?tp_btf/tcp_retransmit_skb")
int BPF_PROG(btf_retransmit, const struct sock *sk)
{
	retransmit(sk);
	return 0;
}

SEC("?tp_btf/tcp_send_reset")
int BPF_PROG(btf_send_reset, const struct sock *sk, const struct sk_buff *skb, int reason)
{
	send_reset(sk, reason);
	return 0;
}

SEC("?tp_btf/tcp_receive_reset")
int BPF_PROG(btf_receive_reset, struct sock *sk)
{
	receive_reset(sk);
	return 0;
}

SEC("?raw_tp/inet_sock_set_state")
int BPF_PROG(raw_set_state, const struct sock *sk, const int old, const int new)
{
	set_state(sk, old, new);
	return 0;
}

SEC("?raw_tp/tcp_retransmit_skb")
int BPF_PROG(raw_retransmit, const struct sock *sk)
{
	retransmit(sk);
	return 0;
}

SEC("?raw_tp/tcp_send_reset")
int BPF_PROG(raw_send_reset, const struct sock *sk, const struct sk_buff *skb, int reason)
{
	send_reset(sk, reason);
	return 0;
}

SEC("?raw_tp/tcp_receive_reset")
int BPF_PROG(raw_receive_reset, struct sock *sk)
{
	receive_reset(sk);
	return 0;
}
