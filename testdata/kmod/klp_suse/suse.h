/* Each object reports the addresses it sees, one way per relocation type. */
struct suse_refs {
	const char *who;
	unsigned long pc32;	/* lea sym(%rip): R_X86_64_PC32 */
	unsigned long abs32s;	/* mov $sym, %reg: R_X86_64_32S */
	unsigned long abs64;	/* .data pointer: R_X86_64_64 */
};

void suse_a_refs(struct suse_refs *r);
void suse_b_refs(struct suse_refs *r);
