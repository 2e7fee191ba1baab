// SPDX-License-Identifier: GPL-2.0
/* The klp_patch: replaces cmdline_proc_show() (new body in p5_cmdline.c) and version_proc_show(). */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>
#include "p5.h"

static int p5_version_show(struct seq_file *m, void *v)
{
	seq_printf(m, "p5 %ld %ld\n", p5_state_probe(0), p5_proc_probe());
	return 0;
}

static struct klp_func funcs[] = {
	{ .old_name = "cmdline_proc_show", .new_func = p5_cmdline_show },
	{ .old_name = "version_proc_show", .new_func = p5_version_show },
	{ }
};

static struct klp_object objs[] = {
	{ .funcs = funcs },	/* NULL name: vmlinux */
	{ }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init p5_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit p5_exit(void)
{
}

module_init(p5_init);
module_exit(p5_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
