// SPDX-License-Identifier: GPL-2.0
/*
 * Prints what each object's relocations resolved to, for the test to compare with kallsyms.
 *
 * The call is judged by what the loader made of it: the first bl in the object's caller (its
 * patchable entry holds no bl: ftrace leaves an untraced function's as nops) branches either to the
 * callee or, out of direct range, to a PLT entry in the module's .plt (arch/arm64/kernel/module-plts.c:
 * adrp x16; add x16, x16, :lo12:; br x16), whose destination is decoded. Then the caller runs, through
 * it, into default_read_file(), which returns 0. The load (adrp + ldr) is compared with the first 8
 * bytes at the address the data pointer gives.
 */
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/types.h>
#include "seed.h"

#define BL_MASK		0xfc000000
#define BL		0x94000000
#define ADRP_X16_MASK	0x9f00001f
#define ADRP_X16	0x90000010
#define ADD_X16_MASK	0xffc003ff	/* add x16, x16, #imm12 (64-bit, no shift) */
#define ADD_X16		0x91000210
#define BR_X16		0xd61f0200

static long sign_extend(unsigned long value, int bits)
{
	return (long)(value << (64 - bits)) >> (64 - bits);
}

/* Where the first bl in fn ends up; *plt tells whether through a PLT entry (0: no bl found). */
static unsigned long call_target(void (*fn)(void), int *plt)
{
	const u32 *insn = (const u32 *)fn;
	const u32 *dest;
	unsigned long page, imm;
	int i;

	*plt = 0;
	for (i = 0; i < 64; i++) {
		if ((insn[i] & BL_MASK) != BL)
			continue;
		dest = &insn[i] + sign_extend(insn[i] & 0x03ffffff, 26);
		if ((dest[0] & ADRP_X16_MASK) != ADRP_X16 || (dest[1] & ADD_X16_MASK) != ADD_X16 ||
		    dest[2] != BR_X16)
			return (unsigned long)dest;
		*plt = 1;
		imm = ((dest[0] >> 5) & 0x7ffff) << 2 | ((dest[0] >> 29) & 3);
		page = ((unsigned long)dest & ~0xfffUL) + (sign_extend(imm, 21) << 12);
		return page + ((dest[1] >> 10) & 0xfff);
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
	pr_info("arm64_seed: %s call=%lx plt=%d adrp=%lx data=%lx ldr=%lx peek=%lx\n", r.who, target, plt,
		r.addr(), r.data, r.load(), READ_ONCE(*(const unsigned long *)r.data));
	r.call();
	pr_info("arm64_seed: %s called, got %ld\n", r.who, READ_ONCE(*r.got));
}

static int __init arm64_seed_init(void)
{
	show(seed_a_refs);
	show(seed_b_refs);
	/* An exported symbol beside them stays an ordinary relocation. */
	pr_info("arm64_seed: exported jiffies at %px\n", &jiffies);
	return 0;
}

static void __exit arm64_seed_exit(void)
{
}

module_init(arm64_seed_init);
module_exit(arm64_seed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-ld bench: two objects, two copies of default_read_file()");
MODULE_INFO(livepatch, "Y");
