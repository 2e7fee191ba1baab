// SPDX-License-Identifier: GPL-2.0
/*
 * klp-ld bench: half of a two-object module. The result needs code and data from both objects
 * (a.c -> b.c -> a.c), so a wrong partial link shows up as a wrong number or a module that does not load.
 * With seed=S the module computes S*S + 3*S + multi_bias and publishes it in the read-only parameter
 * `result` and in the kernel log.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

#include "multi.h"

static int seed = 1;
module_param(seed, int, 0444);
MODULE_PARM_DESC(seed, "input of the computation");

static int result;
module_param(result, int, 0444);
MODULE_PARM_DESC(result, "seed*seed + 3*seed + 11, computed across a.o and b.o");

int multi_bias = 11;

int multi_square(int x)
{
	return x * x;
}

static int __init multi_init(void)
{
	result = multi_combine(seed);
	pr_info("seed=%d result=%d\n", seed, result);
	return 0;
}

static void __exit multi_exit(void)
{
	pr_info("unloaded\n");
}

module_init(multi_init);
module_exit(multi_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-ld bench: a module made of two objects");
