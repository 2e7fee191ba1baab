// SPDX-License-Identifier: GPL-2.0
/* Replace cmdline_proc_show() with one that reads saved_command_line itself. */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>
#include <klp-ld.h>

extern char *saved_command_line;

KLP_MODULE_RELOC(vmlinux) klp_func_relocs[] = {
	KLP_SYMPOS(saved_command_line, 0),
};

static int klp_func_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s [klp_func]\n", saved_command_line);
	return 0;
}

static struct klp_func funcs[] = {
	{ .old_name = "cmdline_proc_show", .new_func = klp_func_cmdline_proc_show },
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

static int __init klp_func_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit klp_func_exit(void)
{
}

module_init(klp_func_init);
module_exit(klp_func_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
