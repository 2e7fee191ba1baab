// SPDX-License-Identifier: GPL-2.0
/* Replace dummy's dummy_get_stats64(): rx_packets reports 4200 + numdummies. */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/netdevice.h>
#include <klp-ld.h>

extern int numdummies;

KLP_MODULE_RELOC(dummy) klp_late_relocs[] = {
	KLP_SYMPOS(numdummies, 0),
};

static void klp_late_get_stats64(struct net_device *dev, struct rtnl_link_stats64 *stats)
{
	stats->rx_packets = 4200 + numdummies;
}

static struct klp_func funcs[] = {
	{ .old_name = "dummy_get_stats64", .new_func = klp_late_get_stats64 },
	{ }
};

static struct klp_object objs[] = {
	{ .name = "dummy", .funcs = funcs },
	{ }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init klp_late_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit klp_late_exit(void)
{
}

module_init(klp_late_init);
module_exit(klp_late_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
