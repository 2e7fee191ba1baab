/* Each object reports the addresses it sees, one way per relocation. */
struct seed_refs {
	const char *who;
	void (*call)(void);		/* calls default_read_file: bl, R_AARCH64_CALL26 */
	long *got;			/* what that call returned */
	unsigned long (*addr)(void);	/* &default_read_file: adrp + add */
	unsigned long (*load)(void);	/* its first 8 bytes: adrp + ldr */
	unsigned long data;		/* a pointer in data (.data): R_AARCH64_ABS64 */
};

void seed_a_refs(struct seed_refs *r);
void seed_b_refs(struct seed_refs *r);
