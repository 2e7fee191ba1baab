static int state_show(void) { return 20; }
int (*c_state_show)(void) = state_show;
static int state_show_fn(void) __asm__("state_show_c");
static int state_show_fn(void) { return 21; }
int (*c_fn)(void) = state_show_fn;
