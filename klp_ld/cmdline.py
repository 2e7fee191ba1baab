"""Read the command line the way GNU ld does: klp-ld's options, `@file`s, ld's option grammar.

This module runs on every `$(LD)` call kbuild makes, including the ld-option probe, so it imports
nothing but `os`: the pass-through path must cost little more than the interpreter's start-up.

A livepatch link rewrites inputs and writes the output itself, so klp-ld must know exactly which
arguments ld reads as input files, where the output goes and whether the link is relocatable, in
every spelling ld accepts: long options with one dash or two, unambiguous abbreviations
(`--outp=x`), grouped short options (`-Sr`), values attached or separate, `@file`s nested to any
depth, and ld's own quirks (`-output x` is `-o utput` plus an input `x`). The grammar is GNU ld
2.40's option table (lexsup.c and the x86 ELF emulation) read through glibc's getopt_long_only, the
way ld's parse_args drives it. A command line this grammar says ld rejects -- an option it does
not know, an ambiguous abbreviation, too many `@file`s -- or one that cannot be read without side
effects (an `@file` that is a FIFO) is "in doubt": it goes to ld untouched unless a file it names
carries livepatch annotations, and then klp-ld refuses it with one error rather than guess.
"""

from __future__ import annotations

import os

# Kinds of invocation, ordered by how much klp-ld does with them.
PROBE = "probe"              # -v, --version, --help: pass through
PASSTHROUGH = "passthrough"  # any link that is not a livepatch one
PARTIAL = "partial"          # ld -r of objects that carry livepatch annotations
FINAL = "final"              # ld -r -T .../module.lds -o foo.ko of a livepatch module

FLAG_OPTIONS = {
    "--klp-keep-tmp": "keep_tmp",
    "--klp-verbose": "verbose",
    "--dry-run": "dry_run",
    "--klp-dry-run": "dry_run",
    "--klp-fatal-warnings": "fatal_warnings",
    "--klp-print-include-dir": "print_include_dir",
    "--klp-print-sources": "print_sources",
    "--klp-no-discover": "no_discover",
    "--klp-help": "help",
    "--klp-version": "version",
}
VALUE_OPTIONS = {
    "--klp-real-ld": "real_ld",
    "--klp-symbols": "symbols",
    "--klp-symvers": "symvers",
    "--klp-report": "report",
}
# The environment carries settings when kbuild owns the command line (`make LD=klp-ld`).
ENVIRONMENT = {
    "KLP_LD_REAL": "real_ld",
    "KLP_LD_SYMBOLS": "symbols",
    "KLP_LD_SYMVERS": "symvers",
    "KLP_LD_REPORT": "report",
    "KLP_LD_KEEP_TMP": "keep_tmp",
    "KLP_LD_VERBOSE": "verbose",
    "KLP_LD_DRY_RUN": "dry_run",
    "KLP_LD_FATAL_WARNINGS": "fatal_warnings",
    "KLP_LD_NO_DISCOVER": "no_discover",
}
_LISTS = ("symbols", "symvers")  # repeatable options; their variables are colon-separated, like PATH
_TRUE = ("1", "y", "yes", "true", "on")

