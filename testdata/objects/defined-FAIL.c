/* An annotation must name a kernel symbol, not one this object defines. */
#include "klp.h"

int local_helper(void) { return 7; }

KLP_MODULE_RELOC(vmlinux) defined_relocs[] = {
	KLP_SYMPOS(local_helper, 1),
};
