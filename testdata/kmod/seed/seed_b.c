// SPDX-License-Identifier: GPL-2.0
/* Object b means the copy of state_show() at position 3 in vmlinux. */
#include <linux/kernel.h>
#include <klp-ld.h>
#include "seed.h"

extern char state_show[];

KLP_MODULE_RELOC(vmlinux) seed_b_relocs[] = {
	KLP_SYMPOS(state_show, 3),
};

static void *seed_b_ptr = state_show;

void seed_b_refs(struct seed_refs *r)
{
	unsigned long v;

	r->who = "b";
	asm volatile("lea state_show(%%rip), %0" : "=r"(v));
	r->pc32 = v;
	asm volatile("mov $state_show, %0" : "=r"(v));
	r->abs32s = v;
	r->abs64 = (unsigned long)READ_ONCE(seed_b_ptr);
}
