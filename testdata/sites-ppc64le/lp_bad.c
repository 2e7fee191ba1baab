/* Livepatch references the ppc64 loader cannot apply: each must fail the final link.
 * - a TOC-relative address of a kernel object (TOC16_HA/TOC16_LO against the symbol itself, what gcc
 *   emits for an object it believes is local): the loader computes it against this module's TOC;
 * - a 32-bit absolute word holding a kernel address (R_PPC64_ADDR32): silently truncated;
 * - a sibling call 'b' to a kernel function: no TOC restore after it returns. */
#include <klp-ld.h>

extern int state_show(void);
extern long saved_count;

KLP_MODULE_RELOC(vmlinux) lp_bad_relocs[] = {
	KLP_SYMPOS(state_show, 2),
	KLP_SYMPOS(saved_count, 1),
};

asm(".pushsection .data.lp_bad_addr32,\"aw\"\n\t.balign 4\n\t.long saved_count\n\t.popsection");

long *lp_bad_toc(void)
{
	long *p;

	asm("addis %0,2,saved_count@toc@ha\n\taddi %0,%0,saved_count@toc@l" : "=b"(p));
	return p;
}

void lp_bad_sibcall(void)
{
	asm volatile("b state_show");
}
