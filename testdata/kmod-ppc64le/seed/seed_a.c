// SPDX-License-Identifier: GPL-2.0
/* Object a means the copy of do_nothing() at position 1 in vmlinux (security.c's, the first in kallsyms). */
#include <linux/compiler.h>
#include <klp-ld.h>
#include "seed.h"

extern void do_nothing(void *unused);

KLP_MODULE_RELOC(vmlinux) seed_a_relocs[] = {
	KLP_SYMPOS(do_nothing, 1),
};

/* Not static: gcc would move a pointer it sees is never written to .data.rel.ro. */
void (*seed_a_ptr)(void *) = do_nothing;

/* gcc calls an external function with bl + nop; the loader sends it through a stub and turns the nop
 * into the TOC restore. Never inlined: seed_main.c reads this function's code. */
static noinline void seed_a_call(void)
{
	do_nothing(NULL);
}

void seed_a_refs(struct seed_refs *r)
{
	r->who = "a";
	r->call = seed_a_call;
	r->toc = (unsigned long)do_nothing;
	r->data = (unsigned long)READ_ONCE(seed_a_ptr);
}
