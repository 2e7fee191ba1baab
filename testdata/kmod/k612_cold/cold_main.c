// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

void k612_cold_call(int why);

static int __init k612_cold_init(void)
{
	k612_cold_call(0);
	pr_info("k612_cold: loaded\n");
	return 0;
}

static void __exit k612_cold_exit(void)
{
}

module_init(k612_cold_init);
module_exit(k612_cold_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
