// SPDX-License-Identifier: GPL-2.0
/*
 * Prints what each object's relocations resolved to, for the test to compare with kallsyms.
 *
 * The call is judged by what the loader made of it: the first brasl in the object's caller (its
 * ftrace site is a brcl 0 nop) branches either to the callee or, out of brasl range, to the callee's
 * PLT entry in the module (arch/s390/kernel/module.c: basr %r1,0; lg %r1,12(%r1); br %r1; then the
 * 8-byte address at offset 14 of the entry), whose destination is read. Then the caller runs, through
 * it, into default_read_file(), which returns 0. The load (lgrl + lg) is compared with the first 8
 * bytes at the address the data pointer gives.
 */
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/string.h>
#include <linux/types.h>
#include "seed.h"

static const u8 plt_code[] = { 0x0d, 0x10, 0xe3, 0x10, 0x10, 0x0c, 0x00, 0x04, 0x07, 0xf1 };
#define PLT_ADDRESS	14

/* Where the first brasl in fn ends up; *plt tells whether through a PLT entry (0: no brasl found). */
static unsigned long call_target(void (*fn)(void), int *plt)
{
	const u8 *insn = (const u8 *)fn;
	const u8 *dest;
	unsigned long target;
	s32 halfwords;
	int i;

	*plt = 0;
	for (i = 0; i < 64; i++) {
		if (insn[0] == 0xc0 && (insn[1] & 0x0f) == 0x05) {	/* brasl */
			memcpy(&halfwords, insn + 2, sizeof(halfwords));
			dest = insn + 2L * halfwords;
			if (memcmp(dest, plt_code, sizeof(plt_code)))
				return (unsigned long)dest;
			*plt = 1;
			memcpy(&target, dest + PLT_ADDRESS, sizeof(target));
			return target;
		}
		insn += (insn[0] >> 6) == 0 ? 2 : (insn[0] >> 6) == 3 ? 6 : 4;
	}
	return 0;
}

static void show(void (*fill)(struct seed_refs *))
{
	struct seed_refs r;
	unsigned long target;
	int plt;

	fill(&r);
	target = call_target(r.call, &plt);
	pr_info("s390_seed: %s call=%lx plt=%d got=%lx data=%lx load=%lx peek=%lx\n", r.who, target, plt,
		r.addr(), r.data, r.load(), READ_ONCE(*(const unsigned long *)r.data));
	r.call();
	pr_info("s390_seed: %s called, got %ld\n", r.who, READ_ONCE(*r.got));
}

static int __init s390_seed_init(void)
{
	show(seed_a_refs);
	show(seed_b_refs);
	/* An exported symbol beside them stays an ordinary relocation. */
	pr_info("s390_seed: exported jiffies at %px\n", &jiffies);
	return 0;
}

static void __exit s390_seed_exit(void)
{
}

module_init(s390_seed_init);
module_exit(s390_seed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-ld bench: two objects, two copies of default_read_file()");
MODULE_INFO(livepatch, "Y");
