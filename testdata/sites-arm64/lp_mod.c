/* Module-specific references (SUSE's dialect: the relocation belongs to module 'dummy'): written late,
 * after the patch module is formed, through aarch64_insn_copy. A pointer in __ro_after_init data is
 * fine on arm64 (unlike ppc64le's plain stores); a call may need a PLT entry, which the loader stores
 * plainly into read-only .plt (a warning); a call inside an alternative's replacement code is copied
 * by module_finalize before it is written (an error). */
#include <klp-ld.h>

extern int dummy_fn(void) KLP_RELOC_SYMBOL(dummy, dummy, dummy_fn);
extern int dummy_state KLP_RELOC_SYMBOL(dummy, dummy, dummy_state);

int *lp_mod_rw = &dummy_state;
int *lp_mod_ro __attribute__((section(".data..ro_after_init"))) = &dummy_state;	/* __ro_after_init */

int lp_mod_call(void)
{
	return dummy_fn() + 1;
}

/* ALTERNATIVE("nop", "bl dummy_fn", cap 5), spelled out as alternative-macros.h lays it out: the
 * replacement in a subsection of the same section, described by a struct alt_instr. */
void lp_mod_alt(void)
{
	asm volatile("661:\n\tnop\n662:\n"
		     "\t.pushsection .altinstructions, \"a\"\n"
		     "\t.word 661b - .\n\t.word 663f - .\n\t.hword 5\n"
		     "\t.byte 662b - 661b\n\t.byte 664f - 663f\n"
		     "\t.popsection\n"
		     "\t.subsection 1\n"
		     "663:\n\tbl \".klp.sym.rela.dummy.dummy.dummy_fn,0\"\n664:\n"
		     "\t.previous\n" : : : "x30");
}
