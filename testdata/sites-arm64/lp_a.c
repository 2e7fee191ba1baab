/* Object a of a two-object livepatch module: state_show at position 2, saved_count at position 1.
 * gcc reaches the function with bl (R_AARCH64_CALL26) and the object with adrp and a :lo12: load
 * (R_AARCH64_ADR_PREL_PG_HI21 + R_AARCH64_LDST64_ABS_LO12_NC) or add (R_AARCH64_ADD_ABS_LO12_NC):
 * -fno-PIE, so no GOT. The pointer is an R_AARCH64_ABS64 in .data. */
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

long *lp_a_addr(void)
{
	return &saved_count;
}
