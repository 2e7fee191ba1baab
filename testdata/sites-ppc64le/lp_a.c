/* Object a of a two-object livepatch module: state_show at position 2, saved_count at position 1.
 * gcc reaches the function with bl + nop (R_PPC64_REL24) and the object through a .toc entry that
 * holds its address (R_PPC64_ADDR64 in .rela.toc), read with addis/ld (TOC16_HA/TOC16_LO_DS against
 * the .toc section, not against the symbol). The pointer is an ADDR64 in .data.rel. */
#include <klp-ld.h>

extern int state_show(void);
extern long saved_count;
extern long jiffies;	/* exported: stays an ordinary reference */

KLP_MODULE_RELOC(vmlinux) lp_a_relocs[] = {
	KLP_SYMPOS(state_show, 2),
	KLP_SYMPOS(saved_count, 1),
};

int (*lp_a_ptr)(void) = state_show;

long lp_a_call(void)
{
	return state_show() + jiffies;
}

long lp_a_data(void)
{
	return saved_count;
}
