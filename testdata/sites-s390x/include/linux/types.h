/* Only what <klp-ld.h> needs from the kernel's <linux/types.h>, so that the fixtures build with the
 * cross compiler and no kernel tree (kbuild's include path has the real header). */
#ifndef _LINUX_TYPES_H
#define _LINUX_TYPES_H
typedef unsigned int __u32;
typedef unsigned long long __u64;
#endif
