# Text sites for klp_ld.arch.ppc64le_text, good and bad, against an undefined 'ext' that stands for a
# livepatch symbol (external: the loader goes through a stub and restore_r2). Each function is one
# case; the tests find a case's sites by its symbol. Sites gas would not emit are written with .reloc
# on hand-encoded words (.long), so the bytes are exactly what the case says.
	.abiversion 2
	.section .text.sites,"ax",@progbits

	.macro case name
	.globl \name
	.type \name,@function
	.balign 4
\name:
	.endm
	.macro end name
	.size \name,.-\name
	.endm

# bl + nop, as gcc calls an external function: correct
	case call_ok
	mflr 0
	std 0,16(1)
	stdu 1,-32(1)
	bl ext
	nop
	addi 1,1,32
	ld 0,16(1)
	mtlr 0
	blr
	end call_ok

# bl with something else after it: restore_r2 refuses ("Expected nop after call")
	case call_no_nop
	bl ext
	addi 3,3,1
	blr
	end call_no_nop

# bl whose nop is already the TOC restore: what a second application of the relocation finds
	case call_reloaded
	bl ext
	ld 2,24(1)
	blr
	end call_reloaded

# a sibling call: b without link, no TOC restore possible
	case sibcall
	b ext
	end sibcall

# bl to ext+8 (the local entry point): the stub would skip the global entry's TOC setup
	case call_addend
	bl ext+8
	nop
	blr
	end call_addend

# REL24 on a non-branch instruction
	case rel24_addi
	.reloc ., R_PPC64_REL24, ext
	addi 3,3,0
	blr
	end rel24_addi

# REL24 two bytes into a bl word
	case rel24_misaligned
	.reloc .+2, R_PPC64_REL24, ext
	.long 0x48000001		# bl .
	nop
	blr
	end rel24_misaligned

# REL24 on a conditional branch (beq .)
	case rel24_bc
	.reloc ., R_PPC64_REL24, ext
	.long 0x41820000
	blr
	end rel24_bc

# REL24 on an absolute branch with link (bla 0)
	case rel24_bla
	.reloc ., R_PPC64_REL24, ext
	.long 0x48000003
	nop
	blr
	end rel24_bla

# REL24 on a word capstone cannot decode
	case rel24_garbage
	.reloc ., R_PPC64_REL24, ext
	.long 0
	blr
	end rel24_garbage

# TOC-relative address of ext itself: right fields (d16 of addis, ds14 of ld)
	case toc_direct
	addis 9,2,ext@toc@ha
	ld 9,ext@toc@l(9)
	blr
	end toc_direct

# TOC16_LO (all 16 bits) on the DS-form ld, TOC16_LO_DS on the D-form addi, TOC16_HA at +2 (big-endian's place)
	case toc_wrong_form
	.reloc ., R_PPC64_TOC16_LO, ext
	ld 9,0(9)
	.reloc ., R_PPC64_TOC16_LO_DS, ext
	addi 9,9,0
	.reloc .+2, R_PPC64_TOC16_HA, ext
	addis 9,2,0
	.reloc ., R_PPC64_TOC16_HA, ext
	mflr 0
	blr
	end toc_wrong_form

# ADDR64 over two instructions
	case addr64_over_code
	.reloc ., R_PPC64_ADDR64, ext
	nop
	nop
	blr
	end addr64_over_code

# an address word between functions (zero bytes, as .quad leaves a RELA field)
	.balign 8
data_in_text:
	.quad ext

# bl as the very last word of its section: no room for the nop
	.section .text.tail,"ax",@progbits
	.globl tail_call
	.type tail_call,@function
tail_call:
	bl ext
	.size tail_call,.-tail_call
