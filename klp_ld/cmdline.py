"""Read the command line: split klp-ld's options from ld's, expand `@file`s, classify the link.

This module runs on every `$(LD)` call kbuild makes, including the ld-option probe, so it imports
nothing but `os`: the pass-through path must cost little more than the interpreter's start-up.
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
_TRUE = ("1", "y", "yes", "true", "on")

# GNU ld options whose value may be the next argument; their values are not input files.
_SHORT_WITH_VALUE = frozenset("aAbcefFGhlLmoOPRTuyYz")
_LONG_WITH_VALUE = frozenset((
    "output", "script", "architecture", "format", "entry", "auxiliary", "filter", "library",
    "library-path", "undefined", "just-symbols", "mri-script", "trace-symbol", "defsym",
    "dynamic-linker", "soname", "Map", "sysroot", "section-start", "Tbss", "Tdata", "Ttext",
    "Ttext-segment", "Trodata-segment", "Tldata-segment", "dT", "default-script", "exclude-libs",
    "version-script", "retain-symbols-file", "wrap", "plugin", "plugin-opt", "dependency-file",
    "hash-style", "image-base", "oformat", "rpath", "rpath-link", "require-defined", "dynamic-list",
    "export-dynamic-symbol", "export-dynamic-symbol-list", "out-implib", "package-metadata",
    "error-handling-script", "init", "fini", "audit", "depaudit",
))
_INFO_OPTIONS = frozenset(("-v", "-V", "--version", "-version", "--help", "-help", "--target-help"))


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


class LinkCommand:
    """An ld command line split into what klp-ld reads and what the real ld gets."""

    __slots__ = ("args", "cwd", "expanded", "inputs", "invoked_as", "kind", "ld_argv", "options",
                 "output", "output_at", "relocatable", "script", "wants_info")

    def __init__(self, invoked_as: str, ld_argv: list[str], expanded: list[Arg], options: Options,
                 cwd: str) -> None:
        self.invoked_as = invoked_as
        self.ld_argv = ld_argv          # exactly what the real ld gets on pass-through
        self.expanded = expanded        # ld_argv with every @file expanded
        self.options = options
        self.cwd = cwd
        self.inputs: list[int] = []     # indices into `expanded` of input files
        self.output: str | None = None
        self.output_at: tuple[int, str] | None = None  # (index in `expanded`, text before the path)
        self.script: str | None = None
        self.relocatable = False
        self.wants_info = False
        self.kind = PASSTHROUGH
        self.args = [a.value for a in expanded]

    def input_paths(self) -> list[str]:
        return [self.expanded[i].value for i in self.inputs]


def _truthy(value: str) -> bool:
    return value.strip().lower() in _TRUE


def _set(options: Options, attr: str, value: str | bool, *, from_env: bool) -> None:
    if attr in ("symbols", "symvers") and isinstance(value, str):
        # KLP_LD_SYMBOLS and KLP_LD_SYMVERS are colon-separated lists, like PATH; each option
        # names one file, and repeating it adds one.
        listed: list[str] = getattr(options, attr)
        if from_env:
            listed.extend(p for p in value.split(":") if p)
        else:
            listed.append(value)
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


def parse_response_text(text: str) -> list[str]:
    """Split an `@file` the way libiberty's buildargv does (GNU ld's reader).

    Whitespace separates arguments; single and double quotes group; a backslash escapes the next
    character anywhere, inside quotes too. Quotes that group nothing still make an (empty) argument.
    """
    args: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return args
        piece: list[str] = []
        squote = dquote = bsquote = False
        while i < n:
            ch = text[i]
            if ch.isspace() and not (squote or dquote or bsquote):
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
    if arg and not any(c.isspace() or c in "'\"\\" for c in arg):
        return arg
    return "'" + "".join("\\" + c if c in "'\\" else c for c in arg) + "'"


def expand_response_files(argv: list[str], cwd: str, limit: int = 2000) -> list[Arg]:
    """Expand `@file` arguments recursively, as libiberty's expandargv does.

    An `@file` that cannot be read stays a literal argument, exactly as GNU ld treats it.
    """
    out: list[Arg] = []
    budget = [limit]

    def expand(values: list[str], origin: int | None, depth: int) -> None:
        for index, value in enumerate(values):
            here = index if origin is None else origin
            if value.startswith("@") and len(value) > 1 and budget[0] > 0:
                path = os.path.join(cwd, value[1:])
                try:
                    with open(path, encoding="utf-8", errors="surrogateescape") as f:
                        text = f.read()
                except OSError:
                    out.append(Arg(value, here))
                    continue
                budget[0] -= 1
                expand(parse_response_text(text), here, depth + 1)
            else:
                out.append(Arg(value, here))

    expand(argv, None, 0)
    return out


def _option_value(args: list[str], i: int) -> tuple[str | None, str | None, int, str]:
    """Recognise -o/-T in all their spellings.

    Returns (which, value, arguments consumed, text before the value in its argument).
    """
    arg = args[i]
    for short, long_ in (("-o", "output"), ("-T", "script")):
        if arg == short or arg in (f"--{long_}", f"-{long_}"):
            return short, args[i + 1] if i + 1 < len(args) else None, 2, ""
        if arg.startswith(short) and len(arg) > 2 and not arg.startswith("--"):
            if arg[1:].split("=", 1)[0] in _LONG_WITH_VALUE:  # -Ttext=ADDR, -Tbss, -oformat
                continue
            return short, arg[2:], 1, short
        for dashes in ("--", "-"):
            if arg.startswith(f"{dashes}{long_}="):
                return short, arg.split("=", 1)[1], 1, f"{dashes}{long_}="
    return None, None, 1, ""


def _takes_separate_value(arg: str) -> bool:
    if arg.startswith("--"):
        name = arg[2:]
        return "=" not in name and name in _LONG_WITH_VALUE
    if arg.startswith("-") and len(arg) == 2:
        return arg[1] in _SHORT_WITH_VALUE
    # GNU ld also accepts long options with one dash (-Map, -soname, -rpath).
    return "=" not in arg and arg[1:] in _LONG_WITH_VALUE


def analyse(cmd: LinkCommand) -> None:
    """Find the inputs, output, script and mode of an expanded ld command line."""
    args = cmd.args
    i = 0
    after_dashdash = False
    while i < len(args):
        arg = args[i]
        if after_dashdash or not arg.startswith("-") or arg == "-":
            cmd.inputs.append(i)
            i += 1
            continue
        if arg == "--":
            after_dashdash = True
            i += 1
            continue
        if arg in _INFO_OPTIONS:
            cmd.wants_info = True
        if arg in ("-r", "-i", "--relocatable", "-relocatable", "-Ur"):
            cmd.relocatable = True
        which, value, used, prefix = _option_value(args, i)
        if which == "-o" and value is not None:
            cmd.output = value
            cmd.output_at = (i + used - 1, prefix)
        elif which == "-T":
            cmd.script = value
        elif which is None and _takes_separate_value(arg):
            used = 2
        i += used


def parse(argv: list[str], environ: dict[str, str] | os._Environ[str], cwd: str,
          invoked_as: str = "klp-ld") -> LinkCommand:
    options, ld_argv = split_options(argv, environ)
    cmd = LinkCommand(invoked_as, ld_argv, expand_response_files(ld_argv, cwd), options, cwd)
    analyse(cmd)
    return cmd


def is_module_script(path: str | None) -> bool:
    """kbuild's final link uses `arch/<arch>/module.lds` or `scripts/module.lds`, often relative."""
    return path is not None and os.path.basename(path) == "module.lds"


# Bytes whose presence in an input means klp-ld has something to do. Scanning for them costs a
# fraction of parsing, and an input without them can go to ld untouched.
LIVEPATCH_MARKERS = (b".klp.", b"livepatch=Y")


def mentions_livepatch(path: str, markers: tuple[bytes, ...] = LIVEPATCH_MARKERS) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False  # ld will report it in its own words
    return any(m in data for m in markers)


def classify(cmd: LinkCommand) -> str:
    """Decide what klp-ld does with this command; everything unrecognised passes through."""
    if cmd.wants_info and not cmd.inputs:
        return PROBE
    if not cmd.relocatable or cmd.output is None:
        return PASSTHROUGH
    paths = [os.path.join(cmd.cwd, p) for p in cmd.input_paths()]
    if not any(mentions_livepatch(p) for p in paths):
        return PASSTHROUGH
    if is_module_script(cmd.script) and cmd.output.endswith(".ko"):
        return FINAL
    return PARTIAL
