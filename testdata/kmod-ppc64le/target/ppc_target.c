// SPDX-License-Identifier: GPL-2.0
/*
 * The target of the late patch: /sys/module/ppc_target/parameters/value shows target_value(arg), which
 * the patch replaces. target_secret() and target_base are static: the patch reaches them through
 * relocations that only this module's loading can resolve.
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

static int arg = 7;
module_param(arg, int, 0644);
static int target_base = 20;
module_param(target_base, int, 0644);
static int target_step = 1;
module_param(target_step, int, 0444);

/*
 * Not called here: only the patch calls it (__used keeps it, with its name, in the module). It reads
 * target_step through this module's TOC, so it starts by computing its TOC pointer from r12: a caller
 * from another module must enter it at this global entry point, as the loader's stub does.
 */
static noinline __used int target_secret(int x)
{
	return 3 * x + READ_ONCE(target_step);
}

/* What the patch replaces: its own symbol, with an ftrace call site (no clone of it may appear). */
static noinline int target_value(int x)
{
	return x + READ_ONCE(target_base);
}

static int value_get(char *buffer, const struct kernel_param *kp)
{
	return sprintf(buffer, "%d\n", target_value(READ_ONCE(arg)));
}

static const struct kernel_param_ops value_ops = {
	.get = value_get,
};
module_param_cb(value, &value_ops, NULL, 0444);

static int __init ppc_target_init(void)
{
	pr_info("ppc_target: value=%d\n", target_value(arg));
	return 0;
}

static void __exit ppc_target_exit(void)
{
}

module_init(ppc_target_init);
module_exit(ppc_target_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-ld bench: the module the late patch patches");
