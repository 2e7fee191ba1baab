// SPDX-License-Identifier: GPL-2.0
/* Replace cmdline_proc_show() (/proc/cmdline) with one that prints a mark and then what the kernel's own
 * static version_proc_show() (/proc/version) prints. */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <klp-ld.h>

/* The test expects this exact text before the kernel's version line. */
#define PPC_FUNC_MARK "ppc_func: "

extern int version_proc_show(struct seq_file *m, void *v);

KLP_MODULE_RELOC(vmlinux) ppc_func_relocs[] = {
	KLP_SYMPOS(version_proc_show, 0),
};

static int ppc_func_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, PPC_FUNC_MARK);
	return version_proc_show(m, v);
}

static struct klp_func funcs[] = {
	{ .old_name = "cmdline_proc_show", .new_func = ppc_func_cmdline_proc_show },
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

static int __init ppc_func_init(void)
{
	return klp_enable_patch(&patch);
}

static void __exit ppc_func_exit(void)
{
}

module_init(ppc_func_init);
module_exit(ppc_func_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-ld bench: a function patch calling a static vmlinux function");
MODULE_INFO(livepatch, "Y");
