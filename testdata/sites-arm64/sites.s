// Text sites for klp_ld.arch.arm64_text, good and bad, against an undefined 'ext' that stands for a
// livepatch symbol. Each function is one case; the tests find a case's sites by its symbol. Sites gas
// would not emit are written with .reloc, on real instructions or on hand-encoded words (.inst), so the
// bytes are exactly what the case says.
	.section .text.sites,"ax",@progbits

	.macro case name
	.globl \name
	.type \name,%function
	.balign 4
\name:
	.endm
	.macro end name
	.size \name,.-\name
	.endm

// --- what gcc emits: each must pass -------------------------------------------------------------

// a call (bl, R_AARCH64_CALL26) and a tail call (b, R_AARCH64_JUMP26)
	case call_ok
	stp x29, x30, [sp, #-16]!
	bl ext
	ldp x29, x30, [sp], #16
	b ext
	end call_ok

// the address of ext, and loads of it with every access size, with addends that keep the scale
	case data_ok
	adrp x0, ext
	add x0, x0, :lo12:ext
	adrp x1, ext+16
	ldr x1, [x1, :lo12:ext+16]
	ldrb w2, [x1, :lo12:ext+1]
	ldrsh w3, [x1, :lo12:ext+2]
	str w3, [x1, :lo12:ext+4]
	ldr q0, [x1, :lo12:ext]
	prfm pldl1keep, [x1, :lo12:ext+8]
	ret
	end data_ok

// -mcmodel=large: the whole address in four move-wide instructions; and a PC-relative pair
	case movw_ok
	movz x0, #:abs_g3:ext
	movk x0, #:abs_g2_nc:ext
	movk x0, #:abs_g1_nc:ext
	movk x0, #:abs_g0_nc:ext
	movz x1, #:prel_g1:ext
	movk x1, #:prel_g0_nc:ext
	ret
	end movw_ok

// short PC-relative forms: right fields (the loader rule refuses the types themselves)
	case short_ok
	b.eq ext
	cbz x0, ext
	tbz x0, #3, ext
	ldr x0, ext
	adr x0, ext
	ret
	end short_ok

// --- branches ------------------------------------------------------------------------------------

// bl to ext+8: past the landing pad a PLT entry must reach
	case call_addend
	bl ext+8
	ret
	end call_addend

// CALL26 on a b, JUMP26 on a bl: the loader treats both alike (warnings)
	case branch_swapped
	.reloc ., R_AARCH64_CALL26, ext
	b .
	.reloc ., R_AARCH64_JUMP26, ext
	bl .
	ret
	end branch_swapped

// CALL26 on an add, two bytes into a bl, and on a word capstone cannot decode
	case call_wrong
	.reloc ., R_AARCH64_CALL26, ext
	add x0, x0, #1
	.reloc .+2, R_AARCH64_CALL26, ext
	bl .
	.reloc ., R_AARCH64_CALL26, ext
	.inst 0xffffffff
	ret
	end call_wrong

// --- adrp and :lo12: -----------------------------------------------------------------------------

// the page on an adr, and on an add
	case page_wrong
	.reloc ., R_AARCH64_ADR_PREL_PG_HI21, ext
	adr x0, .
	.reloc ., R_AARCH64_ADR_PREL_PG_HI21, ext
	add x0, x0, #0
	ret
	end page_wrong

// :lo12: of the wrong scale, on the wrong add, with a misaligned addend
	case lo12_wrong
	.reloc ., R_AARCH64_LDST64_ABS_LO12_NC, ext
	ldr w0, [x0]
	.reloc ., R_AARCH64_ADD_ABS_LO12_NC, ext
	ldr x0, [x0]
	.reloc ., R_AARCH64_LDST64_ABS_LO12_NC, ext
	add x0, x0, #0
	.reloc ., R_AARCH64_ADD_ABS_LO12_NC, ext
	add w0, w0, #0
	.reloc ., R_AARCH64_ADD_ABS_LO12_NC, ext
	add x0, x0, #0, lsl #12
	.reloc ., R_AARCH64_LDST64_ABS_LO12_NC, ext+4
	ldr x0, [x0]
	.reloc ., R_AARCH64_ADD_ABS_LO12_NC, ext
	ldur x0, [x0, #-8]
	ret
	end lo12_wrong

// the byte forms the loader applies alike: LDST8 on an add, ADD on a ldrb (warnings)
	case lo12_alike
	.reloc ., R_AARCH64_LDST8_ABS_LO12_NC, ext
	add x0, x0, #0
	.reloc ., R_AARCH64_ADD_ABS_LO12_NC, ext
	ldrb w0, [x0]
	ret
	end lo12_alike

// --- move wide -----------------------------------------------------------------------------------

// group 2 on a lsl #16, a signed group on a movk, an unsigned one on a movn, a w register
	case movw_wrong
	.reloc ., R_AARCH64_MOVW_UABS_G2_NC, ext
	movk x0, #0, lsl #16
	.reloc ., R_AARCH64_MOVW_PREL_G1, ext
	movk x0, #0, lsl #16
	.reloc ., R_AARCH64_MOVW_UABS_G3, ext
	movn x0, #0, lsl #48
	.reloc ., R_AARCH64_MOVW_UABS_G0_NC, ext
	movk w0, #0
	ret
	end movw_wrong

// --- short forms and data ------------------------------------------------------------------------

// CONDBR19 on a nop, TSTBR14 on a cbz, LD_PREL_LO19 on a ldr with a register base
	case short_wrong
	.reloc ., R_AARCH64_CONDBR19, ext
	nop
	.reloc ., R_AARCH64_TSTBR14, ext
	cbz x0, .
	.reloc ., R_AARCH64_LD_PREL_LO19, ext
	ldr x0, [x0]
	ret
	end short_wrong

// ABS64 over two instructions
	case abs64_over_code
	.reloc ., R_AARCH64_ABS64, ext
	nop
	nop
	ret
	end abs64_over_code

// an address word between functions (zero bytes, as .quad leaves a RELA field)
	.balign 8
data_in_text:
	.quad ext
