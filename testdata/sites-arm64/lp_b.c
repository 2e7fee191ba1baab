/* Object b means another state_show (position 3), reached by a tail call: b (R_AARCH64_JUMP26), which
 * arm64 allows, having no TOC to restore after the call. */
#include <klp-ld.h>

extern int state_show(void);

KLP_MODULE_RELOC(vmlinux) lp_b_relocs[] = {
	KLP_SYMPOS(state_show, 3),
};

int lp_b_call(void)
{
	return state_show();
}
