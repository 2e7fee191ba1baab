"""The target kernel's symbols: where they are, what each file says, and how the kernel counts them.

In the order a link uses them:

- `discover`: which files to read for the target release, and why each (search policy);
- `system`: what this machine says (running release, loaded and installed modules);
- `cache`: parses kept per file, used only for the very bytes they were made from;
- `load`: one file read with bounds, its kind told by `detect`, its compression undone by
  `decompress`, and parsed by `text` (kallsyms, System.map, Symbols.list, Module.symvers) or
  `symtab` (vmlinux, modules), both cut down to what `kallsyms` keeps;
- `tables`: what a parse yields;
- `index`: one table per object, counted the way the loader counts, answering with
  `resolution` values worded by `messages`.
"""
