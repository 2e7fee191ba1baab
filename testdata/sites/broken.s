# Relocation sites the checker must reject although gas accepts them.  Other broken sites are made in
# the tests by moving or retyping the good relocations of encodings.s.
# Built at test time with: gcc -c broken.s -o broken.o

	.text

# enqcmds (f3 0f 38 f8 /r), which capstone 5 cannot decode: the sweep stops, the call after it is
# unverifiable, but the lea before it is fine
	.globl broken_enqcmds
	.type broken_enqcmds, @function
broken_enqcmds:
	lea var(%rip), %rsi
	.byte 0xf3, 0x0f, 0x38, 0xf8, 0x07
	call ext_func
	ret
	.size broken_enqcmds, .-broken_enqcmds

# a relocation inside a 7-byte NOP: capstone reports a disp32 there, which must not count
	.p2align 4
	.globl broken_nop_reloc
	.type broken_nop_reloc, @function
broken_nop_reloc:
	.reloc 1f+3, R_X86_64_PC32, var-4
1:	.byte 0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00
	ret
	.size broken_nop_reloc, .-broken_nop_reloc

# st_size 9 cuts the call (7..11) in two: the instruction crosses the function's end
	.p2align 4
	.globl broken_short_size
	.type broken_short_size, @function
broken_short_size:
	mov var(%rip), %rax
	call ext_func
	ret
	.size broken_short_size, 9

# `call fn+0x10` with a named function: the branch does not land on the symbol
	.p2align 4
	.globl broken_call_offset
	.type broken_call_offset, @function
broken_call_offset:
	call ext_func+0x10
	ret
	.size broken_call_offset, .-broken_call_offset
