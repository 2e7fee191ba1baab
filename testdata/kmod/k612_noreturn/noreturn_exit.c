// SPDX-License-Identifier: GPL-2.0
/*
 * do_exit() is not exported, so a livepatch reaches it through a klp relocation. gcc emits nothing
 * after a call to a __noreturn function: k612_noreturn_die() ends with the call, and the next
 * function follows at once.
 */
#include <linux/kernel.h>
#include <klp-ld.h>

extern void __noreturn do_exit(long code);

KLP_MODULE_RELOC(vmlinux) k612_noreturn_relocs[] = {
	KLP_SYMPOS(do_exit, 0),
};

void __noreturn k612_noreturn_die(long code);
void __noreturn k612_noreturn_die(long code)
{
	pr_info("k612_noreturn: exiting with %ld\n", code);
	do_exit(code);
}

int k612_noreturn_next(int x);
int k612_noreturn_next(int x)
{
	return x + 1;
}
