"""The four text formats of symbol sources: a `/proc/kallsyms` dump, System.map, klp-convert's
Symbols.list and Module.symvers.

Parsers are pure (text in, a `SymbolSource` out), so the cache can stand in for them. Every
malformed line becomes a `KlpLdError` naming the file and the line, because a symbol file an
engineer edited by hand is the usual cause and the line is where to look.
"""

from __future__ import annotations

from klp_ld.diag import KlpLdError, fail
from klp_ld.ksyms.kallsyms import is_ignored_symbol
from klp_ld.ksyms.tables import Export, ObjectTable, SourceKind, SymbolSource
from klp_ld.names import VMLINUX, module_name_from_file

SYMBOLS_LIST_MAGIC = "klp-convert-symbol-data.0.1"
# The first line of the System.map Debian installs in /boot without the debug package.
DEBIAN_PLACEHOLDER = "The real System.map is in"
# Pseudo-modules of /proc/kallsyms (BPF programs, ftrace and kprobe trampolines): no klp object.
_PSEUDO_MODULES = ("bpf", "__builtin__")


def _line_error(path: str, lineno: int, what: str, line: str) -> KlpLdError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return fail(f"{what}, got {shown!r}", obj=f"{path}:{lineno}")


def _address_ordered(objname: str, path: str, kind: SourceKind,
                     rows: list[tuple[int, str, str]], order: str) -> ObjectTable:
    """Sort (addr, type, name) rows stably by address: the kallsyms table order (compare_symbols)."""
    rows.sort(key=lambda r: r[0])
    return ObjectTable(objname, path, kind, tuple(r[2] for r in rows), "".join(r[1] for r in rows),
                       tuple(r[0] for r in rows), order=order)


def _hex_address(text: str, path: str, lineno: int, line: str) -> int:
    try:
        addr = int(text, 16)
    except ValueError:
        raise _line_error(path, lineno, "address is not hexadecimal", line) from None
    if addr < 0:
        raise _line_error(path, lineno, "address is not hexadecimal", line)
    return addr


