// SPDX-License-Identifier: GPL-2.0
/* Replace ppc_target's target_value(x): 10000 + 100 * target_secret(x) + target_base. */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <klp-ld.h>

extern int target_secret(int x);
extern int target_base;

KLP_MODULE_RELOC(ppc_target) ppc_late_relocs[] = {
	KLP_SYMPOS(target_secret, 0),
	KLP_SYMPOS(target_base, 0),
};

static int ppc_late_target_value(int x)
{
	return 10000 + 100 * target_secret(x) + READ_ONCE(target_base);
}

static struct klp_func funcs[] = {
	{ .old_name = "target_value", .new_func = ppc_late_target_value },
	{ }
};

static struct klp_object objs[] = {
	{ .name = "ppc_target", .funcs = funcs },
	{ }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init ppc_late_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit ppc_late_exit(void)
{
}

module_init(ppc_late_init);
module_exit(ppc_late_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-ld bench: late patching of ppc_target");
MODULE_INFO(livepatch, "Y");
