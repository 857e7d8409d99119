// SPDX-License-Identifier: GPL-2.0
/* A program the verifier must reject: it dereferences a hash map value without
 * a NULL check (a hash lookup can always miss; recent kernels prove constant-key
 * array lookups non-NULL, so an array would not do). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} vals SEC(".maps");

SEC("syscall")
int bad_deref(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&vals, &k);
	*v += 1;  /* no NULL check: R0 invalid mem access 'map_value_or_null' */
	return 0;
}