# ---------------------------------------------------------------------------------------------
# GNU ld 2.40's options, in its table order (which decides nothing but is kept for fidelity):
# `name:` takes a value, `name::` an optional one (only as `--name=value`). Names with '=' are
# spelled that way in lexsup.c; getopt matches them by prefix only, as ld does.
_LONG_TABLE = """
architecture: format: mri-script: dc dp dependency-file: force-group-allocation entry: export-dynamic
no-export-dynamic enable-non-contiguous-regions enable-non-contiguous-regions-warnings EB EL auxiliary:
filter: gpsize: soname: dynamic-linker: no-dynamic-linker library: library-path: sysroot=<DIRECTORY>:
print-map nmagic out-implib: plugin: plugin-opt: flto:: flto-partition=: fuse-ld=: map-whole-files::
no-map-whole-files:: Qy emit-relocs relocatable just-symbols: strip-all strip-debug strip-discarded
no-strip-discarded trace script: default-script: dT: undefined: require-defined: unique:: Ur version
discard-all discard-locals discard-none trace-symbol: start-group end-group accept-unknown-input-arch
no-accept-unknown-input-arch add-needed no-add-needed as-needed no-as-needed assert: Bdynamic dy
call_shared Bstatic dn non_shared static Bno-symbolic Bsymbolic Bsymbolic-functions check-sections
no-check-sections copy-dt-needed-entries no-copy-dt-needed-entries cref defsym: demangle::
disable-multiple-abs-defs embedded-relocs fatal-warnings no-fatal-warnings fini: force-exe-suffix
gc-sections no-gc-sections print-gc-sections no-print-gc-sections gc-keep-exported hash-size=<NUMBER>:
help init: Map: no-define-common no-demangle no-keep-memory no-undefined no-warnings
allow-shlib-undefined no-allow-shlib-undefined allow-multiple-definition error-handling-script:
no-undefined-version default-symver default-imported-symver no-warn-mismatch no-warn-search-mismatch
no-whole-archive noinhibit-exec noinhibit_exec nostdlib print-output-format print-sysroot qmagic
reduce-memory-overheads max-cache-size=SIZE: relax no-relax retain-symbols-file: rpath: rpath-link:
shared Bshareable pie pic-executable no-pie sort-common:: sort_common sort-section: spare-dynamic-tags:
split-by-file:: split-by-reloc:: stats target-help task-link: traditional-format section-start: Tbss:
Tdata: Ttext: Ttext-segment: Trodata-segment: Tldata-segment: unresolved-symbols=<method>: verbose::
dll-verbose version-script: version-exports-section: dynamic-list-data dynamic-list-cpp-new
dynamic-list-cpp-typeinfo dynamic-list: warn-common warn-constructors warn-execstack no-warn-execstack
warn-rwx-segments no-warn-rwx-segments warn-multiple-gp warn-once warn-section-align warn-textrel
warn-shared-textrel warn-alternate-em warn-unresolved-symbols error-unresolved-symbols whole-archive
wrap: ignore-unresolved-symbol: push-state pop-state print-memory-usage orphan-handling:
print-map-discarded no-print-map-discarded ctf-variables no-ctf-variables ctf-share-types=<method>:
audit: Bgroup build-id:: package-metadata:: compress-debug-sections: depaudit: disable-new-dtags
enable-new-dtags eh-frame-hdr no-eh-frame-hdr exclude-libs: hash-style: ld-generated-unwind-info
no-ld-generated-unwind-info
"""
# EXACTLY_TWO_DASHES options: ld tries them only after the table above failed, and only for `--`.
_REALLY_LONG_TABLE = """
omagic no-omagic output: undefined-version oformat: export-dynamic-symbol: export-dynamic-symbol-list:
"""
_SHORT_TABLE = "a:A:b:c:de:Ef:F:gG:h:I:l:L:m:MnNo:O:qriR:sStT:u:vVxXy:Y:()wz:P:"
# What an emulation appends to the long options (its PARSE_AND_LIST_LONGOPTS, ld/emultempl/*.em);
# the x86 emulations append none.
_PPC64_LONG_TABLE = """
stub-group-size: plt-static-chain no-plt-static-chain plt-thread-safe no-plt-thread-safe plt-align::
no-plt-align plt-localentry:: no-plt-localentry power10-stubs:: no-pcrel-optimize no-power10-stubs
emit-stub-syms no-emit-stub-syms dotsyms no-dotsyms save-restore-funcs no-save-restore-funcs
no-tls-optimize tls-get-addr-optimize no-tls-get-addr-optimize tls-get-addr-regsave
no-tls-get-addr-regsave no-opd-optimize no-inline-optimize no-toc-optimize no-multi-toc no-toc-sort
non-overlapping-opd
"""
# Every aarch64 emulation (aarch64linux, aarch64elf and their big-endian and ILP32 variants) takes
# aarch64elf.em's options; it also adds the short option `-p` (--no-pipeline-knowledge, a no-op).
_AARCH64_LONG_TABLE = """
no-pipeline-knowledge no-enum-size-warning pic-veneer stub-group-size: no-wchar-size-warning
fix-cortex-a53-835769 fix-cortex-a53-843419:: no-apply-dynamic-relocs
"""
# The 64-bit s390 emulation (ld/emultempl/s390.em) adds one option; 2.40's 31-bit elf_s390 does not.
_S390_LONG_TABLE = """
s390-pgste
"""

# What klp-ld needs to know about an option, by name; every other option only has to be skipped.
_KEYS = {
    "output": "o", "script": "T", "relocatable": "r", "Ur": "r", "format": "b", "mri-script": "c",
    "default-script": "dT", "dT": "dT", "library": "l", "library-path": "L", "just-symbols": "R",
    "Map": "Map", "print-map": "M", "dependency-file": "depfile", "out-implib": "out-implib",
    "whole-archive": "whole-archive", "no-whole-archive": "no-whole-archive",
    "push-state": "push-state", "pop-state": "pop-state",
    # ld prints something and exits 0 at these, before reading anything else
    "version": "exit", "help": "exit", "target-help": "exit", "print-sysroot": "exit",
}
_SHORT_KEYS = {"i": "r", "V": "v"}
# Emulations whose options klp-ld knows, and what each adds to the table above; another
# emulation's options may differ.
_AARCH64_EMULATIONS = ("aarch64linux", "aarch64elf", "aarch64linuxb", "aarch64elfb", "aarch64linux32",
                       "aarch64linux32b", "aarch64elf32", "aarch64elf32b")
_EMULATION_TABLES = {"elf_x86_64": "", "elf32_x86_64": "", "elf_i386": "", "elf_iamcu": "",
                     "elf64lppc": _PPC64_LONG_TABLE, "elf64ppc": _PPC64_LONG_TABLE,
                     "elf64_s390": _S390_LONG_TABLE, "elf_s390": "",
                     **dict.fromkeys(_AARCH64_EMULATIONS, _AARCH64_LONG_TABLE)}
# What an emulation adds to the short options (its PARSE_AND_LIST_SHORTOPTS).
_EMULATION_SHORT = dict.fromkeys(_AARCH64_EMULATIONS, "p")
_C_SPACE = " \t\n\v\f\r"  # libiberty's ISSPACE; Python's str.isspace() also takes \x1c-\x1f and more
GRAMMAR_VERSION = "2.40"  # the GNU ld whose option table this is
RESPONSE_FILE_LIMIT = 2000  # libiberty's expandargv: the 2000th '@' argument is an error
_S_IFMT, _S_IFDIR, _S_IFREG = 0o170000, 0o040000, 0o100000  # stat.h, without importing stat


