/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Livepatch symbol annotations understood by klp-ld.
 *
 * Build with:  ccflags-y += -I$(shell klp-ld --klp-print-include-dir)
 *
 * klp-convert's annotation ABI: name which copy of a non-exported kernel
 * symbol this object file means, by position (sympos) among same-named
 * symbols of one object (vmlinux or a module):
 *
 *	extern ssize_t state_show(struct kobject *, struct kobj_attribute *, char *);
 *	KLP_MODULE_RELOC(vmlinux) my_relocs[] = {
 *		KLP_SYMPOS(state_show, 2),
 *	};
 *
 * Position 0 means "the name is unique". Annotations belong to the object
 * file they are in: another object of the same module may mean another copy.
 *
 * SUSE's dialect puts the identity into the symbol's assembler name instead:
 *
 *	extern int foo(void) KLP_RELOC_SYMBOL_POS(livepatch_obj, vmlinux, foo, 2);
 *
 * The first object name is the one whose loading applies the relocation,
 * the second the one that owns the symbol.
 */
#ifndef _KLP_LD_H
#define _KLP_LD_H

#ifndef KLP_MODULE_RELOC
#include <linux/types.h>

/* 12 bytes on every architecture; the symbol is named by the relocation on sym. */
struct klp_module_reloc {
	union {
		void *sym;
		__u64 sym64;
	};
	__u32 sympos;
} __attribute__((packed));

#define KLP_MODULE_RELOC(obj)						\
	struct klp_module_reloc						\
	__attribute__((__section__(".klp.module_relocs." #obj), aligned(4), used))

#define KLP_SYMPOS(symbol, pos)		{ .sym = &(symbol), .sympos = (pos) }
#endif /* KLP_MODULE_RELOC */

#ifndef KLP_RELOC_SYMBOL_POS
#define KLP_RELOC_SYMBOL_POS(lp_obj, sym_obj, sym, pos)			\
	asm("\".klp.sym.rela." #lp_obj "." #sym_obj "." #sym "," #pos "\"")
#define KLP_RELOC_SYMBOL(lp_obj, sym_obj, sym)				\
	KLP_RELOC_SYMBOL_POS(lp_obj, sym_obj, sym, 0)
#endif /* KLP_RELOC_SYMBOL_POS */

#endif /* _KLP_LD_H */
