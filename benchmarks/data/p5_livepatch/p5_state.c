// SPDX-License-Identifier: GPL-2.0
/* Two of the five static state_show() of 6.1, by position: a text and a data site for each. */
#include <linux/kernel.h>
#include "klp.h"
#include "p5.h"

extern int state_show(void);

KLP_MODULE_RELOC(vmlinux) p5_state_relocs[] = {
	KLP_SYMPOS(state_show, 2),
};

static int (*p5_state_ptr)(void) __used = state_show;	/* R_X86_64_64 */

long p5_state_probe(int which)
{
	long v;

	asm volatile("lea state_show(%%rip), %0" : "=r"(v));	/* R_X86_64_PC32 */
	return which ? (long)p5_state_ptr : v;
}
