# Every instruction encoding a kernel object uses to refer to a symbol, one instruction per function,
# so a site's offset inside its function is the field offset.  Functions are 16-byte aligned: gas pads
# the gaps with multi-byte NOPs, as gcc's -falign-functions does.
# Built at test time with: gcc -c encodings.s -o encodings.o

	.macro FUNC name
	.p2align 4
	.globl \name
	.type \name, @function
\name:
	.endm

	.macro ENDF name
	ret
	.size \name, .-\name
	.endm

	.text

# --- branches: rel32 is the immediate; PLT32 for a plain symbol, PC32 once an offset appears
FUNC case_call_plt
	call ext_func
ENDF case_call_plt

FUNC case_jmp_plt
	jmp ext_func
ENDF case_jmp_plt

FUNC case_jcc_plt
	jne ext_func
ENDF case_jcc_plt

FUNC case_tail_thunk
	jmp __x86_return_thunk
ENDF case_tail_thunk

# a call to a static function in its own section: PC32/PLT32 against the section symbol + 0x10 - 4
FUNC case_call_static
	call static_fn
ENDF case_call_static

# retpoline thunk call with the cs prefix (-mindirect-branch-cs-prefix): 2e e8, site at +2
FUNC case_retpoline
	.byte 0x2e
	call __x86_indirect_thunk_r10
ENDF case_retpoline

# --- RIP-relative data references: addend = -(bytes from the field to the instruction end)
FUNC case_rip_load
	mov var(%rip), %rax
ENDF case_rip_load

FUNC case_rip_store
	mov %rdx, var(%rip)
ENDF case_rip_store

FUNC case_rip_lea
	lea var(%rip), %rdi
ENDF case_rip_lea

FUNC case_rip_movb_imm8
	movb $1, var(%rip)
ENDF case_rip_movb_imm8

FUNC case_rip_cmpl_imm8
	cmpl $5, var(%rip)
ENDF case_rip_cmpl_imm8

FUNC case_rip_addl_imm8
	addl $1, var(%rip)
ENDF case_rip_addl_imm8

FUNC case_rip_imm16
	movw $0x1234, var(%rip)
ENDF case_rip_imm16

FUNC case_rip_movl_imm32
	movl $0x12345678, var(%rip)
ENDF case_rip_movl_imm32

FUNC case_rip_cmpq_imm32
	cmpq $0x1000, var(%rip)
ENDF case_rip_cmpq_imm32

FUNC case_rip_imul_imm32
	imul $1000, var(%rip), %eax
ENDF case_rip_imul_imm32

# two relocations in one instruction: PC32 var-8 on the disp, 32S fn on the imm32
FUNC case_movq_fn_var
	movq $fn, var(%rip)
ENDF case_movq_fn_var

# 16-bit stores: capstone reports disp_size 2 for these disp32 fields
FUNC case_store16
	mov %ax, var(%rip)
ENDF case_store16

FUNC case_store16_r11w
	mov %r11w, var(%rip)
ENDF case_store16_r11w

# a struct field: testb $4, v+3(%rip) -> PC32 v-2, target v+3
FUNC case_field_offset
	testb $4, v+3(%rip)
ENDF case_field_offset

FUNC case_call_indirect
	call *fp(%rip)
ENDF case_call_indirect

FUNC case_lock_inc
	lock incl v(%rip)
ENDF case_lock_inc

# --- absolute fields
FUNC case_mov_imm32s
	mov $sym, %rdi
ENDF case_mov_imm32s

FUNC case_mov_imm32
	mov $sym, %edi
ENDF case_mov_imm32

FUNC case_movabs_imm
	movabs $sym, %rax
ENDF case_movabs_imm

FUNC case_movabs_moffs
	movabs var, %rax
ENDF case_movabs_moffs

FUNC case_sib_abs
	mov sym(,%rdi,8), %rax
ENDF case_sib_abs

FUNC case_base_disp
	add sym(%rdx), %rax
ENDF case_base_disp

FUNC case_switch_table
	jmp *table(,%rax,8)
ENDF case_switch_table

# --- per-cpu accesses
FUNC case_gs_rip_inc
	incq %gs:var(%rip)
ENDF case_gs_rip_inc

FUNC case_gs_rip_load
	mov %gs:var(%rip), %eax
ENDF case_gs_rip_load

FUNC case_gs_rip_imm32
	movl $1, %gs:var(%rip)
ENDF case_gs_rip_imm32

FUNC case_gs_rip_imm16
	movw $1, %gs:var(%rip)
ENDF case_gs_rip_imm16

FUNC case_gs_pcpu_field
	mov %gs:pcpu_hot+8(%rip), %eax
ENDF case_gs_pcpu_field

FUNC case_gs_abs
	mov %gs:sym, %rdx
ENDF case_gs_abs

# --- a hot/cold split: jcc into .text.unlikely, and the cold part jumping back
FUNC case_jcc_cold
	test %edi, %edi
	je .Lcold_part
.Lback:
ENDF case_jcc_cold

	.section .text.unlikely.case_jcc_cold,"ax",@progbits
	.type case_jcc_cold.cold, @function
case_jcc_cold.cold:
.Lcold_part:
	call ext_func
	jmp .Lback
	.size case_jcc_cold.cold, .-case_jcc_cold.cold

# the static callee, 6.12 style: 16 bytes of NOP padding, then the function
	.section .text.static_fn,"ax",@progbits
	.rept 16
	nop
	.endr
	.type static_fn, @function
static_fn:
	ret
	.size static_fn, .-static_fn

	.data
	.globl table
table:	.quad 0
