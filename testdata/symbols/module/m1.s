	.file	"m1.c"
	.section	.text.x,"ax",@progbits
pad:
	.zero	64
	.type	state_show, @function
state_show:
	ret
	.section	.modinfo,"a",@progbits
__UNIQUE_ID_name1:
	.asciz	"name=fake_mod"
__UNIQUE_ID_vermagic2:
	.asciz	"vermagic=6.1.0-test SMP preempt mod_unload modversions "
dup_meta:
	.asciz	"license=GPL"
	.section	.data..percpu,"aw",@progbits
pcpu_counter:
	.quad	0