def _table(text: str) -> dict[str, tuple[int, str]]:
    """name -> (0 no value / 1 required / 2 optional, key), in table order."""
    out: dict[str, tuple[int, str]] = {}
    for word in text.split():
        name = word.rstrip(":")
        takes = min(len(word) - len(name), 2)
        out.setdefault(name, (takes, _KEYS.get(name, name)))
    return out


_LONG = _table(_LONG_TABLE)
_LONG_BY_EMULATION = {name: _table(_LONG_TABLE + extra) if extra else _LONG
                      for name, extra in _EMULATION_TABLES.items()}
_REALLY_LONG = _table(_REALLY_LONG_TABLE)
_FIRST_LONG = next(iter(_LONG))


def _short_table(text: str) -> dict[str, int]:
    """option letter -> 0 no value / 1 a value."""
    return {c: 1 if text[i + 1:i + 2] == ":" else 0 for i, c in enumerate(text) if c != ":"}


_SHORT = _short_table(_SHORT_TABLE)
_SHORT_BY_EMULATION = {name: _short_table(_SHORT_TABLE + extra) for name, extra in _EMULATION_SHORT.items()}
_AMBIGUOUS = ("", (0, ""))


class UsageError(Exception):
    """A klp-ld option is malformed; reported before anything runs."""


class Options:
    """klp-ld's own settings, from `--klp-*` options over `KLP_LD_*` environment variables."""

    __slots__ = ("dry_run", "fatal_warnings", "help", "keep_tmp", "no_discover", "print_include_dir",
                 "print_sources", "real_ld", "report", "symbols", "symvers", "verbose", "version")

    def __init__(self) -> None:
        self.real_ld: str | None = None
        self.symbols: list[str] = []
        self.symvers: list[str] = []
        self.report: str | None = None
        self.keep_tmp = False
        self.verbose = False
        self.dry_run = False
        self.fatal_warnings = False
        self.no_discover = False
        self.print_include_dir = False
        self.print_sources = False
        self.help = False
        self.version = False


class Arg:
    """One ld argument after `@file` expansion, remembering which top-level argument it came from."""

    __slots__ = ("origin", "value")

    def __init__(self, value: str, origin: int) -> None:
        self.value = value
        self.origin = origin


class Located:
    """An option's value and where it is: argument `index` of the expansion, after `prefix`.

    Rewriting the value means replacing that argument with `prefix + new value`; `prefix` is ""
    when the value is an argument of its own (`-o out.o`), `-o` or `--outp=` when attached.
    """

    __slots__ = ("index", "prefix", "value")

    def __init__(self, value: str, index: int, prefix: str) -> None:
        self.value = value
        self.index = index
        self.prefix = prefix


class Input:
    """An input file ld reads (or, for `-l`, searches for), with the state it is read in."""

    __slots__ = ("fmt", "index", "path", "whole_archive")

    def __init__(self, path: str, index: int, whole_archive: bool, fmt: str | None) -> None:
        self.path = path
        self.index = index
        self.whole_archive = whole_archive
        self.fmt = fmt  # `-b FORMAT` in effect, None for ld's default


class LinkCommand:
    """An ld command line as GNU ld reads it: what klp-ld needs and what the real ld gets.

    Built once by `parse` and not changed afterwards; `with_kind` makes the classified copy.
    """

    __slots__ = ("args", "cwd", "depfile", "doubts", "emulation", "exits_early", "expanded", "input_files",
                 "inputs",
                 "invoked_as", "kind", "ld_argv", "libraries", "library_dirs", "map_file", "map_stdout",
                 "options", "out_implib", "output", "output_arg", "rejected", "relocatable", "script",
                 "scripts", "wants_info")

    def __init__(self, invoked_as: str, ld_argv: list[str], expanded: list[Arg], options: Options,
                 cwd: str) -> None:
        self.invoked_as = invoked_as
        self.ld_argv = tuple(ld_argv)       # exactly what the real ld gets on pass-through
        self.expanded = tuple(expanded)     # ld_argv with every @file expanded
        self.args = tuple(a.value for a in expanded)
        self.options = options
        self.cwd = cwd
        self.kind = PASSTHROUGH
        self.inputs: tuple[int, ...] = ()              # indices into `expanded` of input files
        self.input_files: tuple[Input, ...] = ()       # the same inputs, with their state
        self.libraries: tuple[Input, ...] = ()         # `-l` specs, searched in `library_dirs`
        self.library_dirs: tuple[str, ...] = ()
        self.output: str | None = None                 # the last -o; None means ld's a.out
        self.output_arg: Located | None = None
        self.scripts: tuple[tuple[str, str], ...] = ()  # ("T" | "c" | "dT", path), in order
        self.script: str | None = None                 # the last -T
        self.map_file: Located | None = None           # -Map FILE
        self.map_stdout = False                        # -M, or -Map -
        self.depfile: Located | None = None            # --dependency-file FILE
        self.out_implib: str | None = None
        self.relocatable = False
        self.wants_info = False                        # -v / -V: print the version, link if asked
        self.exits_early = False                       # --help, --version...: ld prints and exits
        self.rejected: str | None = None               # why ld would reject this command line
        self.doubts: tuple[str, ...] = ()              # why klp-ld cannot be sure what ld does
        self.emulation: str | None = None              # the -m in effect; None: the real ld's default

    def input_paths(self) -> list[str]:
        return [self.expanded[i].value for i in self.inputs]

    def with_kind(self, kind: str) -> LinkCommand:
        copy = LinkCommand.__new__(LinkCommand)
        for name in LinkCommand.__slots__:
            setattr(copy, name, getattr(self, name))
        copy.kind = kind
        return copy


