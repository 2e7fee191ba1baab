__attribute__((section(".text.unlikely"))) static int state_show(void) { return 10; }
int (*b_state_show)(void) = state_show;
static int uncond = 48012;
int *b_uncond = &uncond;
