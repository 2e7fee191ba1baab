/* Each object reports the addresses it sees, one way per relocation. */
struct suse_refs {
	const char *who;
	void (*call)(void);		/* calls default_read_file: brasl, R_390_PLT32DBL */
	long *got;			/* what that call returned */
	unsigned long (*addr)(void);	/* &default_read_file: lgrl of its GOT slot, R_390_GOTENT */
	unsigned long (*load)(void);	/* its first 8 bytes: lgrl of the GOT slot, then lg */
	unsigned long data;		/* a pointer in data (.data): R_390_64 */
};

void suse_a_refs(struct suse_refs *r);
void suse_b_refs(struct suse_refs *r);
