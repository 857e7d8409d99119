/* Shared by the CO-RE test programs: fixed-width types without system headers
 * (so the same source builds for bpf, bpfel and bpfeb). */
#ifndef CORE_COMMON_H
#define CORE_COMMON_H

typedef unsigned long long __u64;
typedef unsigned int __u32;
typedef unsigned short __u16;
typedef unsigned char __u8;
typedef long long __s64;
typedef int __s32;
typedef short __s16;
typedef signed char __s8;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

#endif
