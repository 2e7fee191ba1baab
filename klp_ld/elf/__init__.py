"""The ELF object model, its reader and its writer."""
