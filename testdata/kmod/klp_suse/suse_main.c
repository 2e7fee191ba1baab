// SPDX-License-Identifier: GPL-2.0
/* Prints what each object's relocations resolved to, for the test to compare with kallsyms. */
#include <linux/module.h>
#include "suse.h"

static void show(void (*fill)(struct suse_refs *))
{
	struct suse_refs r;

	fill(&r);
	pr_info("klp_suse: %s pc32=%lx abs32s=%lx abs64=%lx\n", r.who, r.pc32, r.abs32s, r.abs64);
}

static int __init klp_suse_init(void)
{
	show(suse_a_refs);
	show(suse_b_refs);
	return 0;
}

static void __exit klp_suse_exit(void)
{
}

module_init(klp_suse_init);
module_exit(klp_suse_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-ld bench: SUSE's KLP_RELOC_SYMBOL_POS in two objects");
MODULE_INFO(livepatch, "Y");
