# An annotation whose pointer field is a 32-bit relocation.
	.section .klp.module_relocs.vmlinux,"aw"
	.long state_show
	.long 0
	.long 1
	.text
	.globl badreloc_fn
	.type badreloc_fn, @function
badreloc_fn:
	call state_show
	ret
