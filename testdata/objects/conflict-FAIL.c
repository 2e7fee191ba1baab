/* One object cannot mean two copies of state_show. */
#include "klp.h"

extern int state_show(void);

KLP_MODULE_RELOC(vmlinux) conflict_relocs[] = {
	KLP_SYMPOS(state_show, 2),
	KLP_SYMPOS(state_show, 3),
};

int conflict_call(void) { return state_show(); }
