// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

int k612_noreturn_next(int x);

static int __init k612_noreturn_init(void)
{
	pr_info("k612_noreturn: %d\n", k612_noreturn_next(41));
	return 0;
}

static void __exit k612_noreturn_exit(void)
{
}

module_init(k612_noreturn_init);
module_exit(k612_noreturn_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
