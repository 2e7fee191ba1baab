// SPDX-License-Identifier: GPL-2.0
/* Object b means the copy of do_nothing() at position 2 in vmlinux, in SUSE's dialect. */
#include <linux/compiler.h>
#include <klp-ld.h>
#include "suse.h"

extern void do_nothing(void *unused) KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, do_nothing, 2);

/* Not static: gcc would move a pointer it sees is never written to .data.rel.ro. */
void (*suse_b_ptr)(void *) = do_nothing;

/* Never inlined: suse_main.c reads this function's code. */
static noinline void suse_b_call(void)
{
	do_nothing(NULL);
}

void suse_b_refs(struct suse_refs *r)
{
	r->who = "b";
	r->call = suse_b_call;
	r->toc = (unsigned long)do_nothing;
	r->data = (unsigned long)READ_ONCE(suse_b_ptr);
}