def _truthy(value: str) -> bool:
    return value.strip().lower() in _TRUE


def _set(options: Options, attr: str, value: str | bool, *, from_env: bool) -> None:
    if attr in _LISTS and isinstance(value, str):
        items: list[str] = getattr(options, attr)
        if from_env:
            items.extend(p for p in value.split(":") if p)
        else:
            items.append(value)
    elif isinstance(getattr(options, attr), bool):
        setattr(options, attr, _truthy(value) if isinstance(value, str) else value)
    else:
        setattr(options, attr, value)


def split_options(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> tuple[Options, list[str]]:
    """Take klp-ld's options out of `argv`; everything else is ld's and keeps its order."""
    options = Options()
    for var, attr in ENVIRONMENT.items():
        if environ.get(var):
            _set(options, attr, environ[var], from_env=True)
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--"):
            rest.append(arg)
            continue
        if arg in FLAG_OPTIONS:
            _set(options, FLAG_OPTIONS[arg], True, from_env=False)
            continue
        name, eq, value = arg.partition("=")
        if name in VALUE_OPTIONS:
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"option '{name}' needs a value")
                value = argv[i]
                i += 1
            if not value:
                raise UsageError(f"option '{name}' needs a non-empty value")
            _set(options, VALUE_OPTIONS[name], value, from_env=False)
            continue
        if arg.startswith("--klp-"):
            raise UsageError(f"unknown option '{name}' (see --klp-help)")
        rest.append(arg)
    return options, rest


# ---------------------------------------------------------------------------------------------
# @file expansion, as libiberty's expandargv and buildargv do it


def parse_response_text(text: str) -> list[str]:
    """Split an `@file` the way libiberty's buildargv does (GNU ld's reader).

    C whitespace separates arguments; single and double quotes group; a backslash escapes the next
    character anywhere, inside quotes too; quotes that group nothing still make an (empty) argument.
    The file ends at its first NUL byte, as the C string it is read into does.
    """
    text = text.partition("\0")[0]
    if not any(c in text for c in "'\"\\\x1c\x1d\x1e\x1f") and text.isascii():
        return text.split()  # the common case; ASCII str.split() is C's isspace() without \x1c-\x1f
    args: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _C_SPACE:
            i += 1
        if i >= n:
            return args
        piece: list[str] = []
        squote = dquote = bsquote = False
        while i < n:
            ch = text[i]
            if ch in _C_SPACE and not (squote or dquote or bsquote):
                break
            if bsquote:
                bsquote = False
                piece.append(ch)
            elif ch == "\\":
                bsquote = True
            elif squote:
                if ch == "'":
                    squote = False
                else:
                    piece.append(ch)
            elif dquote:
                if ch == '"':
                    dquote = False
                else:
                    piece.append(ch)
            elif ch == "'":
                squote = True
            elif ch == '"':
                dquote = True
            else:
                piece.append(ch)
            i += 1
        args.append("".join(piece))


def quote_response_arg(arg: str) -> str:
    """Quote one argument so that `parse_response_text` (and GNU ld) reads it back unchanged."""
    if arg and not any(c in _C_SPACE or c in "'\"\\" for c in arg):
        return arg
    return "'" + "".join("\\" + c if c in "'\\" else c for c in arg) + "'"


class Expansion:
    """The arguments after `@file` expansion, and what stopped it, if anything."""

    __slots__ = ("args", "doubt", "rejected")

    def __init__(self, args: list[Arg], rejected: str | None, doubt: str | None) -> None:
        self.args = args
        self.rejected = rejected  # ld itself fails on this (its own words)
        self.doubt = doubt        # klp-ld cannot read it without changing what ld would read


