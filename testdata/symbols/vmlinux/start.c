/* Entry point and symbols that kallsyms leaves out. */
__asm__(".globl abs_symbol\n.set abs_symbol, 0x1234\n");
const char __kstrtab_exported_fn[] = "exported_fn";
void exported_fn(void) {}
void (*const __ksymtab_exported_fn)(void) = exported_fn;
void _start(void) { for (;;) {} }
