# Data relocation sites: well-formed kernel tables, a packed 6.12 .altinstructions, and misaligned
# fields that are errors in a kernel table but only warnings in ordinary data.
# Built at test time with: gcc -c data.s -o data.o

	.section __jump_table,"aw"
	.balign 8
	.long code - .			# 0: PC32 code
	.long target - .		# 4: PC32 target
	.quad key + 2 - .		# 8: PC64 key, flags in the low bits
	.byte 0				# 16: a stray byte shifts the next entry
	.long code - .			# 17: misaligned PC32: error

	.section __ex_table,"a"
	.balign 4
	.long insn - .			# 0
	.long fixup - .			# 4
	.long 0				# 8: type/data, no relocation

	.section .altinstructions,"a"
	.long orig - .			# 0
	.long repl - .			# 4
	.short 0x1234			# 8: feature
	.byte 5, 5			# 10: lengths; the 6.12 entry is 12 + 2 = 14 bytes, packed
	.short 0			# 12
	.long orig - .			# 14: 2 mod 4, allowed here
	.long repl - .			# 18
	.byte 0
	.long orig - .			# 23: odd: error even for .altinstructions

	.section __mcount_loc,"a"
	.quad fentry_site		# 0
	.long 0
	.quad fentry_site		# 12: 4 mod 8: error

	.data
	.balign 8
	.quad ptr			# 0
	.byte 0
	.quad ptr			# 9: packed struct: warning only

	.section .debug_info,"",@progbits
	.byte 0
	.long sym			# 1: DWARF is unaligned by design: no remark
