// SPDX-License-Identifier: GPL-2.0
/* Object a means the copy of do_nothing() at position 1 in vmlinux, in SUSE's dialect. */
#include <linux/compiler.h>
#include <klp-ld.h>
#include "suse.h"

extern void do_nothing(void *unused) KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, do_nothing, 1);

/* Not static: gcc would move a pointer it sees is never written to .data.rel.ro. */
void (*suse_a_ptr)(void *) = do_nothing;

/* Never inlined: suse_main.c reads this function's code. */
static noinline void suse_a_call(void)
{
	do_nothing(NULL);
}

void suse_a_refs(struct suse_refs *r)
{
	r->who = "a";
	r->call = suse_a_call;
	r->toc = (unsigned long)do_nothing;
	r->data = (unsigned long)READ_ONCE(suse_a_ptr);
}
