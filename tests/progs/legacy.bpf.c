// SPDX-License-Identifier: GPL-2.0
/* Legacy map definitions in SEC("maps") (libbpf >= 1.0 refuses them; pybpf accepts). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def_legacy {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def_legacy legacy_counts SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = 4,
	.value_size = 8,
	.max_entries = 4,
};

SEC("syscall")
int bump(void *ctx)
{
	int k = 2;
	long *v = bpf_map_lookup_elem(&legacy_counts, &k);
	if (v)
		*v += 9;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
