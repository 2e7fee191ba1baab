/* What gcc emits for a kernel object without -fPIC (the tests build this file with -fno-PIC added, as
 * a Makefile that overrides kbuild's module flags would): its address taken with larl and its value
 * read with lgrl, both R_390_PC32DBL, a 32-bit PC-relative field that reaches the kernel only when the
 * module happens to lie within 4 GiB of it. Each must fail the final link. */
#include <klp-ld.h>

extern long saved_count;

KLP_MODULE_RELOC(vmlinux) lp_bad_relocs[] = {
	KLP_SYMPOS(saved_count, 1),
};

long *lp_bad_addr(void)
{
	return &saved_count;
}

long lp_bad_read(void)
{
	return saved_count;
}
