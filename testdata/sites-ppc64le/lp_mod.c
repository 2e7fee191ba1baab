/* Module-specific references (SUSE's dialect: the relocation belongs to module 'dummy'): written
 * late, after the patch module is formed. A call (REL24) and a pointer in writable data are fine;
 * a pointer in __ro_after_init data is stored with a plain store into memory that is read-only by
 * then when dummy loads after the patch. */
#include <klp-ld.h>

extern int dummy_fn(void) KLP_RELOC_SYMBOL(dummy, dummy, dummy_fn);
extern int dummy_state KLP_RELOC_SYMBOL(dummy, dummy, dummy_state);

int *lp_mod_rw = &dummy_state;
int *lp_mod_ro __attribute__((section(".data..ro_after_init"))) = &dummy_state;	/* __ro_after_init */

int lp_mod_call(void)
{
	return dummy_fn() + 1;
}
