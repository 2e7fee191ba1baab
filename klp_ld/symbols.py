"""Symbol sources of a target kernel and the kernel's own sympos algorithm.

A klp relocation names its target as (object, name, position), and the kernel resolves it by
counting same-named symbols of one object in an order of its own (klp_find_object_symbol): vmlinux
symbols in address order, module symbols in `.symtab` order. A patch built against any other
order loads and silently binds the wrong function, or is refused at load with a message that no
longer names the line that caused it. So this module turns every source an engineer may have --
a `/proc/kallsyms` dump, `System.map`, a `vmlinux` with symbols, the module files, klp-convert's
`Symbols.list` -- into one table per object already in the kernel's counting order, and answers
questions the way `klp_find_object_symbol` would, but with messages that say what to write.

Parsers are pure (bytes or text in, plain data out); the only I/O here is `load_source`, which
reads one file. Every malformed input becomes a `KlpLdError` naming the file and, for text, the
line.
"""

from __future__ import annotations

import difflib
import gzip
import importlib
import io
import itertools
import lzma
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from klp_ld.diag import Diagnostic, KlpLdError, error, fail
from klp_ld.elf.consts import (
    ELFCLASS64,
    ELFDATA2LSB,
    ELFMAG,
    ET_REL,
    KSYM_NAME_LEN,
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_WRITE,
    SHN_ABS,
    SHN_COMMON,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_SYMTAB,
    STB_GLOBAL,
    STB_WEAK,
    STT_FILE,
    STT_OBJECT,
    STT_SECTION,
)
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf
from klp_ld.names import module_name_from_file, objname_problem

VMLINUX = "vmlinux"
SYMBOLS_LIST_MAGIC = "klp-convert-symbol-data.0.1"

# kallsyms leaves these out (scripts/mksysmap, scripts/kallsyms.c: is_ignored_symbol). 'A' is
# there too: x86 keeps no absolute symbols, and the per-CPU ones it does mark 'A' are 'd'/'D' in
# System.map and vmlinux, so they survive this filter.
_SKIPPED_TYPES = frozenset("aANUwun")
_SKIPPED_PREFIXES = ("$", ".L", "__crc_", "__kstrtab_", "__kstrtabns_", "__kcfi_typeid_")
_SKIPPED_NAMES = frozenset({
    "kallsyms_addresses", "kallsyms_offsets", "kallsyms_relative_base", "kallsyms_num_syms",
    "kallsyms_names", "kallsyms_markers", "kallsyms_token_table", "kallsyms_token_index",
    "kallsyms_seqs_of_names",
})
# Pseudo-modules of /proc/kallsyms (BPF programs, ftrace and kprobe trampolines): no klp object.
_PSEUDO_MODULES = ("bpf", "__builtin__")
# Defined by every .ko (the .mod.o), never a patch target.
MODULE_BOILERPLATE = frozenset({"__this_module", "init_module", "cleanup_module"})

_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZ_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# The most klp-ld reads from one symbol source, on disk or decompressed. Debug vmlinux files run
# to several hundred MB; a source beyond this is corrupt or hostile (and would end in a
# MemoryError, or the OOM killer, rather than in a message).
MAX_SOURCE_BYTES = 2 << 30
_CHUNK = 1 << 20
_ET_EXEC = 2
_ET_DYN = 3
_STB_GNU_UNIQUE = 10
_DEBIAN_PLACEHOLDER = "The real System.map is in"
_SUFFIXED = re.compile(r"\.(?:isra|constprop|part|cold|llvm|lto_priv)\b|\.\d+$")


class SourceKind(str, Enum):
    """What a symbol source is; decides how its positions were counted and how far to trust them."""

    KALLSYMS = "kallsyms"
    SYSTEM_MAP = "System.map"
    SYMBOLS_LIST = "Symbols.list"
    VMLINUX = "vmlinux"
    MODULE = "module"
    SYMVERS = "Module.symvers"


# Lookups of one table answered by scanning before it builds a name index (ObjectTable.indices).
_SCANNED_LOOKUPS = 16

# Which source wins for an object when several cover it; the others become cross-checks.
_AUTHORITY = {SourceKind.VMLINUX: 0, SourceKind.KALLSYMS: 0, SourceKind.MODULE: 0,
              SourceKind.SYSTEM_MAP: 1, SourceKind.SYMBOLS_LIST: 2, SourceKind.SYMVERS: 3}


