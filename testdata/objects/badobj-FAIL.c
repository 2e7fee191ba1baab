/* Object names the kernel cannot parse: a file name instead of the module name. */
#include "klp.h"

extern int numdummies;

KLP_MODULE_RELOC(dummy-net) badobj_relocs[] = {
	KLP_SYMPOS(numdummies, 0),
};

int badobj_get(void) { return numdummies; }
