/* What a livepatch module's .mod.o and MODULE_INFO(livepatch, "Y") contribute. */
static const char modinfo_livepatch[] __attribute__((section(".modinfo"), used, aligned(1))) = "livepatch=Y";
static const char modinfo_name[] __attribute__((section(".modinfo"), used, aligned(1))) = "name=klp_s390";