@dataclass(frozen=True, slots=True)
class ObjectTable:
    """The symbols of one object as one source lists them, already in the kernel's counting order.

    Columns instead of one record per symbol: a vmlinux has ~100k symbols, and tuples of plain
    values load from the cache in a few milliseconds where 100k objects would not.
    `values` are addresses, or section offsets when `sections` is set (a `.ko`); `core` marks
    the symbols a loaded module keeps (None: all of them); `full_known` is False when the source
    only saw a loaded module (kallsyms), so the count the kernel uses while the module is still
    loading cannot be checked. `files` is the source file (the preceding STT_FILE symbol) of
    each local symbol where an ELF symbol table tells it: the one thing that tells five static
    `state_show` apart for a human.
    """

    objname: str
    source: str
    kind: SourceKind
    names: tuple[str, ...]
    types: str
    values: tuple[int, ...] | None = None
    sections: tuple[str, ...] | None = None
    core: bytes | None = None
    full_known: bool = True
    order: str = "address order"
    files: tuple[str, ...] | None = None
    # name -> rows, built on the lookup after the first _SCANNED_LOOKUPS (see indices)
    _index: dict[str, tuple[int, ...]] | None = field(default=None, init=False, repr=False, compare=False)
    _lookups: int = field(default=0, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_module(self) -> bool:
        return self.objname != VMLINUX

    def indices(self, name: str) -> list[int]:
        """Row indices of `name`, in counting order.

        A scan (tuple.count/index, in C) costs about 1 ms on a 100k-symbol vmlinux: right for the
        few lookups of a small patch, ruinous for a module with thousands of annotations (10,000
        lookups took 20 s). So the first few lookups scan, and the next builds a name -> rows
        index once (about 20 ms for 100k names).
        """
        index = self._index
        if index is None:
            if self._lookups < _SCANNED_LOOKUPS:
                object.__setattr__(self, "_lookups", self._lookups + 1)
                count = self.names.count(name)
                found: list[int] = []
                start = 0
                for _ in range(count):
                    start = self.names.index(name, start)
                    found.append(start)
                    start += 1
                return found
            rows: dict[str, list[int]] = {}
            for i, n in enumerate(self.names):
                rows.setdefault(n, []).append(i)
            index = {n: tuple(r) for n, r in rows.items()}
            object.__setattr__(self, "_index", index)
        return list(index.get(name, ()))


@dataclass(frozen=True, slots=True)
class Export:
    """One exported symbol: such references stay normal relocations, resolved and CRC-checked."""

    name: str
    crc: int | None
    module: str
    export_type: str = ""
    namespace: str = ""

    @property
    def objname(self) -> str:
        """`drivers/net/dummy` in Module.symvers is the kernel's module `dummy`."""
        return module_name_from_file(self.module)


@dataclass(frozen=True, slots=True)
class SymbolSource:
    """Everything one file says: per-object tables, exports, and caveats about its positions."""

    path: str
    kind: SourceKind
    tables: tuple[ObjectTable, ...] = ()
    exports: tuple[Export, ...] = ()
    notes: tuple[str, ...] = ()
    release: str | None = None

    def objects(self) -> tuple[str, ...]:
        return tuple(t.objname for t in self.tables)

    def table(self, objname: str) -> ObjectTable | None:
        for t in self.tables:
            if t.objname == objname:
                return t
        return None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One symbol the kernel would count for (objname, name).

    `position` is the kernel's count for vmlinux, and for a module that is already loaded when
    the patch arrives (core symbols only); `full_position` is the count for a module that loads
    after the patch (its whole `.symtab`). Either is None where that path does not see the
    symbol or the source cannot tell.
    """

    objname: str
    name: str
    position: int | None
    full_position: int | None
    address: int | None
    type: str
    source: str
    section: str | None = None
    core: bool = True
    file: str | None = None

    def where(self) -> str:
        """The symbol as an engineer recognises it: a kallsyms-like address, or section+offset."""
        if self.section is not None and self.address is not None:
            return f"{self.section}+{self.address:#x}"
        if self.address is not None:
            return f"{self.address:016x}"
        return "address unknown"

    def sympos_line(self) -> str:
        """A `KLP_SYMPOS()` initializer the author can paste, with what it selects as a comment.

        A module symbol the kernel only counts while the module is loading (init or
        non-allocated section) gets no initializer: no position reaches it in both load orders.
        """
        desc = f"{self.where()} {self.type}, {self.objname}"
        if self.file:
            desc += f", {self.file}"
        if self.position is None:
            return (f"no KLP_SYMPOS reaches this {self.name} once {self.objname} is loaded  /* {desc}; "
                    f"position {self.full_position} only while {self.objname} is still loading */")
        if self.full_position is not None and self.full_position != self.position:
            desc += f"; position {self.full_position} if {self.objname} loads after the patch"
        return f"KLP_SYMPOS({self.name}, {self.position})  /* {desc} */"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The symbol the kernel will bind for (objname, name, sympos), and any caveat to report."""

    candidate: Candidate
    sympos: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SymbolProblem:
    """Why (objname, name, sympos) would not bind as written; the texts are final user wording.

    `code` is one of: symbol-not-found, object-not-found, sympos-not-found, sympos-ambiguous,
    sympos-module-paths, sources-disagree, zero-address, unannotated-ambiguous.
    """

    code: str
    objname: str
    name: str
    sympos: int
    message: str
    notes: tuple[str, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    suggestions: tuple[str, ...] = ()

    def diagnostic(self, *, obj: str | None = None, section: str | None = None,
                   offset: int | None = None) -> Diagnostic:
        """The error as the caller prints it, located at the reference that asked for the symbol."""
        return error(self.message, code=self.code, obj=obj, section=section, offset=offset,
                     notes=self.notes)


Resolution = Resolved | SymbolProblem


@dataclass(frozen=True, slots=True)
class Lookup:
    """Where an unannotated name is defined, per object, for automatic resolution."""

    name: str
    definitions: tuple[tuple[str, tuple[Candidate, ...]], ...] = ()
    export: Export | None = None
    skipped: str | None = None

    @property
    def objects(self) -> tuple[str, ...]:
        return tuple(obj for obj, _ in self.definitions)

    def unique(self) -> tuple[str, int] | None:
        """(objname, 0) when exactly one object defines the name exactly once on every load path."""
        if self.skipped is not None or len(self.definitions) != 1:
            return None
        objname, cands = self.definitions[0]
        if _unique_everywhere(cands):
            return objname, 0
        return None

    def problem(self) -> SymbolProblem | None:
        """The ambiguity, with every candidate and the annotations that would settle it."""
        if (self.skipped is not None or self.export is not None or not self.definitions
                or self.unique() is not None):
            return None
        all_cands = tuple(c for _, cands in self.definitions for c in cands)
        if len(self.definitions) == 1 and not any(c.position is not None for c in all_cands):
            objname = self.definitions[0][0]
            sections = sorted({c.section or "?" for c in all_cands})
            message = (f"{self.name} is defined in {objname} only in {', '.join(sections)}, which the "
                       f"kernel frees or never loads: a patch cannot reach it once {objname} is loaded")
        else:
            where = ", ".join(f"{obj} ({_count_text(cands)})" for obj, cands in self.definitions)
            message = (f"{self.name} is not exported and not annotated, and it is not unique: {where}; "
                       f"annotate it with KLP_SYMPOS in KLP_MODULE_RELOC(<object>)")
        notes = tuple(f"KLP_MODULE_RELOC({c.objname}): {c.sympos_line()}" for c in all_cands)
        return SymbolProblem("unannotated-ambiguous", self.definitions[0][0], self.name, 0, message,
                             notes, all_cands)


def _count_text(cands: Sequence[Candidate]) -> str:
    """`3 copies`, or for a module whose load orders see different counts, both counts."""
    core = sum(1 for c in cands if c.position is not None)
    if core == len(cands) or cands[0].objname == VMLINUX:
        return _copies(len(cands))
    return f"{_copies(core)}; {len(cands)} while {cands[0].objname} is still loading"


def _unique_everywhere(cands: Sequence[Candidate]) -> bool:
    core = [c for c in cands if c.position is not None]
    full = [c for c in cands if c.full_position is not None]
    return len(core) == 1 and len(full) <= 1 and (not full or full[0] is core[0])


# ---------------------------------------------------------------------------------------------
# Object names


def normalize_objname(raw: str) -> str:
    """Check a klp object name the way the loader parses it (`%55[^.]`) and return it."""
    problem = objname_problem(raw)
    if problem is not None:
        raise fail(problem)
    return raw.strip()


# ---------------------------------------------------------------------------------------------
# Text parsers


def _line_error(path: str, lineno: int, what: str, line: str) -> KlpLdError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return fail(f"{what}, got {shown!r}", obj=f"{path}:{lineno}")


def _kallsyms_filtered(name: str, kind: str) -> bool:
    """True for what scripts/kallsyms leaves out of the kernel's table."""
    return (kind in _SKIPPED_TYPES or name.startswith(_SKIPPED_PREFIXES) or name in _SKIPPED_NAMES
            or len(name) >= KSYM_NAME_LEN)


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
    if _DEBIAN_PLACEHOLDER in text[:400]:
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
        if not _kallsyms_filtered(parts[2], parts[1]):
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
        if not _kallsyms_filtered(line, "?"):
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


# ---------------------------------------------------------------------------------------------
# ELF parsers


_EHDR_TAIL = struct.Struct("<HHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")


def _type_char(bind: int, stype: int, special: int, flags: int, sh_type: int) -> str:
    """The letter `nm` (and so System.map and kallsyms) gives a defined symbol.

    `special` is the reserved section index (SHN_ABS, SHN_COMMON, ...) or 0 for a real section,
    whose `flags` and `sh_type` then decide.
    """
    if special == SHN_COMMON:
        return "C"
    if bind == _STB_GNU_UNIQUE:
        return "u"
    if bind == STB_WEAK:
        return "V" if stype == STT_OBJECT else "W"
    if special == SHN_ABS:
        letter = "a"
    elif flags & SHF_EXECINSTR:
        letter = "t"
    elif flags & SHF_ALLOC:
        letter = "b" if sh_type == SHT_NOBITS else "d" if flags & SHF_WRITE else "r"
    else:
        letter = "n"
    return letter.upper() if bind == STB_GLOBAL else letter


def parse_vmlinux(data: bytes, path: str) -> SymbolSource:
    """Read the `.symtab` of a vmlinux (ET_EXEC) and keep what kallsyms would, by address."""
    try:
        return _parse_vmlinux(data, path)
    except KlpLdError:
        raise
    except (struct.error, IndexError, ValueError) as exc:
        raise fail(f"malformed vmlinux: {exc}", obj=path) from None


def _parse_vmlinux(data: bytes, path: str) -> SymbolSource:
    if len(data) < 64 or data[:4] != ELFMAG:
        raise fail("not an ELF file", obj=path)
    if data[4] != ELFCLASS64 or data[5] != ELFDATA2LSB:
        raise fail("not a 64-bit little-endian ELF file", obj=path)
    (e_type, _machine, _version, _entry, _phoff, e_shoff, _flags, _ehsize, _phentsize, _phnum,
     e_shentsize, e_shnum, _shstrndx) = _EHDR_TAIL.unpack_from(data, 16)
    if e_type not in (_ET_EXEC, _ET_DYN):
        raise fail(f"not a vmlinux (e_type {e_type}, expected an executable)", obj=path)
    if e_shnum == 0 or e_shoff == 0:
        raise fail("vmlinux has no section headers, so no symbol table", obj=path)
    if e_shentsize != _SHDR.size or e_shoff + e_shnum * _SHDR.size > len(data):
        raise fail(f"section header table at {e_shoff:#x} runs past the end of the file", obj=path)
    shdrs = [_SHDR.unpack_from(data, e_shoff + i * _SHDR.size) for i in range(e_shnum)]
    symtabs = [h for h in shdrs if h[1] == SHT_SYMTAB]
    if not any(h[2] & SHF_EXECINSTR and h[1] != SHT_NOBITS for h in shdrs):
        # Debian's 6.12 headers ship such a vmlinux for pahole: .BTF and a few hundred symbols.
        raise fail("vmlinux has no code sections (a BTF-only vmlinux); use System.map, /proc/kallsyms "
                   "or the debug vmlinux", obj=path)
    if not symtabs:
        raise fail("vmlinux has no .symtab (stripped, or a BTF-only vmlinux); use System.map, "
                   "/proc/kallsyms or the debug vmlinux", obj=path)
    sym_h = symtabs[0]
    if sym_h[6] >= e_shnum:
        raise fail(".symtab sh_link names no section", obj=path)
    str_h = shdrs[sym_h[6]]
    for hdr, what in ((sym_h, ".symtab"), (str_h, ".strtab")):
        if hdr[4] + hdr[5] > len(data):
            raise fail(f"{what} runs past the end of the file", obj=path)
    strtab = data[str_h[4]:str_h[4] + str_h[5]]
    body = data[sym_h[4]:sym_h[4] + sym_h[5] - sym_h[5] % _SYM.size]
    rows: list[tuple[int, str, str, str]] = []
    find = strtab.find
    current_file = ""
    for st_name, st_info, _other, shndx, value, _size in _SYM.iter_unpack(body):
        stype = st_info & 0xF
        if shndx == SHN_UNDEF or not st_name or stype == STT_SECTION:
            continue
        end = find(b"\0", st_name)
        if end < 0:
            raise fail(f"symbol name offset {st_name:#x} is outside .strtab", obj=path)
        name = strtab[st_name:end].decode("utf-8", "surrogateescape")
        if stype == STT_FILE:
            current_file = name
            continue
        if 0 < shndx < e_shnum:
            hdr = shdrs[shndx]
            letter = _type_char(st_info >> 4, stype, 0, hdr[2], hdr[1])
        else:
            letter = _type_char(st_info >> 4, stype, shndx, 0, 0)
        if not _kallsyms_filtered(name, letter):
            rows.append((value, letter, name, current_file if st_info >> 4 == 0 else ""))
    if not rows:
        raise fail("vmlinux .symtab has no symbols kallsyms would keep", obj=path)
    rows.sort(key=lambda r: r[0])
    table = ObjectTable(VMLINUX, path, SourceKind.VMLINUX, tuple(r[2] for r in rows),
                        "".join(r[1] for r in rows), tuple(r[0] for r in rows),
                        files=tuple(r[3] for r in rows))
    return SymbolSource(path, SourceKind.VMLINUX, (table,))


def decompress(data: bytes, path: str, limit: int = MAX_SOURCE_BYTES) -> bytes:
    """Undo the compression kmod accepts for modules (xz, gzip, zstd); other data is returned as is.

    Output is read in chunks and refused past `limit`: a few kilobytes of hostile input can
    expand to gigabytes and end in a MemoryError, or in the OOM killer, instead of a message.
    """
    if data.startswith(_XZ_MAGIC):
        return _decompress_stream(lambda: lzma.LZMAFile(io.BytesIO(data)), path, limit, "xz")
    if data.startswith(_GZ_MAGIC):
        return _decompress_stream(lambda: gzip.GzipFile(fileobj=io.BytesIO(data)), path, limit, "gzip")
    if data.startswith(_ZSTD_MAGIC):
        return _zstd_decompress(data, path, limit)
    return data


def _bounded_join(chunks: Iterable[bytes], limit: int, path: str, what: str) -> bytes:
    """Join `chunks`, failing as soon as they add up to more than `limit` bytes."""
    out: list[bytes] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise fail(f"{what} more than {limit} bytes, the most klp-ld reads from one symbol source "
                       "(a corrupt or hostile file?)", obj=path)
        out.append(chunk)
    return out[0] if len(out) == 1 else b"".join(out)


def _decompress_stream(open_stream: Callable[[], io.BufferedIOBase], path: str, limit: int,
                       what: str, errors: tuple[type[Exception], ...] = ()) -> bytes:
    """Read a decompressing file object to its end, `_CHUNK` bytes at a time.

    The stdlib readers (LZMAFile, GzipFile, compression.zstd.ZstdFile) read every concatenated
    stream and raise EOFError for a truncated one, as `lzma.decompress` and friends do.
    """
    corrupt: tuple[type[Exception], ...] = (lzma.LZMAError, OSError, EOFError, zlib.error, *errors)
    try:
        with open_stream() as stream:
            return _bounded_join(iter(lambda: stream.read(_CHUNK), b""), limit, path, "decompresses to")
    except corrupt as exc:
        raise fail(f"corrupt compressed data ({what}): {str(exc) or type(exc).__name__}", obj=path) from None


def _zstd_decompress(data: bytes, path: str, limit: int) -> bytes:
    """zstd is in the standard library from Python 3.14 on; before, the `zstandard` package reads it.

    Both are imported only here: most links never see a .zst file.
    """
    try:
        stdlib_zstd = importlib.import_module("compression.zstd")
    except ImportError:
        pass
    else:
        return _decompress_stream(lambda: stdlib_zstd.ZstdFile(io.BytesIO(data)), path, limit, "zstd",
                                  (stdlib_zstd.ZstdError,))
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        raise fail("this module is zstd-compressed and reading it needs the Python package 'zstandard' "
                   "(pip install zstandard), or decompress it first with 'unzstd'", obj=path) from None
    try:
        return _bounded_join(_zstandard_chunks(zstandard, data), limit, path, "decompresses to")
    except zstandard.ZstdError as exc:
        raise fail(f"corrupt compressed data (zstd): {exc}", obj=path) from None


# Input fed to zstandard per call. Its decompressor has no output limit, and a zstd block of 4
# bytes can stand for 128 KiB: 1 KiB of input makes at most 32 MiB before the limit is checked.
_ZSTD_INPUT_STEP = 1024


def _zstandard_chunks(zstandard: Any, data: bytes) -> Iterator[bytes]:
    """Decompress every frame of `data` in bounded steps (the package's stream_reader returns a
    truncated frame's output without any error)."""
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        decoder = zstandard.ZstdDecompressor().decompressobj()
        while not decoder.eof:
            if pos >= len(data):
                raise zstandard.ZstdError("truncated: the data ends inside a frame")
            step = view[pos:pos + _ZSTD_INPUT_STEP]
            pos += len(step)
            chunk = decoder.decompress(step)
            if chunk:
                yield chunk
        pos -= len(decoder.unused_data)


def _modinfo(obj: ElfObject) -> dict[str, str]:
    sec = obj.section(".modinfo")
    info: dict[str, str] = {}
    if sec is None:
        return info
    for entry in sec.data.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            info.setdefault(key.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
    return info


def parse_module(data: bytes, path: str) -> SymbolSource:
    """Read a module (`.ko`, possibly xz/gzip/zstd-compressed) in `.symtab` order.

    Both counts the kernel may use are kept (module_kallsyms_on_each_symbol): a module already loaded is
    searched over its core symbols only (`is_core_symbol`: named, defined, in an allocated
    non-`.init` section, or per-CPU), a module loading after the patch over every defined symbol.
    """
    obj = read_elf(decompress(data, path), path)
    info = _modinfo(obj)
    objname = info.get("name") or module_name_from_file(path)
    vermagic = info.get("vermagic", "").split()
    pcpu = obj.section(".data..percpu")
    names: list[str] = []
    types: list[str] = []
    values: list[int] = []
    sections: list[str] = []
    files: list[str] = []
    core = bytearray()
    exports: list[Export] = []
    current_file = ""
    for sym in obj.symbols[1:]:
        if sym.type == STT_FILE:
            current_file = sym.name
        if sym.is_undefined or not sym.name or sym.type == STT_SECTION:
            continue
        sec = sym.section
        if sec is not None:
            letter = _type_char(sym.bind, sym.type, 0, sec.flags, sec.type)
            # setup_load_info clears SHF_ALLOC on .modinfo and __versions before layout.
            alloc = sec.is_alloc and sec.name not in (".modinfo", "__versions")
            is_core = sec is pcpu or (alloc and not sec.name.startswith(".init"))
            sections.append(sec.name)
        else:
            letter = _type_char(sym.bind, sym.type, sym.special, 0, 0)
            is_core = False  # SHN_ABS and other reserved indices are >= e_shnum
            sections.append("*ABS*" if sym.special == SHN_ABS else f"[{sym.special:#x}]")
        names.append(sym.name)
        types.append(letter)
        values.append(sym.value)
        files.append(current_file if sym.is_local and sym.type != STT_FILE else "")
        core.append(1 if is_core else 0)
        if sym.name.startswith("__ksymtab_"):
            exports.append(Export(sym.name[len("__ksymtab_"):], None, objname))
    table = ObjectTable(objname, path, SourceKind.MODULE, tuple(names), "".join(types), tuple(values),
                        tuple(sections), bytes(core), order=".symtab order", files=tuple(files))
    return SymbolSource(path, SourceKind.MODULE, (table,), tuple(exports),
                        release=vermagic[0] if vermagic else None)


# ---------------------------------------------------------------------------------------------
# Format detection and loading


def detect_format(data: bytes, path: str) -> SourceKind:
    """Tell the source kinds apart by content (and, for look-alike text, by name).

    kallsyms and System.map share one line shape, but System.map has what kallsyms drops
    (`U`/`N`/`a`/`w` types, `__crc_` names), and parsing a dump as System.map would drop the
    per-CPU symbols kallsyms marks `A`, so a wrong guess changes positions: the name decides first.
    """
    data = decompress(data, path)
    if data[:4] == ELFMAG:
        if len(data) < 18:
            raise fail("file is truncated inside the ELF header", obj=path)
        e_type = int.from_bytes(data[16:18], "little")
        if e_type == ET_REL:
            return SourceKind.MODULE
        if e_type in (_ET_EXEC, _ET_DYN):
            return SourceKind.VMLINUX
        raise fail(f"ELF file of type {e_type} is neither a module nor a vmlinux", obj=path)
    head = data[:4096].decode("utf-8", "surrogateescape")
    first = next((ln for ln in head.splitlines() if ln.strip()), "")
    if not first:
        raise fail("empty symbol source", obj=path)
    if first.strip().startswith("klp-convert-symbol-data."):
        if first.strip() != SYMBOLS_LIST_MAGIC:
            raise fail(f"unsupported Symbols.list version '{first.strip()}' (klp-ld reads "
                       f"{SYMBOLS_LIST_MAGIC})", obj=path)
        return SourceKind.SYMBOLS_LIST
    if _DEBIAN_PLACEHOLDER in first:
        return SourceKind.SYSTEM_MAP
    tabbed = first.split("\t")
    if len(tabbed) in (4, 5) and tabbed[0].startswith("0x"):
        return SourceKind.SYMVERS
    parts = first.split()
    if len(parts) in (3, 4) and len(parts[1]) == 1:
        base = os.path.basename(path)
        if base.startswith("System.map"):
            return SourceKind.SYSTEM_MAP
        if "kallsyms" in base or len(parts) == 4:
            return SourceKind.KALLSYMS
        text = data.decode("utf-8", "surrogateescape")
        if "\t[" in text:
            return SourceKind.KALLSYMS
        if re.search(r"^\S+ [aNUwun] |^\S+ \S (?:__crc_|__kstrtab|\.L|\$)", text, re.M):
            return SourceKind.SYSTEM_MAP
        return SourceKind.KALLSYMS
    shown = first if len(first) <= 60 else first[:57] + "..."
    raise fail(f"not a symbol source klp-ld knows (a /proc/kallsyms dump, System.map, vmlinux, a .ko, "
               f"Symbols.list or Module.symvers); it starts with {shown!r}", obj=path)


def parse_source(data: bytes, path: str, kind: SourceKind | None = None) -> SymbolSource:
    """Parse file contents of any supported kind (detected when `kind` is None)."""
    data = decompress(data, path)
    kind = kind or detect_format(data, path)
    if kind is SourceKind.MODULE:
        return parse_module(data, path)
    if kind is SourceKind.VMLINUX:
        return parse_vmlinux(data, path)
    text = data.decode("utf-8", "surrogateescape")
    if kind is SourceKind.KALLSYMS:
        return parse_kallsyms(text, path)
    if kind is SourceKind.SYSTEM_MAP:
        return parse_system_map(text, path)
    if kind is SourceKind.SYMBOLS_LIST:
        return parse_symbols_list(text, path)
    exports = parse_module_symvers(text, path)
    return SymbolSource(path, SourceKind.SYMVERS, exports=tuple(exports.values()))


def read_source_bytes(path: str, limit: int = MAX_SOURCE_BYTES) -> bytes:
    """Read a source file whole, refusing what is not a regular file or is larger than `limit`.

    `--klp-symbols=/dev/zero` (or a FIFO, or a growing file) would otherwise read until memory
    runs out. /proc files are regular but report size 0, so the size is only a hint and reading
    stops at the end or past `limit`, whichever comes first. The file is opened non-blocking
    because opening a FIFO would otherwise wait for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise fail(f"cannot read symbol source: {exc.strerror or exc}", obj=path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise fail("cannot read symbol source: not a regular file (a symbol source is a kallsyms "
                       "dump, System.map, vmlinux, module or Module.symvers file)", obj=path)
        if st.st_size > limit:
            raise fail(f"cannot read symbol source: {st.st_size} bytes, more than the {limit} klp-ld "
                       "reads from one symbol source", obj=path)
        os.set_blocking(fd, True)
        first = os.read(fd, st.st_size + 1 if st.st_size else _CHUNK)
        rest = iter(lambda: os.read(fd, _CHUNK), b"")
        return _bounded_join(itertools.chain((first,), rest), limit, path,
                             "cannot read symbol source: it holds")
    except OSError as exc:
        raise fail(f"cannot read symbol source: {exc.strerror or exc}", obj=path) from None
    finally:
        os.close(fd)


def load_source(path: str, kind: SourceKind | None = None) -> SymbolSource:
    """Read and parse one symbol source file (uncached; see `klp_ld.discover` for the cache)."""
    return parse_source(read_source_bytes(path), path, kind)


# ---------------------------------------------------------------------------------------------
# The index


def _copies(n: int) -> str:
    return f"{n} cop{'y' if n == 1 else 'ies'}"


def _kernel_objname(objname: str) -> str:
    """How the loader prints the object in its messages: vmlinux is a NULL objname there."""
    return "(null)" if objname == VMLINUX else objname


@dataclass(frozen=True, slots=True)
class SymbolIndex:
    """Per-object symbol tables plus exports, answering questions in the kernel's counting order.

    Each object has one primary table (the most authoritative source that covers it; ties go to
    the first given) and any number of cross-check tables, whose counts must agree with it.
    """

    tables: Mapping[str, ObjectTable] = field(default_factory=dict)
    cross_checks: Mapping[str, tuple[ObjectTable, ...]] = field(default_factory=dict)
    exports: Mapping[str, Export] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @classmethod
    def from_sources(cls, sources: Iterable[SymbolSource],
                     cross_check_only: Iterable[tuple[str, str]] = ()) -> SymbolIndex:
        """Build from parsed sources; `cross_check_only` lists (path, objname) never to use as primary."""
        srcs = list(sources)
        demoted = set(cross_check_only)
        by_obj: dict[str, list[ObjectTable]] = {}
        for src in srcs:
            for t in src.tables:
                by_obj.setdefault(t.objname, []).append(t)
        tables: dict[str, ObjectTable] = {}
        checks: dict[str, tuple[ObjectTable, ...]] = {}
        for obj, cands in by_obj.items():
            eligible = [t for t in cands if (t.source, obj) not in demoted] or cands
            primary = min(eligible, key=lambda t: _AUTHORITY[t.kind])
            tables[obj] = primary
            checks[obj] = tuple(t for t in cands
                                if t is not primary and t.kind is not SourceKind.SYMBOLS_LIST)
        exports: dict[str, Export] = {}
        for src in sorted(srcs, key=lambda s: s.kind is not SourceKind.SYMVERS):
            for exp in src.exports:
                exports.setdefault(exp.name, exp)
        notes = tuple(dict.fromkeys(n for s in srcs for n in s.notes))
        return cls(tables, checks, exports, notes)

    def objects(self) -> tuple[str, ...]:
        return tuple(self.tables)

    def table(self, objname: str) -> ObjectTable | None:
        return self.tables.get(objname)

    def export(self, name: str) -> Export | None:
        return self.exports.get(name)

    def candidates(self, objname: str, name: str) -> tuple[Candidate, ...]:
        """Every symbol the kernel would count for (objname, name), in its counting order."""
        table = self.tables.get(objname)
        return _candidates(table, name) if table is not None else ()

    def resolve(self, objname: str, name: str, sympos: int) -> Resolution:
        """What the loader will bind for `.klp.sym.<objname>.<name>,<sympos>`, or why it won't."""
        table = self.tables.get(objname)
        if table is None:
            return self._object_missing(objname, name, sympos)
        cands = _candidates(table, name)
        if not cands:
            return self._name_missing(table, name, sympos)
        if table.is_module:
            outcome = _resolve_module(table, cands, name, sympos)
        else:
            outcome = _resolve_single(objname, cands, name, sympos, table)
        if isinstance(outcome, SymbolProblem):
            return outcome
        disagreement = self._cross_check(table, cands, name, sympos)
        if disagreement is not None:
            return disagreement
        chosen = outcome.candidate
        if (chosen.address == 0 and chosen.section is None and table.values is not None
                and any(table.values)):
            return SymbolProblem(
                "zero-address", objname, name, sympos,
                f"{name} in {objname} is at address 0 (a per-CPU offset); the kernel treats address 0 "
                f"as 'not found' and will refuse the patch",
                (f"at load the kernel would say: symbol '{name}' not found in symbol table",),
                cands)
        return Resolved(chosen, sympos, _order_notes(table))

    def lookup_unannotated(self, name: str, own: Collection[str] = ()) -> Lookup:
        """Which objects define `name`, for a reference the author did not annotate.

        The names every module defines for itself, and whatever the patch module defines (`own`),
        are never looked up: resolving `__this_module` into a target would bind the patch to
        another module's structure.
        """
        if name in MODULE_BOILERPLATE:
            return Lookup(name, skipped=f"{name} is defined by every module for itself")
        if name in own:
            return Lookup(name, skipped=f"{name} is defined by the patch module itself")
        defs = tuple((obj, cands) for obj, table in self.tables.items()
                     if (cands := _candidates(table, name)))
        return Lookup(name, defs, self.exports.get(name))

    # -- problems ------------------------------------------------------------------------------

    def _object_missing(self, objname: str, name: str, sympos: int) -> SymbolProblem:
        known = sorted(self.tables)
        close = difflib.get_close_matches(objname, known, n=3, cutoff=0.75)
        message = f"no symbols for object {objname}: no symbol source covers it"
        if close:
            message += f"; did you mean {_or_list(close)}?"
        shown = ", ".join(known[:8]) + (f" and {len(known) - 8} more" if len(known) > 8 else "")
        notes = (f"objects with symbols: {shown}",) if known else ()
        return SymbolProblem("object-not-found", objname, name, sympos, message, notes,
                             suggestions=tuple(close))

    def _name_missing(self, table: ObjectTable, name: str, sympos: int) -> SymbolProblem:
        close = _near_misses(name, table.names)
        message = f"{name} is not a symbol of {table.objname}"
        if close:
            message += f"; did you mean {_or_list(close)}?"
        notes: list[str] = []
        for obj, other in self.tables.items():
            if obj != table.objname and (n := len(other.indices(name))):
                notes.append(f"{name} is defined in {obj} ({_copies(n)})")
        if _SUFFIXED.search(name):
            notes.append("compiler-made suffixes (.isra.N, .constprop.N, .part.N, .cold, numbered "
                         "static locals) differ between builds: take the name from the target "
                         "kernel's symbols, not from a rebuilt object")
        notes.append(f"symbols of {table.objname} from {table.source}")
        return SymbolProblem("symbol-not-found", table.objname, name, sympos, message, tuple(notes),
                             suggestions=tuple(close))

    def _cross_check(self, table: ObjectTable, cands: Sequence[Candidate], name: str,
                     sympos: int) -> SymbolProblem | None:
        ours = len([c for c in cands if c.position is not None])
        for other in self.cross_checks.get(table.objname, ()):
            theirs = len([i for i in other.indices(name) if other.core is None or other.core[i]])
            if theirs != ours:
                what = "core copies" if table.is_module and table.full_known else "copies"
                return SymbolProblem(
                    "sources-disagree", table.objname, name, sympos,
                    f"symbol sources disagree about {name} in {table.objname}: {table.source} has "
                    f"{ours} {what}, {other.source} has {theirs}; positions cannot be trusted",
                    (f"{table.source}: {len(table)} symbols, {table.order}",
                     f"{other.source}: {len(other)} symbols, {other.order}",
                     "is the installed file the one the running kernel loaded?"),
                    tuple(cands))
        return None


def _or_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _near_misses(name: str, names: Sequence[str]) -> list[str]:
    """Close spellings, first among names sharing the part before the first '.' (uncond.48011)."""
    stem = name.split(".", 1)[0]
    if stem:
        family = sorted({n for n in names if n.startswith(stem) and n != name})
        if family and len(family) <= 2000:
            close = difflib.get_close_matches(name, family, n=3, cutoff=0.6)
            if close:
                return close
    return difflib.get_close_matches(name, sorted(set(names)), n=3, cutoff=0.8)


def _order_notes(table: ObjectTable) -> tuple[str, ...]:
    if table.kind is SourceKind.SYMBOLS_LIST:
        return (f"position counted in {table.order} from {table.source}; it is only as good as that "
                "order",)
    if table.kind is SourceKind.KALLSYMS and table.is_module:
        return (f"{table.source} only shows the loaded {table.objname}: the position for "
                f"{table.objname} loading after the patch could not be checked",)
    if table.values is not None and not any(table.values) and not table.is_module:
        return (f"{table.source} hides addresses; position counted in line order",)
    return ()


def _candidates(table: ObjectTable, name: str) -> tuple[Candidate, ...]:
    idx = table.indices(name)
    if not idx:
        return ()
    out: list[Candidate] = []
    if not table.is_module or table.core is None:
        for pos, i in enumerate(idx, 1):
            full = pos if (not table.is_module or table.full_known) else None
            out.append(Candidate(table.objname, name, pos, full,
                                 table.values[i] if table.values is not None else None,
                                 table.types[i], table.source,
                                 table.sections[i] if table.sections is not None else None,
                                 file=table.files[i] or None if table.files is not None else None))
        return tuple(out)
    core_pos = 0
    for full_pos, i in enumerate(idx, 1):
        is_core = bool(table.core[i])
        if is_core:
            core_pos += 1
        out.append(Candidate(table.objname, name, core_pos if is_core else None, full_pos,
                             table.values[i] if table.values is not None else None, table.types[i],
                             table.source, table.sections[i] if table.sections is not None else None,
                             is_core, table.files[i] or None if table.files is not None else None))
    return tuple(out)


def _pick(cands: Sequence[Candidate], sympos: int) -> Candidate | str:
    """klp_find_object_symbol over one list: the candidate, or 'missing', 'ambiguous' or 'range'."""
    if not cands:
        return "missing"
    if sympos == 0:
        return cands[0] if len(cands) == 1 else "ambiguous"
    return cands[sympos - 1] if sympos <= len(cands) else "range"


def _resolve_single(objname: str, cands: Sequence[Candidate], name: str, sympos: int,
                    table: ObjectTable) -> Resolution:
    got = _pick(cands, sympos)
    if isinstance(got, Candidate):
        return Resolved(got, sympos)
    return _pick_problem(got, objname, cands, name, sympos, table, len(cands))


def _pick_problem(kind: str, objname: str, cands: Sequence[Candidate], name: str, sympos: int,
                  table: ObjectTable, count: int, loading_count: int | None = None) -> SymbolProblem:
    """The kernel's two refusals, worded with what to write instead.

    `count` is what the kernel counts (for a module: once loaded); `loading_count` is the count
    while a module is still loading, when it differs.
    """
    lines = tuple(c.sympos_line() for c in cands)
    order = f"positions counted in {table.order} from {table.source}"
    copies = _copies(count)
    both_paths = loading_count is not None and loading_count != count
    loading = ""
    if both_paths:
        copies += f"; {loading_count} while {objname} is still loading"
        loading = f" ({loading_count} while it is still loading)"
    if kind == "ambiguous":
        if both_paths:
            valid = [c for c in cands if c.position is not None and c.position == c.full_position]
            fix = ("positions valid in both load orders: " + ", ".join(str(c.position) for c in valid)
                   if valid else "no position selects the same copy in both load orders")
        else:
            fix = f"give KLP_SYMPOS({name}, 1..{count})"
        return SymbolProblem(
            "sympos-ambiguous", objname, name, sympos,
            f"{name} is ambiguous in {objname} ({copies}); position 0 needs a unique name: {fix}",
            (*lines, order, f"at load the kernel would say: unresolvable ambiguity for symbol "
                            f"'{name}' in object '{_kernel_objname(objname)}'"),
            tuple(cands), tuple(str(c.position) for c in cands if c.position is not None))
    return SymbolProblem(
        "sympos-not-found", objname, name, sympos,
        f"{name} has {_copies(count)} in {objname}{loading}; position {sympos} does not exist",
        (*lines, order, f"at load the kernel would say: symbol position {sympos} for symbol "
                        f"'{name}' in object '{objname}' not found"),
        tuple(cands), tuple(str(c.position) for c in cands if c.position is not None))


def _resolve_module(table: ObjectTable, cands: Sequence[Candidate], name: str,
                    sympos: int) -> Resolution:
    """Both load orders must bind the same symbol, or the patch works in only one of them.

    Already loaded, the kernel counts core symbols; loading after the patch, it counts the whole
    `.symtab` (klp_module_coming runs before do_init_module). A name with a copy in `.init*` or a
    non-allocated section can therefore mean two different symbols.
    """
    objname = table.objname
    core = [c for c in cands if c.position is not None]
    loaded = _pick(core, sympos)
    if not table.full_known:
        if isinstance(loaded, Candidate):
            return Resolved(loaded, sympos)
        return _pick_problem(loaded, objname, core, name, sympos, table, len(core))
    late = _pick(cands, sympos)
    if isinstance(loaded, Candidate) and isinstance(late, Candidate) and loaded is late:
        return Resolved(loaded, sympos)
    if not isinstance(loaded, Candidate) and loaded == late:
        return _pick_problem(loaded, objname, cands, name, sympos, table, len(core), len(cands))

    def describe(got: Candidate | str, count: int) -> str:
        if isinstance(got, Candidate):
            return f"selects {got.name} at {got.where()}"
        if got == "ambiguous":
            return f"is ambiguous ({_copies(count)})"
        if got == "missing":
            return f"finds no {name}"
        return f"does not exist ({_copies(count)})"

    both = [c for c in cands if c.position is not None and c.position == c.full_position]
    if len(core) == 1 and len(cands) == 1:
        fix = "position 0 selects the same symbol in both cases"
    elif both:
        fix = "positions valid for both: " + ", ".join(
            f"KLP_SYMPOS({name}, {c.position}) ({c.where()})" for c in both)
    else:
        fix = f"no position selects the same {name} in both cases"
    message = (f"KLP_SYMPOS({name}, {sympos}) means different symbols in module {objname}: if "
               f"{objname} is already loaded when the patch loads, it {describe(loaded, len(core))} "
               f"(the kernel counts only symbols kept after init); if {objname} loads after the "
               f"patch, it {describe(late, len(cands))} (the kernel also counts init and "
               f"non-allocated sections); {fix}")
    notes = (*(c.sympos_line() for c in cands),
             f"positions counted in {table.order} from {table.source}")
    suggestions = tuple(str(c.position) for c in both)
    return SymbolProblem("sympos-module-paths", objname, name, sympos, message, notes, tuple(cands),
                         suggestions)
