# An object of a module whose final link defines these names itself: .TOC. (the TOC base of the
# global entry prologue) and an out-of-line register save helper (ld --save-restore-funcs).
	.abiversion 2
	.text
	.globl	f
	.type	f, @function
f:
	addis	2, 12, .TOC.-f@ha
	addi	2, 2, .TOC.-f@l
	.localentry f, .-f
	mflr	0
	bl	_savegpr0_14
	nop
	bl	cmdline_proc_show
	nop
	blr
	.size	f, .-f