def expand_response_files(argv: list[str], cwd: str, limit: int = RESPONSE_FILE_LIMIT) -> Expansion:
    """Expand `@file` arguments as libiberty's expandargv does, iteratively.

    Every argument that starts with '@' counts against the limit, read or not; one that cannot be
    stat'ed or opened stays a literal argument; a directory is an error. A file that is not a
    regular file (a FIFO, /dev/stdin) is not read: reading it would take its contents from ld.
    """
    out: list[Arg] = []
    seen = 0
    parsed: dict[str, list[str]] = {}  # a file met again (a loop) is not parsed again
    stack: list[tuple[list[str], int, int | None]] = [(argv, 0, None)]
    while stack:
        values, pos, origin = stack.pop()
        while pos < len(values):
            value = values[pos]
            here = pos if origin is None else origin
            pos += 1
            if not value.startswith("@"):
                out.append(Arg(value, here))
                continue
            seen += 1
            if seen >= limit:
                return Expansion(out, "too many @-files encountered", None)
            path = os.path.join(cwd, value[1:])
            try:
                st = os.stat(path)
            except (OSError, ValueError):
                out.append(Arg(value, here))
                continue
            if st.st_mode & _S_IFMT == _S_IFDIR:
                return Expansion(out, "@-file refers to a directory", None)
            if st.st_mode & _S_IFMT != _S_IFREG:
                out.append(Arg(value, here))
                return Expansion(out, None, f"response file '{value[1:]}' is not a regular file")
            inner = parsed.get(path)
            if inner is None:
                try:
                    with open(path, "rb") as f:
                        text = f.read().decode("utf-8", "surrogateescape")
                except OSError:
                    out.append(Arg(value, here))
                    continue
                inner = parsed[path] = parse_response_text(text)
            stack.append((values, pos, origin))
            values, pos, origin = inner, 0, here
    return Expansion(out, None, None)


# ---------------------------------------------------------------------------------------------
# ld's option grammar: glibc's getopt_long_only as ld's parse_args drives it


def _match_long(name: str, table: dict[str, tuple[int, str]], long_only: bool
                ) -> tuple[str, tuple[int, str]] | None:
    """getopt's long-option lookup: an exact name, else the one option `name` abbreviates.

    Returns None when nothing matches and `_AMBIGUOUS` when several do (getopt_long_only calls any
    two matches ambiguous; getopt_long only two that differ).
    """
    spec = table.get(name)
    if spec is not None:
        return name, spec
    found: tuple[str, tuple[int, str]] | None = None
    for candidate, cspec in table.items():
        if candidate.startswith(name):
            if found is None:
                found = (candidate, cspec)
            elif long_only or found[1] != cspec:
                return _AMBIGUOUS
    return found


class _Scan:
    """The state of one pass over ld's arguments; `run` fills it the way ld's parse_args would."""

    def __init__(self, args: list[str], long_options: dict[str, tuple[int, str]] = _LONG,
                 short_options: dict[str, int] = _SHORT) -> None:
        self.args = args
        self.long_options = long_options
        self.short_options = short_options
        self.inputs: list[Input] = []
        self.libraries: list[Input] = []
        self.library_dirs: list[str] = []
        self.scripts: list[tuple[str, str]] = []
        self.output: Located | None = None
        self.map_file: Located | None = None
        self.map_stdout = False
        self.depfile: Located | None = None
        self.out_implib: str | None = None
        self.relocatable = False
        self.wants_info = False
        self.exits_early = False
        self.rejected: str | None = None
        self.whole_archive = False
        self.fmt: str | None = None
        self.states: list[tuple[bool, str | None]] = []

    def reject(self, why: str) -> None:
        self.rejected = why

    def option(self, key: str, value: Located | None) -> bool:
        """Act on one option as ld does; False stops the scan (ld exits or fails here)."""
        text = value.value if value is not None else ""
        if key == "o":
            self.output = value
        elif key == "r":
            self.relocatable = True
        elif key in ("T", "c", "dT"):
            self.scripts.append((key, text))
        elif key == "whole-archive":
            self.whole_archive = True
        elif key == "no-whole-archive":
            self.whole_archive = False
        elif key == "push-state":
            self.states.append((self.whole_archive, self.fmt))
        elif key == "pop-state":
            if not self.states:
                self.reject("no state pushed before popping")
                return False
            self.whole_archive, self.fmt = self.states.pop()
        elif key == "b":
            self.fmt = None if text == "default" else text
        elif key == "l" and value is not None:
            self.libraries.append(Input(text, value.index, self.whole_archive, self.fmt))
        elif key == "L":
            self.library_dirs.append(text)
        elif key == "Map":
            self.map_file = value
        elif key == "M":
            self.map_stdout = True
        elif key == "depfile":
            self.depfile = value
        elif key == "out-implib":
            self.out_implib = text
        elif key == "v":
            self.wants_info = True
        elif key == "exit":
            self.exits_early = True
            return False
        return True

    def run(self) -> None:
        args = self.args
        n = len(args)
        i = 0
        while i < n:
            arg = args[i]
            if arg == "--":
                return  # getopt stops here, and ld reads nothing after it
            if arg[:1] != "-" or arg == "-":
                self.inputs.append(Input(arg, i, self.whole_archive, self.fmt))
                i += 1
                continue
            if arg.startswith("--"):
                step = self._long(i, arg[2:], True)
            elif len(arg) > 2 or arg[1] not in self.short_options:
                step = self._long(i, arg[1:], False)
                if step == 0:
                    step = self._short(i)
            else:
                step = self._short(i)
            if step < 0:
                return
            i += step

    def _long(self, i: int, text: str, two_dashes: bool) -> int:
        """A long option at argument i: arguments consumed, 0 to read it as short ones, -1 to stop."""
        arg = self.args[i]
        name, eq, attached = text.partition("=")
        match = _match_long(name, self.long_options, True)
        if match is None and not two_dashes and arg[1] in self.short_options:
            return 0  # `-Sr`, `-ofile`: getopt_long_only falls back to short options
        if match is None or match is _AMBIGUOUS:
            # ld retries with the options that take exactly two dashes, which only `--x` can reach
            first = match
            match = _match_long(name, _REALLY_LONG, False) if two_dashes else None
            if match is None or match is _AMBIGUOUS:
                what = "ambiguous" if _AMBIGUOUS in (first, match) else "unrecognized"
                self.reject(f"{what} option '{arg}'")
                return -1
        elif match[0] == _FIRST_LONG:
            # lexsup.c takes longind == 0 for a short option, and the first long option in its
            # table has a value: ld stops with "unable to disambiguate" on every spelling of it
            self.reject(f"unable to disambiguate: {arg}")
            return -1
        takes, key = match[1]
        if eq:
            if not takes:
                self.reject(f"option '{arg}' doesn't allow an argument")
                return -1
            return 1 if self.option(key, Located(attached, i, arg[:len(arg) - len(attached)])) else -1
        if takes == 1:
            if i + 1 >= len(self.args):
                self.reject(f"option '{arg}' requires an argument")
                return -1
            return 2 if self.option(key, Located(self.args[i + 1], i + 1, "")) else -1
        return 1 if self.option(key, None) else -1

    def _short(self, i: int) -> int:
        """A group of short options at argument i (`-Sr`, `-ofile`): arguments consumed, or -1."""
        arg = self.args[i]
        j = 1
        while j < len(arg):
            c = arg[j]
            j += 1
            takes = self.short_options.get(c)
            if takes is None:
                self.reject(f"unrecognized option '{arg}'")
                return -1
            key = _SHORT_KEYS.get(c, c)
            if not takes:
                if key == "r" and j < len(arg):
                    self.reject(f"unrecognised option: {arg}")  # -r must end its group
                    return -1
                if not self.option(key, None):
                    return -1
                continue
            if j < len(arg):
                value, used = Located(arg[j:], i, arg[:j]), 1
            elif i + 1 < len(self.args):
                value, used = Located(self.args[i + 1], i + 1, ""), 2
            else:
                self.reject(f"option requires an argument -- '{c}'")
                return -1
            if c != arg[1]:
                self.reject(f"Error: unable to disambiguate: {arg} (did you mean -{arg} ?)")
                return -1
            return used if self.option(key, value) else -1
        return 1


