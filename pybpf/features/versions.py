"""First upstream kernel of each feature, for NotSupportedError(min_kernel=...).

Informational only: probes decide, these only make the error say what to
upgrade to.  Sources: the kernel commits that added each type/flag (the
same tables cilium/ebpf's features package and the bpftool man pages use).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ..consts import AttachType as A, MapType as M, ProgType as P

__all__ = ["min_kernel", "PROG_TYPES", "MAP_TYPES", "ATTACH_TYPES", "FEATURES"]

PROG_TYPES: Dict[P, str] = {
    P.SOCKET_FILTER: "3.19", P.KPROBE: "4.1", P.SCHED_CLS: "4.1", P.SCHED_ACT: "4.1",
    P.TRACEPOINT: "4.7", P.XDP: "4.8", P.PERF_EVENT: "4.9", P.CGROUP_SKB: "4.10",
    P.CGROUP_SOCK: "4.10", P.LWT_IN: "4.10", P.LWT_OUT: "4.10", P.LWT_XMIT: "4.10",
    P.SOCK_OPS: "4.13", P.SK_SKB: "4.14", P.CGROUP_DEVICE: "4.15", P.SK_MSG: "4.17",
    P.RAW_TRACEPOINT: "4.17", P.CGROUP_SOCK_ADDR: "4.17", P.LWT_SEG6LOCAL: "4.18",
    P.LIRC_MODE2: "4.18", P.SK_REUSEPORT: "4.19", P.FLOW_DISSECTOR: "4.20",
    P.CGROUP_SYSCTL: "5.2", P.RAW_TRACEPOINT_WRITABLE: "5.2", P.CGROUP_SOCKOPT: "5.3",
    P.TRACING: "5.5", P.STRUCT_OPS: "5.6", P.EXT: "5.6", P.LSM: "5.7", P.SK_LOOKUP: "5.9",
    P.SYSCALL: "5.14", P.NETFILTER: "6.4",
}

MAP_TYPES: Dict[M, str] = {
    M.HASH: "3.19", M.ARRAY: "3.19", M.PROG_ARRAY: "4.2", M.PERF_EVENT_ARRAY: "4.3",
    M.PERCPU_HASH: "4.6", M.PERCPU_ARRAY: "4.6", M.STACK_TRACE: "4.6", M.CGROUP_ARRAY: "4.8",
    M.LRU_HASH: "4.10", M.LRU_PERCPU_HASH: "4.10", M.LPM_TRIE: "4.11", M.ARRAY_OF_MAPS: "4.12",
    M.HASH_OF_MAPS: "4.12", M.DEVMAP: "4.14", M.SOCKMAP: "4.14", M.CPUMAP: "4.15",
    M.XSKMAP: "4.18", M.SOCKHASH: "4.18", M.CGROUP_STORAGE_DEPRECATED: "4.19",
    M.REUSEPORT_SOCKARRAY: "4.19", M.PERCPU_CGROUP_STORAGE_DEPRECATED: "4.20",
    M.QUEUE: "4.20", M.STACK: "4.20", M.SK_STORAGE: "5.2", M.DEVMAP_HASH: "5.4",
    M.STRUCT_OPS: "5.6", M.RINGBUF: "5.8", M.INODE_STORAGE: "5.10", M.TASK_STORAGE: "5.11",
    M.BLOOM_FILTER: "5.16", M.USER_RINGBUF: "6.1", M.CGRP_STORAGE: "6.2", M.ARENA: "6.9",
}

ATTACH_TYPES: Dict[A, str] = {
    A.CGROUP_INET_INGRESS: "4.10", A.CGROUP_INET_EGRESS: "4.10",
    A.CGROUP_INET_SOCK_CREATE: "4.10", A.CGROUP_SOCK_OPS: "4.13",
    A.SK_SKB_STREAM_PARSER: "4.14", A.SK_SKB_STREAM_VERDICT: "4.14", A.CGROUP_DEVICE: "4.15",
    A.SK_MSG_VERDICT: "4.17", A.CGROUP_INET4_BIND: "4.17", A.CGROUP_INET6_BIND: "4.17",
    A.CGROUP_INET4_CONNECT: "4.17", A.CGROUP_INET6_CONNECT: "4.17",
    A.CGROUP_INET4_POST_BIND: "4.17", A.CGROUP_INET6_POST_BIND: "4.17",
    A.CGROUP_UDP4_SENDMSG: "4.18", A.CGROUP_UDP6_SENDMSG: "4.18", A.LIRC_MODE2: "4.18",
    A.FLOW_DISSECTOR: "4.20", A.CGROUP_SYSCTL: "5.2", A.CGROUP_UDP4_RECVMSG: "5.2",
    A.CGROUP_UDP6_RECVMSG: "5.2", A.CGROUP_GETSOCKOPT: "5.3", A.CGROUP_SETSOCKOPT: "5.3",
    A.TRACE_RAW_TP: "5.5", A.TRACE_FENTRY: "5.5", A.TRACE_FEXIT: "5.5", A.MODIFY_RETURN: "5.7",
    A.LSM_MAC: "5.7", A.TRACE_ITER: "5.8", A.CGROUP_INET4_GETPEERNAME: "5.8",
    A.CGROUP_INET6_GETPEERNAME: "5.8", A.CGROUP_INET4_GETSOCKNAME: "5.8",
    A.CGROUP_INET6_GETSOCKNAME: "5.8", A.XDP_DEVMAP: "5.8", A.CGROUP_INET_SOCK_RELEASE: "5.9",
    A.XDP_CPUMAP: "5.9", A.SK_LOOKUP: "5.9", A.XDP: "5.9", A.SK_SKB_VERDICT: "5.13",
    A.SK_REUSEPORT_SELECT: "5.14", A.SK_REUSEPORT_SELECT_OR_MIGRATE: "5.14",
    A.PERF_EVENT: "5.15", A.TRACE_KPROBE_MULTI: "5.18", A.LSM_CGROUP: "6.0",
    A.STRUCT_OPS: "6.4", A.NETFILTER: "6.4", A.TCX_INGRESS: "6.6", A.TCX_EGRESS: "6.6",
    A.TRACE_UPROBE_MULTI: "6.6", A.CGROUP_UNIX_CONNECT: "6.7", A.CGROUP_UNIX_SENDMSG: "6.7",
    A.CGROUP_UNIX_RECVMSG: "6.7", A.CGROUP_UNIX_GETPEERNAME: "6.7",
    A.CGROUP_UNIX_GETSOCKNAME: "6.7", A.NETKIT_PRIMARY: "6.7", A.NETKIT_PEER: "6.7",
    A.TRACE_KPROBE_SESSION: "6.10", A.TRACE_UPROBE_SESSION: "6.13",
}

FEATURES: Dict[str, str] = {
    "btf": "4.18", "btf_func": "5.0", "btf_func_global": "5.6", "btf_datasec": "5.2",
    "btf_qmark_datasec": "6.5", "btf_float": "5.13", "btf_decl_tag": "5.16",
    "btf_type_tag": "5.17", "btf_enum64": "6.0",
    "prog_name": "4.15", "exp_attach_type": "4.17", "global_data": "5.2",
    "mmapable_arrays": "5.5", "large_insn_limit": "5.2", "bounded_loops": "5.3",
    "isa_v2": "4.14", "isa_v3": "5.1", "isa_v4": "6.6", "probe_read_kernel": "5.5",
    "bpf_link": "5.7", "ringbuf": "5.8", "prog_bind_map": "5.10", "sleepable": "5.10",
    "module_btf": "5.11", "bpf_cookie": "5.15", "perf_link": "5.15", "bpf_loop": "5.17",
    "xdp_frags": "5.18", "kprobe_multi": "5.18", "kfuncs": "6.2", "uprobe_multi": "6.6",
    "tcx": "6.6", "netkit": "6.7", "fentry": "5.5", "lsm": "5.7", "kprobes": "4.17",
    "uprobes": "4.17", "user_ringbuf": "6.1", "struct_ops": "5.6",
}


def min_kernel(kind: str, value: object) -> Optional[str]:
    """The first kernel with ``value`` of ``kind`` ("prog_type", "map_type",
    "attach_type", "feature"), or None when unknown."""
    tables: Dict[str, Dict[Any, str]] = {
        "prog_type": PROG_TYPES, "map_type": MAP_TYPES, "attach_type": ATTACH_TYPES,
        "link": ATTACH_TYPES, "feature": FEATURES}
    table = tables.get(kind)
    return table.get(value) if table is not None else None
