/* Object b means another state_show (position 3); a tail position call stays bl + nop under ELFv2. */
#include <klp-ld.h>

extern int state_show(void);

KLP_MODULE_RELOC(vmlinux) lp_b_relocs[] = {
	KLP_SYMPOS(state_show, 3),
};

int lp_b_call(void)
{
	return state_show();
}