def _ld_rewrites(args: tuple[str, ...]) -> list[str]:
    """The two rewrites parse_args makes before getopt sees anything (see lexsup.c).

    `-G` not followed by a number is `--shared`; `-lNAME` is `--library=NAME`, so that `-li...`
    cannot read as an abbreviation of `--library`.
    """
    out = list(args)
    for k, value in enumerate(out):
        if value == "-G" and (k + 1 >= len(out) or not "0" <= out[k + 1][:1] <= "9"):
            out[k] = "--shared"
    for k, value in enumerate(out):
        if value[:2] == "-l" and len(value) > 2:
            out[k] = "--library=" + value[2:]
    return out


def _emulation(args: tuple[str, ...]) -> tuple[str | None, bool]:
    """The emulation the arguments name (ldmain.c's get_emulation scans them all before parsing,
    option values included), and whether the scan fails: `-m` as the last argument is fatal."""
    found = None
    k = 0
    while k < len(args):
        value = args[k]
        if value == "-m":
            if k + 1 >= len(args):
                return found, False
            found = args[k + 1]
            k += 1
        elif value.startswith("-m") and not value.startswith(("-mips", "-m486")):
            found = value[2:]
        k += 1
    return found, True


def analyse(cmd: LinkCommand) -> None:
    """Read the expanded command line as GNU ld would; fills in the fields `parse` documents."""
    emulation, emulation_ok = _emulation(cmd.args)
    scan = _Scan(_ld_rewrites(cmd.args), _LONG_BY_EMULATION.get(emulation or "", _LONG),
                 _SHORT_BY_EMULATION.get(emulation or "", _SHORT))
    if emulation_ok:
        scan.run()
    else:
        scan.reject("missing argument to -m")
    doubts = list(cmd.doubts)
    if emulation is not None and emulation not in _EMULATION_TABLES and not scan.rejected:
        doubts.append(f"emulation '{emulation}' may have options klp-ld does not know")
    cmd.emulation = emulation
    cmd.input_files = tuple(scan.inputs)
    cmd.inputs = tuple(f.index for f in scan.inputs)
    cmd.libraries = tuple(scan.libraries)
    cmd.library_dirs = tuple(scan.library_dirs)
    cmd.output_arg = scan.output
    cmd.output = scan.output.value if scan.output is not None else None
    cmd.scripts = tuple(scan.scripts)
    cmd.script = next((path for key, path in reversed(scan.scripts) if key == "T"), None)
    cmd.map_file = scan.map_file if scan.map_file is None or scan.map_file.value != "-" else None
    cmd.map_stdout = scan.map_stdout or (scan.map_file is not None and scan.map_file.value == "-")
    cmd.depfile = scan.depfile
    cmd.out_implib = scan.out_implib
    cmd.relocatable = scan.relocatable
    cmd.wants_info = scan.wants_info
    cmd.exits_early = scan.exits_early
    cmd.rejected = cmd.rejected or scan.rejected
    cmd.doubts = tuple(doubts)


