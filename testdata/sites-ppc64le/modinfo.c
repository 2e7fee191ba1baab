/* What a livepatch module's .mod.o and MODULE_INFO(livepatch, "Y") contribute, with the empty .stubs
 * section <asm/module.h> gives every ppc64 module (module_frob_arch_sections sizes it at load). */
static const char modinfo_livepatch[] __attribute__((section(".modinfo"), used, aligned(1))) = "livepatch=Y";
static const char modinfo_name[] __attribute__((section(".modinfo"), used, aligned(1))) = "name=klp_ppc";
asm(".section .stubs,\"ax\",@nobits; .align 3; .previous");
