// SPDX-License-Identifier: GPL-2.0
/* Object b means the copy of state_show() at position 3 in vmlinux, in SUSE's dialect. */
#include <linux/kernel.h>
#include <klp-ld.h>
#include "suse.h"

extern char state_show[] KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, state_show, 3);

static void *suse_b_ptr = state_show;

void suse_b_refs(struct suse_refs *r)
{
	unsigned long v;

	r->who = "b";
	/* %c prints the assembler name, which is the quoted .klp.sym.rela. label */
	asm volatile("lea %c1(%%rip), %0" : "=r"(v) : "i"(state_show));
	r->pc32 = v;
	asm volatile("mov %1, %0" : "=r"(v) : "i"(state_show));
	r->abs32s = v;
	r->abs64 = (unsigned long)READ_ONCE(suse_b_ptr);
}
