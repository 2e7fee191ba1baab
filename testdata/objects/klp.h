/* The klp-convert annotation ABI, as a klp-convert v2 source carries it (its own copy). */
struct klp_module_reloc {
	void *sym;
	unsigned int sympos;
} __attribute__((packed));

#define KLP_MODULE_RELOC(obj) \
	struct klp_module_reloc __attribute__((__section__(".klp.module_relocs." #obj), used))
#define KLP_SYMPOS(symbol, pos) { .sym = &(symbol), .sympos = (pos) }
