// SPDX-License-Identifier: GPL-2.0
/* Object a means the copy of default_read_file() at position 1 in vmlinux (fs/debugfs/file.c's), in
 * SUSE's dialect. */
#include <linux/compiler.h>
#include <linux/types.h>
#include <klp-ld.h>
#include "suse.h"

struct file;
extern ssize_t default_read_file(struct file *file, char __user *buf, size_t count, loff_t *ppos)
	KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, default_read_file, 1);

/* Not static: gcc would move a pointer it sees is never written to .data.rel.ro. */
ssize_t (*suse_a_ptr)(struct file *, char __user *, size_t, loff_t *) = default_read_file;
long suse_a_got = -1;

/* A brasl (the store after it keeps gcc from making it a tail call, jg). Never inlined:
 * suse_main.c reads this function's code. */
static noinline void suse_a_call(void)
{
	WRITE_ONCE(suse_a_got, default_read_file(NULL, NULL, 0, NULL));
}

static noinline unsigned long suse_a_addr(void)
{
	return (unsigned long)default_read_file;
}

/* The function's first 8 bytes, as an object of the same assembler name: -fPIC code reads an extern
 * object through its GOT slot (lgrl %r1,default_read_file@GOTENT; lg %r2,0(%r1)). */
extern const unsigned long suse_a_word
	KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, default_read_file, 1);

static noinline unsigned long suse_a_load(void)
{
	return suse_a_word;
}

void suse_a_refs(struct suse_refs *r)
{
	r->who = "a";
	r->call = suse_a_call;
	r->got = &suse_a_got;
	r->addr = suse_a_addr;
	r->load = suse_a_load;
	r->data = (unsigned long)READ_ONCE(suse_a_ptr);
}
