# Names with dots (compiler clones and cold parts) and the other dialects.
	.section .klp.module_relocs.vmlinux,"aw"
	.quad foo.isra.0
	.long 2
	.quad bar.cold
	.long 0
	.text
	.globl dotted_fn
	.type dotted_fn, @function
dotted_fn:
	call foo.isra.0
	lea bar.cold(%rip), %rax
	call ".klp.sym.rela.dummy.dummy.numdummies.0"
	mov ".klp.sym.vmlinux.saved_command_line,0"(%rip), %rax
	ret
	.size dotted_fn, .-dotted_fn
