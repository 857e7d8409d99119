// SPDX-License-Identifier: GPL-2.0
/* BTF sanitization test object: its BTF uses every kind an older kernel refuses
 * (DECL_TAG, TYPE_TAG, ENUM64, signed ENUM, FLOAT, global FUNC linkage,
 * VAR/DATASEC with dotted names) and its programs must still load and run when
 * pybpf rewrites that BTF for a 4.18-era BTF loader. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

enum san_big { BIG_SMALL = 1, BIG_LARGE = 0x100000000ULL };     /* ENUM64 */
enum san_signed { NEG_ONE = -1, POS_ONE = 1 };                   /* signed ENUM */

struct san_sample {
	float ratio;                                        /* FLOAT */
	double precise;                                     /* FLOAT (8 bytes) */
	int __attribute__((btf_type_tag("user"))) *where;   /* TYPE_TAG */
	enum san_big big;
	enum san_signed sign;
	__u64 counter;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct san_sample);
} samples SEC(".maps");

__u64 runs = 0;                                   /* .data */
__u64 last_result;                                /* .bss */
const volatile __u64 factor = 3;                  /* .rodata */
__u64 tagged SEC(".data.tagged") __attribute__((btf_decl_tag("pybpf_var_tag"))) = 5;

/* A global (non-static) subprogram, tagged: FUNC with global linkage + DECL_TAG. */
__attribute__((btf_decl_tag("pybpf_func_tag"))) __noinline int scale(int x)
{
	return x * (int)factor;
}

SEC("xdp")
int sanitized(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct san_sample *s = bpf_map_lookup_elem(&samples, &zero);

	if (s) {
		s->big = BIG_LARGE;
		s->sign = NEG_ONE;
		s->counter += 1;
	}
	runs += 1;
	last_result = scale(14) + tagged;            /* 14 * 3 + 5 = 47 */
	return XDP_PASS;
}