def parse_kallsyms(text: str, path: str) -> SymbolSource:
    """Parse a `/proc/kallsyms` dump: `addr type name` for vmlinux, `addr type name\\t[mod]` else.

    vmlinux symbols are counted by address (stable for ties) whatever the line order; a module's
    lines are its core symbols in `.symtab` order, which is the order the kernel prints them in.
    A dump read without privilege has all addresses zero; then the line order is kept, which is
    the kernel's order for an unedited dump.
    """
    vmlinux: list[tuple[int, str, str]] = []
    modules: dict[str, list[tuple[int, str, str]]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (3, 4) or len(parts[1]) != 1:
            raise _line_error(path, lineno, "expected 'address type name [module]'", line)
        addr = _hex_address(parts[0], path, lineno, line)
        row = (addr, parts[1], parts[2])
        if len(parts) == 3:
            vmlinux.append(row)
            continue
        tag = parts[3]
        if len(tag) < 3 or tag[0] != "[" or tag[-1] != "]":
            raise _line_error(path, lineno, "module tag must look like [name]", line)
        mod = tag[1:-1]
        if mod.startswith(_PSEUDO_MODULES):
            continue
        modules.setdefault(mod, []).append(row)
    if not vmlinux and not modules:
        raise fail("no symbols in this kallsyms dump", obj=path)
    notes: list[str] = []
    tables: list[ObjectTable] = []
    if vmlinux:
        hidden = not any(r[0] for r in vmlinux)
        if hidden:
            notes.append(f"{path}: all addresses are zero (kptr_restrict, or read without root); "
                         "positions follow line order, which is the kernel's order only for an "
                         "unedited dump")
        tables.append(_address_ordered(VMLINUX, path, SourceKind.KALLSYMS, vmlinux,
                                       "line order (addresses hidden)" if hidden else "address order"))
    exports: list[Export] = []
    for mod, rows in modules.items():
        tables.append(ObjectTable(mod, path, SourceKind.KALLSYMS, tuple(r[2] for r in rows),
                                  "".join(r[1] for r in rows), tuple(r[0] for r in rows),
                                  full_known=False, order="core .symtab order (loaded module)"))
        # For module lines s_show prints the type in upper case exactly when module_get_kallsym
        # found the symbol exported: a loaded sibling's export must stay an ordinary reference.
        exports.extend(Export(name, None, mod) for _, kind, name in rows if kind.isupper())
    return SymbolSource(path, SourceKind.KALLSYMS, tuple(tables), tuple(exports), tuple(notes))


def parse_system_map(text: str, path: str) -> SymbolSource:
    """Parse `System.map` (`nm -n vmlinux`), keeping only what kallsyms keeps."""
    if DEBIAN_PLACEHOLDER in text[:400]:
        raise fail("this System.map is a placeholder without symbols (Debian ships the real one "
                   "in the linux-image-<release>-dbg package)", obj=path)
    rows: list[tuple[int, str, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or len(parts[1]) != 1:
            raise _line_error(path, lineno, "expected 'address type name'", line)
        addr = _hex_address(parts[0], path, lineno, line)
        if not is_ignored_symbol(parts[2], parts[1]):
            rows.append((addr, parts[1], parts[2]))
    if not rows:
        raise fail("no symbols in this System.map", obj=path)
    table = _address_ordered(VMLINUX, path, SourceKind.SYSTEM_MAP, rows, "address order")
    return SymbolSource(path, SourceKind.SYSTEM_MAP, (table,))


def parse_symbols_list(text: str, path: str) -> SymbolSource:
    """Parse klp-convert's `Symbols.list`/`symbols.klp`: `*object` lines, then names.

    It was made with `nm -f posix | cut -f1`, so it has no addresses and lists names in nm's
    order: positions counted from it are only as good as that order, and a module's list also
    holds the names it merely references.
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != SYMBOLS_LIST_MAGIC:
        first = lines[0] if lines else ""
        raise _line_error(path, 1, f"expected the format line '{SYMBOLS_LIST_MAGIC}'", first)
    per_obj: dict[str, list[str]] = {}
    exports: list[Export] = []
    current: list[str] | None = None
    current_name = ""
    for lineno, raw in enumerate(lines[1:], 2):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("*"):
            current_name = module_name_from_file(line[1:].strip())
            if not current_name or " " in line[1:].strip():
                raise _line_error(path, lineno, "expected '*<object>'", raw)
            current = per_obj.setdefault(current_name, [])
            continue
        if current is None:
            raise _line_error(path, lineno, "symbol before any '*<object>' line", raw)
        if " " in line or "\t" in line:
            raise _line_error(path, lineno, "expected one symbol name per line", raw)
        if line.startswith("__ksymtab_"):
            exports.append(Export(line[len("__ksymtab_"):], None, current_name))
        if not is_ignored_symbol(line, "?"):
            current.append(line)
    order = "nm order (Symbols.list has no addresses)"
    tables = tuple(ObjectTable(obj, path, SourceKind.SYMBOLS_LIST, tuple(names), "?" * len(names),
                               order=order) for obj, names in per_obj.items())
    if not tables:
        raise fail("no objects in this Symbols.list", obj=path)
    note = (f"{path}: Symbols.list has no addresses; positions from it follow nm's output order, "
            "not the kernel's, and are only as good as that order")
    return SymbolSource(path, SourceKind.SYMBOLS_LIST, tables, tuple(exports), (note,))


def parse_module_symvers(text: str, path: str) -> dict[str, Export]:
    """Parse `Module.symvers`: `crc<TAB>name<TAB>module<TAB>export_type[<TAB>namespace]`."""
    exports: dict[str, Export] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) not in (4, 5) or not parts[1] or not parts[2]:
            raise _line_error(path, lineno, "expected 'crc<TAB>name<TAB>module<TAB>export type"
                              "[<TAB>namespace]'", line)
        try:
            crc = int(parts[0], 16)
        except ValueError:
            raise _line_error(path, lineno, "CRC is not hexadecimal", line) from None
        if crc < 0:
            raise _line_error(path, lineno, "CRC is not hexadecimal", line)
        exports[parts[1]] = Export(parts[1], crc, parts[2], parts[3], parts[4] if len(parts) == 5 else "")
    return exports
