# Text sites for klp_ld.arch.s390x_text, good and bad, against an undefined 'ext' that stands for a
# livepatch symbol. Each function is one case; the tests find a case's sites by its symbol. Sites gas
# would not emit are written with .reloc on real instructions (whose own operand is `.`, so gas leaves
# the field zero and emits nothing for it) or on hand-encoded bytes, so the bytes are exactly what the
# case says. Functions are 8-aligned: gas pads code with 2-byte `nopr %r7` (07 07).
	.section .text.sites,"ax",@progbits

	.macro case name
	.globl \name
	.type \name,@function
	.balign 8
\name:
	.endm
	.macro end name
	.size \name,.-\name
	.endm

# --- what gcc emits: each must pass ---------------------------------------------------------------

# a call (brasl, R_390_PLT32DBL) and a tail call (jg = brcl 15), both ext+2
	case call_ok
	stmg %r14,%r15,112(%r15)
	brasl %r14,ext@PLT
	lmg %r14,%r15,112(%r15)
	jg ext@PLT
	end call_ok

# the address of ext read from its GOT slot (lgrl), and the slot's address (larl): R_390_GOTENT; and
# R_390_GOTPLTENT on an lgrl (gas has no @GOTPLTENT operand: written with .reloc)
	case got_ok
	lgrl %r1,ext@GOTENT
	larl %r2,ext@GOTENT
	.reloc .+2, R_390_GOTPLTENT, ext+2
	lgrl %r3,.
	br %r14
	end got_ok

# a call after nopr padding inside the function: stepping from the start goes through it
	case padded_call
	lgr %r1,%r2
	.balign 16
	brasl %r14,ext@PLT
	br %r14
	end padded_call

# --- wrong instructions, places and addends -------------------------------------------------------

# PLT32DBL on an lgrl and on a brcl with mask 0 (the `jgnop` of -mnop-mcount); an odd addend; a
# call to ext+8 (addend 10)
	case plt_wrong
	.reloc .+2, R_390_PLT32DBL, ext+2
	lgrl %r1,.
	.reloc .+2, R_390_PLT32DBL, ext+2
	brcl 0,.
	.reloc .+2, R_390_PLT32DBL, ext+3
	brasl %r14,.
	brasl %r14,ext@PLT+8
	br %r14
	end plt_wrong

# GOTENT on a brasl and on an lrl (a 32-bit load of the 64-bit slot); an lgrl of ext@GOTENT+8
	case got_wrong
	.reloc .+2, R_390_GOTENT, ext+2
	brasl %r14,.
	.reloc .+2, R_390_GOTENT, ext+2
	lrl %r1,.
	lgrl %r1,ext@GOTENT+8
	br %r14
	end got_wrong

# a DBL type on instructions without a relative 32-bit operand: a 6-byte RXY (lay), a RIL whose
# immediate is not relative (lgfi), a 4-byte RRE (lgr)
	case not_ril
	.reloc .+2, R_390_PLT32DBL, ext+2
	lay %r15,-24(%r15)
	.reloc .+2, R_390_GOTENT, ext+2
	lgfi %r1,0
	.reloc .+2, R_390_PLT32DBL, ext+2
	lgr %r1,%r2
	br %r14
	end not_ril

# a 6-byte instruction capstone cannot decode (opcode c4 0 is unassigned)
	case undecodable
	.reloc .+2, R_390_PLT32DBL, ext+2
	.byte 0xc4,0x00,0x00,0x00,0x00,0x00
	br %r14
	end undecodable

# --- data in code ---------------------------------------------------------------------------------

# R_390_64 over two instructions
	case abs64_over_code
	.reloc ., R_390_64, ext
	lgr %r1,%r2
	lgr %r3,%r4
	br %r14
	end abs64_over_code

# an address word between functions (zero bytes, as .quad leaves a RELA field)
	.balign 8
	.quad ext

# --- code no FUNC symbol covers -------------------------------------------------------------------

# a function that ends off the 32-byte grid, then nopr padding and code without a symbol: stepping
# to its sites starts at the end of before_gap
	case before_gap
	lgr %r2,%r3
	lgr %r3,%r4
	br %r14
	end before_gap
	.balign 32
	lay %r15,-8(%r15)
	brasl %r14,ext@PLT
	jg ext@PLT
