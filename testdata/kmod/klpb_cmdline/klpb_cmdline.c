// SPDX-License-Identifier: GPL-2.0
/*
 * klp-ld bench: the smallest livepatch that shows it works from user space.
 *
 * It replaces cmdline_proc_show(), the function behind /proc/cmdline, so `cat /proc/cmdline` in the guest
 * prints KLPB_CMDLINE_TEXT while the patch is enabled and the real command line once it is disabled.
 * The replacement calls only exported functions, so the module needs no klp relocation: linked through
 * klp-ld it must come out exactly as a plain `ld` would make it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

/* tests/kernel/test_bench.py expects this exact line. */
#define KLPB_CMDLINE_TEXT "klp-ld bench: cmdline_proc_show is patched"

static int klpb_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, KLPB_CMDLINE_TEXT "\n");
	return 0;
}

static struct klp_func klpb_cmdline_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = klpb_cmdline_proc_show,
	},
	{ }
};

/* An object without a name is vmlinux. */
static struct klp_object klpb_cmdline_objs[] = {
	{
		.funcs = klpb_cmdline_funcs,
	},
	{ }
};

static struct klp_patch klpb_cmdline_patch = {
	.mod = THIS_MODULE,
	.objs = klpb_cmdline_objs,
};

static int __init klpb_cmdline_init(void)
{
	return klp_enable_patch(&klpb_cmdline_patch);
}

/* Runs only after the patch was disabled through sysfs: an enabled livepatch cannot be removed. */
static void __exit klpb_cmdline_exit(void)
{
}

module_init(klpb_cmdline_init);
module_exit(klpb_cmdline_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-ld bench: livepatch replacing cmdline_proc_show");
MODULE_INFO(livepatch, "Y");
