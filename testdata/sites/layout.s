# Code layouts a sweep must get right: 6.12 function padding (16 x 0x90 before each function, endbr64
# first), objtool's __pfx_ symbols, 6.1's fentry call turned into a NOP with an R_X86_64_NONE relocation,
# code between two functions that has no symbol (kvm.ko), and a section with no FUNC symbol at all
# (.altinstr_replacement).
# Built at test time with: gcc -c layout.s -o layout.o

# 6.12 per-object layout: the FUNC symbol sits after the padding, at +16
	.section .text.pad_a,"ax",@progbits
	.rept 16
	nop
	.endr
	.globl pad_a
	.type pad_a, @function
pad_a:
	endbr64
	call __fentry__
	mov var(%rip), %rax
	cmpl $5, var(%rip)
	jmp __x86_return_thunk
	int3
	.size pad_a, .-pad_a

# the linked 6.12 layout: objtool's __pfx_ FUNC symbol (size 16) covers the padding
	.section .text.pad_b,"ax",@progbits
	.globl __pfx_pad_b
	.type __pfx_pad_b, @function
__pfx_pad_b:
	.rept 16
	nop
	.endr
	.size __pfx_pad_b, 16
	.globl pad_b
	.type pad_b, @function
pad_b:
	endbr64
	call __fentry__
	movq $fn, var(%rip)
	.byte 0x2e
	call __x86_indirect_thunk_r11
	jmp __x86_return_thunk
	int3
	.size pad_b, .-pad_b

# 6.1 layout: objtool turned `call __fentry__` into a 5-byte NOP and its PLT32 into R_X86_64_NONE
	.section .text.fentry_nop,"ax",@progbits
	.globl fentry_nop
	.type fentry_nop, @function
fentry_nop:
	.reloc .+1, R_X86_64_NONE, __fentry__
	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00
	lea var(%rip), %rdi
	jmp __x86_return_thunk
	int3
	.size fentry_nop, .-fentry_nop

# kvm.ko style: a tiny stub with no symbol between two functions; only a gap sweep reaches it
	.section .text.gaps,"ax",@progbits
	.globl gap_before
	.type gap_before, @function
gap_before:
	mov $sym, %rdi
	jmp ext_func
	.size gap_before, .-gap_before
	.p2align 4
	call __fentry__
	jmp __x86_return_thunk
	.p2align 4
	.globl gap_after
	.type gap_after, @function
gap_after:
	call ext_func
	ret
	.size gap_after, .-gap_after

# no FUNC symbol at all: swept from the section start
	.section .altinstr_replacement,"ax",@progbits
	call ext_func
	lea var(%rip), %rax
	jmp ext_func
