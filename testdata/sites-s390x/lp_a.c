/* Object a of a two-object livepatch module: state_show at position 1, saved_count at position 1.
 * -fPIC (kbuild's KBUILD_CFLAGS_MODULE on s390): gcc calls the function with brasl (R_390_PLT32DBL,
 * state_show+2) and reads the object's address from the module's GOT with lgrl (R_390_GOTENT,
 * saved_count+2). The pointer is an R_390_64 in .data.rel. */
#include <klp-ld.h>

extern int state_show(void);
extern long saved_count;
extern long jiffies;	/* exported: stays an ordinary reference */

KLP_MODULE_RELOC(vmlinux) lp_a_relocs[] = {
	KLP_SYMPOS(state_show, 1),
	KLP_SYMPOS(saved_count, 1),
};

int (*lp_a_ptr)(void) = state_show;

long lp_a_call(void)
{
	return state_show() + jiffies;
}

long lp_a_data(void)
{
	return saved_count;
}
