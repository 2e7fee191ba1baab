/* Object b means the other state_show (position 2), reached by a tail call: jg (brcl 15,
 * R_390_PLT32DBL). */
#include <klp-ld.h>

extern int state_show(void);

KLP_MODULE_RELOC(vmlinux) lp_b_relocs[] = {
	KLP_SYMPOS(state_show, 2),
};

int lp_b_call(void)
{
	return state_show();
}
