// SPDX-License-Identifier: GPL-2.0
/*
 * Prints what each object's relocations resolved to, for the test to compare with kallsyms.
 *
 * The call is judged by what the loader made of it: the first 'bl' in the object's caller that is
 * followed by the TOC restore 'ld r2,24(r1)' (restore_r2 writes it over the nop after a call to a
 * symbol outside the module) branches to a stub in .stubs, whose funcdata (arch/powerpc/kernel/
 * module_64.c: struct ppc64_stub_entry, after seven instruction words and the magic) is the address
 * the stub jumps to. Then the caller runs, through that stub, into do_nothing().
 */
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/types.h>
#include "seed.h"

#define BL_MASK		0xfc000003	/* primary opcode, AA, LK */
#define BL		0x48000001	/* b with LK=1, AA=0 */
#define LD_R2_24_R1	0xe8410018
#define STUB_MAGIC	0x73747562	/* "stub" */
#define STUB_MAGIC_OFF	28
#define STUB_FUNC_OFF	32

static unsigned long call_target(void (*fn)(void))
{
	const u32 *insn = (const u32 *)fn;	/* ELFv2: the global entry point, the function's first word */
	int i;

	for (i = 0; i < 64; i++) {
		long li;
		const u8 *stub;

		if ((insn[i] & BL_MASK) != BL || insn[i + 1] != LD_R2_24_R1)
			continue;
		li = insn[i] & 0x03fffffc;
		if (li & 0x02000000)
			li -= 0x04000000;
		stub = (const u8 *)&insn[i] + li;
		if (*(const u32 *)(stub + STUB_MAGIC_OFF) != STUB_MAGIC)
			return 1;	/* a bl with the TOC restore, but not to a stub */
		return *(const unsigned long *)(stub + STUB_FUNC_OFF);
	}
	return 0;	/* no relocated call found */
}

static void show(void (*fill)(struct seed_refs *))
{
	struct seed_refs r;

	fill(&r);
	pr_info("ppc_seed: %s call=%lx toc=%lx data=%lx\n", r.who, call_target(r.call), r.toc, r.data);
	r.call();
	pr_info("ppc_seed: %s called\n", r.who);
}

static int __init ppc_seed_init(void)
{
	show(seed_a_refs);
	show(seed_b_refs);
	/* An exported symbol beside them stays an ordinary relocation. */
	pr_info("ppc_seed: exported jiffies at %px\n", &jiffies);
	return 0;
}

static void __exit ppc_seed_exit(void)
{
}

module_init(ppc_seed_init);
module_exit(ppc_seed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-ld bench: two objects, two copies of do_nothing()");
MODULE_INFO(livepatch, "Y");
