/* A variable counts like a function: the kernel ignores the symbol type. It links first but
   lands above every function, so .symtab order is not address order. */
static int state_show = 1;
int *a_state_show = &state_show;

/* Compiler-made names, spelled with asm labels. */
static int isra(void) __asm__("foo.isra.0");
static int isra(void) { return 2; }
static int cold(void) __asm__("foo.cold");
static int cold(void) { return 3; }
int (*a_isra)(void) = isra;
int (*a_cold)(void) = cold;

int unique_global(void) { return 4; }
