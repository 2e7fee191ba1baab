// SPDX-License-Identifier: GPL-2.0
/* Object a means the copy of state_show() at position 2 in vmlinux. */
#include <linux/kernel.h>
#include <klp-ld.h>
#include "seed.h"

extern char state_show[];

KLP_MODULE_RELOC(vmlinux) seed_a_relocs[] = {
	KLP_SYMPOS(state_show, 2),
};

static void *seed_a_ptr = state_show;

void seed_a_refs(struct seed_refs *r)
{
	unsigned long v;

	r->who = "a";
	asm volatile("lea state_show(%%rip), %0" : "=r"(v));
	r->pc32 = v;
	asm volatile("mov $state_show, %0" : "=r"(v));
	r->abs32s = v;
	r->abs64 = (unsigned long)READ_ONCE(seed_a_ptr);
}
