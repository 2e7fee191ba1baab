// SPDX-License-Identifier: GPL-2.0
/* The original /proc handlers the patch replaces, referenced from text and from a table. */
#include <linux/kernel.h>
#include "klp.h"
#include "p5.h"

extern int cmdline_proc_show(void);
extern int meminfo_proc_show(void);
extern int version_proc_show(void);

KLP_MODULE_RELOC(vmlinux) p5_proc_relocs[] = {
	KLP_SYMPOS(cmdline_proc_show, 0),
	KLP_SYMPOS(meminfo_proc_show, 0),
	KLP_SYMPOS(version_proc_show, 0),
};

static int (*const p5_originals[])(void) __used = {	/* R_X86_64_64 data sites */
	cmdline_proc_show, meminfo_proc_show, version_proc_show,
};

long p5_proc_probe(void)
{
	long v;

	asm volatile("lea meminfo_proc_show(%%rip), %0" : "=r"(v));	/* R_X86_64_PC32 */
	return v + (long)p5_originals[0];
}
