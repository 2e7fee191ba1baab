// SPDX-License-Identifier: GPL-2.0
/*
 * The annotated callee is f2fs's __checkpoint_and_complete_reqs.cold, declared a function so that
 * the compiled object holds an undefined STT_FUNC ".cold" symbol: the reference objtool trips on
 * unless klp-ld renames it. The call is never made; the module only has to link, pass objtool and load.
 */
#include <linux/kernel.h>
#include <klp-ld.h>

extern void k612_cold_part(void) __asm__("__checkpoint_and_complete_reqs.cold");
asm(".type __checkpoint_and_complete_reqs.cold, @function");

KLP_MODULE_RELOC(f2fs) k612_cold_relocs[] = {
	KLP_SYMPOS(k612_cold_part, 0),
};

void k612_cold_call(int why);
void k612_cold_call(int why)
{
	if (why == 0x6b363132) {
		k612_cold_part();
		barrier();	/* a call, not a tail jump */
	}
}
