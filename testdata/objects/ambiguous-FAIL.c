/* An unannotated reference to a name vmlinux has several copies of. */
extern int state_show(void);
int ambiguous_call(void) { return state_show(); }
