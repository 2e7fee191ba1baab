/* Sites whose source lines klp-ld names: built with -g (and without -ffunction-sections, so that
 * several functions share .text) by tests/unit/test_srcloc.py, which finds the line of each
 * `site:` marker and expects it in the `>>> referenced by FILE:LINE (FUNCTION)` note. */
#include "klp.h"
#include "srcloc.h"

extern int state_show(void);

KLP_MODULE_RELOC(vmlinux) srcloc_relocs[] = {
	KLP_SYMPOS(state_show, 2),
};

long srcloc_first(long x)
{
	return x * 3 + 1;
}

long srcloc_abs(void)
{
	long v;

	asm volatile("mov $state_show, %0" : "=r"(v));	/* site: srcloc_abs */
	return v;
}

int srcloc_call(void)
{
	return state_show() + 1;	/* site: srcloc_call */
}

long srcloc_outer(long x)
{
	return srcloc_inline() + x;
}
