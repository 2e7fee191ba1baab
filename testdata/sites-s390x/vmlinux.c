/* A stand-in for an s390x vmlinux with two static state_show(), built at test time from this file twice
 * (-DPART=1, -DPART=2) and linked into a big-endian ET_EXEC with the kernel's text at 1 MiB; its
 * System.map is what `nm -n` says of it, as scripts/mksysmap makes one. Part 1's copy has the lower
 * address: position 1 in kallsyms order. */
#if PART == 1
long jiffies;		/* exported (Module.symvers) */
long saved_count;

void _stext(void)
{
}
#endif

static __attribute__((used)) int state_show(void)
{
	return PART;
}
