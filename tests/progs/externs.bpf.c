// SPDX-License-Identifier: GPL-2.0
/* .kconfig externs: every kind of value libbpf fills in, read back through a
 * syscall program (tests/kernel/test_externs.py compares them with uname and
 * the kernel's config). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern bool LINUX_HAS_BPF_COOKIE __kconfig __weak;
extern int CONFIG_HZ __kconfig;                                 /* integer */
extern unsigned long long CONFIG_NR_CPUS __kconfig;             /* 8-byte integer */
extern bool CONFIG_BPF_SYSCALL __kconfig;                       /* bool, y */
extern enum libbpf_tristate CONFIG_BPF_JIT __kconfig;           /* tristate, y */
extern char CONFIG_BPF_JIT_ALWAYS_ON __kconfig __weak;          /* char: 'y' or 0 */
extern char CONFIG_LOCALVERSION[16] __kconfig __weak;           /* string */
extern bool CONFIG_PYBPF_NOT_AN_OPTION __kconfig __weak;        /* absent: 0 */
extern enum libbpf_tristate CONFIG_PYBPF_NOT_A_TRISTATE __kconfig __weak;
extern int CONFIG_PYBPF_NOT_AN_INT __kconfig __weak;

struct kconfig_values {
	unsigned int version;
	unsigned int hz;
	unsigned long long nr_cpus;
	int jit;
	int missing_tristate;
	int missing_int;
	unsigned char wrapper;
	unsigned char cookie;
	unsigned char bpf_syscall;
	char jit_always_on;
	unsigned char missing_bool;
	char localversion[16];
};

struct kconfig_values values = {};

SEC("syscall")
int read_kconfig(void *ctx)
{
	values.version = LINUX_KERNEL_VERSION;
	values.hz = CONFIG_HZ;
	values.nr_cpus = CONFIG_NR_CPUS;
	values.jit = CONFIG_BPF_JIT;
	values.missing_tristate = CONFIG_PYBPF_NOT_A_TRISTATE;
	values.missing_int = CONFIG_PYBPF_NOT_AN_INT;
	values.wrapper = LINUX_HAS_SYSCALL_WRAPPER;
	values.cookie = LINUX_HAS_BPF_COOKIE;
	values.bpf_syscall = CONFIG_BPF_SYSCALL;
	values.jit_always_on = CONFIG_BPF_JIT_ALWAYS_ON;
	values.missing_bool = CONFIG_PYBPF_NOT_AN_OPTION;
	for (int i = 0; i < sizeof(values.localversion); i++)
		values.localversion[i] = CONFIG_LOCALVERSION[i];
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
