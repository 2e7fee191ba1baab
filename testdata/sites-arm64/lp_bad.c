/* Livepatch references the arm64 loader cannot apply: each must fail the final link.
 * - a 32-bit absolute word holding a kernel address (R_AARCH64_ABS32): 'overflow' at load;
 * - a GOT access (what -fPIE code does: R_AARCH64_ADR_GOT_PAGE/LD64_GOT_LO12_NC): no GOT in a module;
 * - a conditional branch to a kernel function (R_AARCH64_CONDBR19): 1 MiB reach, no PLT;
 * - a call into the middle of a kernel function (CALL26 with an addend): past its BTI landing pad. */
#include <klp-ld.h>

extern int state_show(void);
extern long saved_count;

KLP_MODULE_RELOC(vmlinux) lp_bad_relocs[] = {
	KLP_SYMPOS(state_show, 2),
	KLP_SYMPOS(saved_count, 1),
};

asm(".pushsection .data.lp_bad_abs32,\"aw\"\n\t.balign 4\n\t.long saved_count\n\t.popsection");

long *lp_bad_got(void)
{
	long *p;

	asm("adrp %0, :got:saved_count\n\tldr %0, [%0, :got_lo12:saved_count]" : "=r"(p));
	return p;
}

void lp_bad_condbr(long x)
{
	asm volatile("cbz %0, state_show" : : "r"(x));
}

void lp_bad_addend(void)
{
	asm volatile("bl state_show+8" : : : "x30");
}
