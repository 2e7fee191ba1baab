/* Each object reports the addresses it sees, one way per relocation type. */
struct seed_refs {
	const char *who;
	unsigned long pc32;	/* lea state_show(%rip): R_X86_64_PC32 */
	unsigned long abs32s;	/* mov $state_show, %reg: R_X86_64_32S */
	unsigned long abs64;	/* .data pointer: R_X86_64_64 */
};

void seed_a_refs(struct seed_refs *r);
void seed_b_refs(struct seed_refs *r);
