/* Object a means state_show at position 2, through PC32, PLT32, 32S and 64 relocations. */
#include "klp.h"

extern int state_show(void);
extern long jiffies;	/* exported: stays an ordinary reference */

KLP_MODULE_RELOC(vmlinux) seed_a_relocs[] = {
	KLP_SYMPOS(state_show, 2),
};

int (*seed_a_ptr)(void) = state_show;	/* R_X86_64_64 */

long seed_a_pc32(void)
{
	long v;

	asm volatile("lea state_show(%%rip), %0" : "=r"(v));	/* R_X86_64_PC32 */
	return v + jiffies;
}

long seed_a_abs(void)
{
	long v;

	asm volatile("mov $state_show, %0" : "=r"(v));	/* R_X86_64_32S */
	return v;
}

int seed_a_call(void)
{
	return state_show() + 1;	/* R_X86_64_PLT32 */
}