def parse(argv: list[str], environ: dict[str, str] | os._Environ[str], cwd: str,
          invoked_as: str = "klp-ld") -> LinkCommand:
    options, ld_argv = split_options(argv, environ)
    expansion = expand_response_files(ld_argv, cwd)
    cmd = LinkCommand(invoked_as, ld_argv, expansion.args, options, cwd)
    cmd.rejected = expansion.rejected
    cmd.doubts = (expansion.doubt,) if expansion.doubt else ()
    if expansion.rejected is None and expansion.doubt is None:
        analyse(cmd)
    return cmd


# ---------------------------------------------------------------------------------------------
# Classification: is there livepatch work in this link?


def is_module_script(path: str | None) -> bool:
    """kbuild's final link uses `arch/<arch>/module.lds` or `scripts/module.lds`, often relative."""
    return path is not None and os.path.basename(path) == "module.lds"


# Bytes whose presence in an input means klp-ld has something to do. Scanning for them costs a
# fraction of parsing, and an input without them can go to ld untouched.
LIVEPATCH_MARKERS = (b".klp.", b"livepatch=Y")
ARCHIVE_MAGIC = b"!<arch>\n"
THIN_ARCHIVE_MAGIC = b"!<thin>\n"


def thin_archive_members(data: bytes, directory: str) -> list[str]:
    """The files a thin archive (`ar rcsT`) names: its members live outside it, by path.

    Headers are 60 bytes (name[16] ... size[10] "`\\n"); "/" and "/SYM64/" are symbol tables and
    "//" the long-name table, whose entries end in "/\\n"; only those three carry data.
    """
    members: list[str] = []
    names = b""
    at = len(THIN_ARCHIVE_MAGIC)
    while at + 60 <= len(data):
        header = data[at:at + 60]
        raw = header[:16].rstrip(b" ")
        try:
            size = int(header[48:58].decode("ascii").strip() or "0")
        except ValueError:
            break
        at += 60
        if raw in (b"/", b"/SYM64/", b"//"):
            if raw == b"//":
                names = data[at:at + size]
            at += size + (size & 1)
            continue
        if raw.startswith(b"/") and raw[1:].isdigit():
            start = int(raw[1:])
            end = names.find(b"/\n", start)
            name = names[start:end if end >= 0 else len(names)]
        else:
            name = raw[:-1] if raw.endswith(b"/") else raw
        path = os.fsdecode(name)
        members.append(path if os.path.isabs(path) else os.path.join(directory, path))
    return members


