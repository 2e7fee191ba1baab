// SPDX-License-Identifier: GPL-2.0
/* The replacement cmdline_proc_show(): reads the non-exported saved_command_line (text sites). */
#include <linux/seq_file.h>
#include "klp.h"
#include "p5.h"

extern char *saved_command_line;

KLP_MODULE_RELOC(vmlinux) p5_cmdline_relocs[] = {
	KLP_SYMPOS(saved_command_line, 0),
};

int p5_cmdline_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s [p5]\n", saved_command_line);
	return 0;
}
