	.file	"m2.c"
	.section	.init.text,"ax",@progbits
	.type	state_show, @function
state_show:
	ret
init_only:
	ret
