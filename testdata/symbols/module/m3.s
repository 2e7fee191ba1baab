	.file	"m3.c"
	.text
	.type	state_show, @function
state_show:
	ret
dup_meta:
	ret
unique_fn:
	ret
	.globl	exported_fn
exported_fn:
	ret
	.globl	init_module
init_module:
	ret
	.globl	cleanup_module
cleanup_module:
	ret
	.section	.gnu.linkonce.this_module,"aw",@progbits
	.globl	__this_module
__this_module:
	.zero	8
	.section	"___ksymtab+exported_fn","a",@progbits
__ksymtab_exported_fn:
	.quad	exported_fn
	.text
	call	printk
