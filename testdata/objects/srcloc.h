/* An inline function whose site is in this header: its note names srcloc.h, not srcloc.c. */
static inline long srcloc_inline(void)
{
	long v;

	asm volatile("lea state_show(%%rip), %0" : "=r"(v));	/* site: srcloc_inline */
	return v;
}