def read_regular(path: str, size: int = -1) -> bytes | None:
    """The contents of a regular file, None for anything else or an error (ld reports those in its
    own words). A FIFO or a device is never read: that would block, or take data from ld."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        if os.fstat(fd).st_mode & _S_IFMT != _S_IFREG:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(size)
    except OSError:
        return None
    finally:
        os.close(fd)


def mentions_livepatch(path: str, markers: tuple[bytes, ...] = LIVEPATCH_MARKERS, depth: int = 0) -> bool:
    """Whether `path` (or, for a thin archive, a member it names) contains a livepatch marker."""
    data = read_regular(path)
    if data is None:
        return False
    if data.startswith(THIN_ARCHIVE_MAGIC) and depth < 4:
        return any(mentions_livepatch(m, markers, depth + 1)
                   for m in thin_archive_members(data, os.path.dirname(path)))
    return any(m in data for m in markers)


def find_library(spec: str, directories: tuple[str, ...], cwd: str) -> str | None:
    """The file `-l spec` names in the `-L` directories, as ld searches them (`.so` before `.a`).

    ld's built-in directories are not searched: what they hold is the system's, not a livepatch's.
    """
    names = (spec[1:],) if spec.startswith(":") else (f"lib{spec}.so", f"lib{spec}.a")
    for directory in directories:
        if directory.startswith(("=", "$SYSROOT")):
            continue
        for name in names:
            candidate = os.path.join(cwd, directory, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def input_files_read(cmd: LinkCommand) -> list[tuple[str, str]]:
    """(as the user named it, path) of every file ld reads as an input: the files given and the
    `-l` libraries found."""
    out = [(f.path, os.path.join(cmd.cwd, f.path)) for f in cmd.input_files]
    for lib in cmd.libraries:
        found = find_library(lib.path, cmd.library_dirs, cmd.cwd)
        if found is not None:
            out.append((os.path.relpath(found, cmd.cwd), found))
    return out


def files_read(cmd: LinkCommand) -> list[tuple[str, str]]:
    """`input_files_read`, and the members of thin archives among them: files ld reads too, which
    an output must not replace."""
    out = input_files_read(cmd)
    for display, path in list(out):
        head = _read_head(path, len(THIN_ARCHIVE_MAGIC))
        if head == THIN_ARCHIVE_MAGIC:
            data = _read_head(path) or b""
            out.extend((f"{os.path.relpath(member, cmd.cwd)} (in {display})", member)
                       for member in thin_archive_members(data, os.path.dirname(path)))
    return out


def _named_files(cmd: LinkCommand) -> list[str]:
    """Every argument that names an existing regular file: the inputs ld may read, for a command
    line whose inputs klp-ld cannot be sure of."""
    out = []
    for value in cmd.args:
        for candidate in (value, value.partition("=")[2], value[2:] if value[:1] == "-" else ""):
            path = os.path.join(cmd.cwd, candidate) if candidate else ""
            if path and os.path.isfile(path):
                out.append(path)
    return out


def same_options(cmd: LinkCommand, default_emulation: str | None) -> bool:
    """Whether an ld whose default emulation is `default_emulation` reads `cmd` with the option
    table `cmd` was read with: with no -m, klp-ld assumed x86's, which a cross ld's emulation
    extends (`--save-restore-funcs` is an option to powerpc64le-linux-gnu-ld)."""
    if cmd.emulation is not None:
        return True
    name = default_emulation or ""
    return _LONG_BY_EMULATION.get(name) is _LONG and _SHORT_BY_EMULATION.get(name, _SHORT) is _SHORT


def classify(cmd: LinkCommand) -> str:
    """Decide what klp-ld does with this command; everything that is not livepatch work passes through.

    A command line in doubt is livepatch work (to be refused) as soon as any file it names carries
    a marker; otherwise it goes to ld, which reads it in its own way and says what it thinks.
    """
    if cmd.exits_early and not cmd.rejected:
        return PROBE
    if cmd.wants_info and not cmd.inputs and not cmd.libraries:
        return PROBE
    if cmd.rejected or cmd.doubts:
        return PARTIAL if any(mentions_livepatch(p) for p in _named_files(cmd)) else PASSTHROUGH
    if not cmd.relocatable:
        return PASSTHROUGH
    if not any(mentions_livepatch(path) for _, path in input_files_read(cmd)):
        return PASSTHROUGH
    final = any(key == "T" and is_module_script(path) for key, path in cmd.scripts)
    if final and cmd.output is not None and cmd.output.endswith(".ko"):
        return FINAL
    return PARTIAL


# ---------------------------------------------------------------------------------------------
# What klp-ld cannot do faithfully in a livepatch link


# Linker-script commands that name inputs or the output; klp-ld would not see those files.
_SCRIPT_COMMANDS = ("INPUT", "GROUP", "INCLUDE", "STARTUP", "OUTPUT")


def _script_commands(text: str) -> list[str]:
    """The file-naming commands a linker script uses (comments stripped; `OUTPUT(` but not
    `OUTPUT_FORMAT(`)."""
    while "/*" in text:
        start = text.index("/*")
        end = text.find("*/", start + 2)
        text = text[:start] + " " + (text[end + 2:] if end >= 0 else "")
    found = []
    for command in _SCRIPT_COMMANDS:
        at = text.find(command)
        while at >= 0:
            before = text[at - 1:at]
            after = text[at + len(command):].lstrip(_C_SPACE)[:1]
            if not (before.isalnum() or before in "_.") and after == "(":
                found.append(command)
                break
            at = text.find(command, at + 1)
    return found


def _read_head(path: str, size: int = -1) -> bytes | None:
    return read_regular(path, size)


def refusals(cmd: LinkCommand) -> list[str]:
    """Why klp-ld will not run this livepatch link: each reason names what ld would do instead.

    Annotated `-l` libraries are not refused here: telling whether a member is annotated takes the
    ELF reader (see klp_ld.archive.annotated_libraries).
    """
    if cmd.rejected:
        return [f"ld would reject this command line ({cmd.rejected}), and a file it names carries "
                "livepatch annotations: klp-ld does not hand such a link to ld unread"]
    if cmd.doubts:
        return [f"cannot tell how ld reads this command line ({cmd.doubts[0]}), and a file it names "
                "carries livepatch annotations: klp-ld does not hand such a link to ld unread"]
    out: list[str] = []
    if cmd.out_implib is not None:
        out.append(f"{cmd.out_implib}: --out-implib in a livepatch link is not supported: ld would write "
                   "an import library of the unconverted module")
    for key, path in cmd.scripts:
        if key == "c":
            out.append(f"{path}: MRI scripts (-c) name inputs and outputs that klp-ld would not see")
            continue
        data = _read_head(os.path.join(cmd.cwd, path))
        if data is None:
            continue  # ld reports a missing script in its own words
        found = [c for c in _script_commands(data.decode("utf-8", "replace"))
                 if c != "OUTPUT" or cmd.output is None]
        if found:
            out.append(f"{path}: the linker script uses {', '.join(found)}: it names files that klp-ld "
                       "would not see, so their annotations would merge")
    for item in cmd.input_files:
        path = os.path.join(cmd.cwd, item.path)
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            continue  # ld reports a missing input in its own words
        if mode & _S_IFMT != _S_IFREG:
            if mode & _S_IFMT != _S_IFDIR:
                out.append(f"{item.path}: not a regular file: klp-ld reads every input before ld does, "
                           "and reading this one would block or take its contents from ld")
            continue
        head = _read_head(path, 8)
        if head is None:
            continue
        if item.fmt is not None and mentions_livepatch(path):
            out.append(f"{item.path}: read as format '{item.fmt}' (-b), and it carries livepatch "
                       "annotations: klp-ld renames references only in ELF objects read as such")
        elif not head.startswith((b"\x7fELF", ARCHIVE_MAGIC, THIN_ARCHIVE_MAGIC)) and os.path.isfile(path):
            out.append(f"{item.path}: not an ELF object or archive: ld would read it as a linker script, "
                       "whose INPUT and GROUP commands klp-ld does not follow")
    return out
