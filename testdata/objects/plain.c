/* No annotations: a link of this object must pass through untouched. */
extern int state_show(void);
int plain_call(void) { return state_show() * 2; }
