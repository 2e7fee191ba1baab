/* Each object reports the addresses it sees, one way per relocation. */
struct seed_refs {
	const char *who;
	void (*call)(void);	/* calls do_nothing: bl + nop, R_PPC64_REL24 through a stub */
	unsigned long toc;	/* &do_nothing in code: a .toc entry, R_PPC64_ADDR64 */
	unsigned long data;	/* a pointer in data (.data.rel): R_PPC64_ADDR64 */
};

void seed_a_refs(struct seed_refs *r);
void seed_b_refs(struct seed_refs *r);
