// SPDX-License-Identifier: GPL-2.0
/*
 * klp-ld bench: a livepatch that is wrong on purpose.
 *
 * Its replacement of cmdline_proc_show() reads saved_command_line, which vmlinux does not export, and
 * nothing turns that reference into a klp relocation. The loader must refuse the module with
 * "klpb_unknown: Unknown symbol saved_command_line"; the bench test checks that it sees this failure.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static int klpb_unknown_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s\n", saved_command_line);
	return 0;
}

static struct klp_func klpb_unknown_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = klpb_unknown_proc_show,
	},
	{ }
};

static struct klp_object klpb_unknown_objs[] = {
	{
		.funcs = klpb_unknown_funcs,
	},
	{ }
};

static struct klp_patch klpb_unknown_patch = {
	.mod = THIS_MODULE,
	.objs = klpb_unknown_objs,
};

static int __init klpb_unknown_init(void)
{
	return klp_enable_patch(&klpb_unknown_patch);
}

static void __exit klpb_unknown_exit(void)
{
}

module_init(klpb_unknown_init);
module_exit(klpb_unknown_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-ld bench: livepatch with an unresolvable reference");
MODULE_INFO(livepatch, "Y");
