// SPDX-License-Identifier: GPL-2.0
/* Prints what each object's relocations resolved to, for the test to compare with kallsyms. */
#include <linux/module.h>
#include <linux/jiffies.h>
#include "seed.h"

static void show(void (*fill)(struct seed_refs *))
{
	struct seed_refs r;

	fill(&r);
	pr_info("klp_seed: %s pc32=%lx abs32s=%lx abs64=%lx\n", r.who, r.pc32, r.abs32s, r.abs64);
}

static int __init klp_seed_init(void)
{
	show(seed_a_refs);
	show(seed_b_refs);
	/* An exported symbol beside them stays an ordinary relocation. */
	pr_info("klp_seed: exported jiffies at %px\n", &jiffies);
	return 0;
}

static void __exit klp_seed_exit(void)
{
}

module_init(klp_seed_init);
module_exit(klp_seed_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
