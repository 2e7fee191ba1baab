/* A stand-in for the kernel's <linux/types.h>: the two types <klp-ld.h> needs, so the fixtures build
 * with the cross compiler alone (a kernel build has the real header). */
#ifndef _LINUX_TYPES_H
#define _LINUX_TYPES_H
typedef unsigned int __u32;
typedef unsigned long long __u64;
#endif
