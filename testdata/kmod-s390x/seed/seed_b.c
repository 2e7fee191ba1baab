// SPDX-License-Identifier: GPL-2.0
/* Object b means the copy of default_read_file() at position 2 in vmlinux (fs/tracefs/inode.c's). */
#include <linux/compiler.h>
#include <linux/types.h>
#include <klp-ld.h>
#include "seed.h"

struct file;
extern ssize_t default_read_file(struct file *file, char __user *buf, size_t count, loff_t *ppos);

KLP_MODULE_RELOC(vmlinux) seed_b_relocs[] = {
	KLP_SYMPOS(default_read_file, 2),
};

/* Not static: gcc would move a pointer it sees is never written to .data.rel.ro. */
ssize_t (*seed_b_ptr)(struct file *, char __user *, size_t, loff_t *) = default_read_file;
long seed_b_got = -1;

/* A brasl (the store after it keeps gcc from making it a tail call, jg). Never inlined:
 * seed_main.c reads this function's code. */
static noinline void seed_b_call(void)
{
	WRITE_ONCE(seed_b_got, default_read_file(NULL, NULL, 0, NULL));
}

static noinline unsigned long seed_b_addr(void)
{
	return (unsigned long)default_read_file;
}

/* The function's first 8 bytes, as an object of the same (assembler) name: -fPIC code reads an extern
 * object through its GOT slot (lgrl %r1,default_read_file@GOTENT; lg %r2,0(%r1)). */
extern const unsigned long seed_b_word __asm__("default_read_file");

static noinline unsigned long seed_b_load(void)
{
	return seed_b_word;
}

void seed_b_refs(struct seed_refs *r)
{
	r->who = "b";
	r->call = seed_b_call;
	r->got = &seed_b_got;
	r->addr = seed_b_addr;
	r->load = seed_b_load;
	r->data = (unsigned long)READ_ONCE(seed_b_ptr);
}
