/* Module-specific references (klp-convert's dialect, KLP_MODULE_RELOC(dummy)): written late, when
 * module 'dummy' loads. A call (R_390_PLT32DBL) and a pointer in data (R_390_64) are written again at
 * every load of dummy; the address read from the GOT (lgrl, R_390_GOTENT) goes through a slot the
 * loader fills only once (got_initialized), so it warns ("stale-slot"). */
#include <klp-ld.h>

extern int dummy_fn(void);
extern int dummy_state;

KLP_MODULE_RELOC(dummy) lp_mod_relocs[] = {
	KLP_SYMPOS(dummy_fn, 0),
	KLP_SYMPOS(dummy_state, 0),
};

int *lp_mod_ptr = &dummy_state;

int lp_mod_call(void)
{
	return dummy_fn() + 1;
}

int lp_mod_read(void)
{
	return dummy_state;
}
