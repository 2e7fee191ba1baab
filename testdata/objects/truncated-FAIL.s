# An annotation record cut short: 8 bytes of pointer, no sympos.
	.section .klp.module_relocs.vmlinux,"aw"
	.quad state_show
	.text
	.globl trunc_fn
	.type trunc_fn, @function
trunc_fn:
	call state_show
	ret
