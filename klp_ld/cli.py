"""The printer: runs a classified command and turns results and failures into ld-style output.

Diagnostics go to stderr as `klp-ld: error: ...`; stdout belongs to ld, except for `--dry-run`,
whose plan is the output the user asked for. No other module prints.
"""

from __future__ import annotations

import os
import signal
import sys

from klp_ld import __version__, cmdline, realld
from klp_ld.cmdline import LinkCommand
from klp_ld.diag import Diagnostic, KlpLdError, error, fail, printable
from klp_ld.report import Report, append_json

HELP = """\
Usage: klp-ld [klp-ld options] [ld options] FILE...
       klp-ld check MODULE.ko [--klp-symbols=PATH]...

A drop-in LD for kbuild (make M=... LD=klp-ld) that turns livepatch annotations
(KLP_MODULE_RELOC/KLP_SYMPOS, KLP_RELOC_SYMBOL, .klp.sym.* names) into the kernel's
livepatch relocation format. Every other link is passed to the real ld unchanged.

klp-ld options (each also settable as an environment variable):
  --klp-real-ld=PATH        the real linker                      KLP_LD_REAL
  --klp-symbols=PATH        a symbol source: /proc/kallsyms dump,  KLP_LD_SYMBOLS (a:b:c)
                            System.map, Symbols.list, vmlinux, a module .ko
  --klp-symvers=PATH        Module.symvers with the exports       KLP_LD_SYMVERS
  --klp-report=PATH         append a JSON record of every decision KLP_LD_REPORT
  --klp-verbose             print every decision while linking     KLP_LD_VERBOSE
  --dry-run, --klp-dry-run  print the plan, write nothing          KLP_LD_DRY_RUN
  --klp-keep-tmp            keep temporary files                   KLP_LD_KEEP_TMP
  --klp-fatal-warnings      treat warnings as errors               KLP_LD_FATAL_WARNINGS
  --klp-print-include-dir   print the directory of klp-ld's <klp-ld.h> and exit
  --klp-print-sources       print the symbol sources found for this kernel and exit
  --klp-help, --klp-version
"""


def include_dir() -> str:
    """Where <klp-ld.h> is; importlib.resources (9 ms, with zipfile) only when it is asked for."""
    from importlib import resources

    return str(resources.files("klp_ld") / "include")


def print_diagnostics(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
    for diag in diagnostics:
        sys.stderr.write(diag.render() + "\n")



def run(cmd: LinkCommand) -> int:
    """Everything that is not a plain pass-through: info options, dry runs, livepatch links."""
    opts = cmd.options
    if opts.help:
        sys.stdout.write(HELP)
        return 0
    if opts.version:
        sys.stdout.write(f"klp-ld {__version__}\n")
        return 0
    if opts.print_include_dir:
        sys.stdout.write(include_dir() + "\n")
        return 0
    if opts.print_sources:
        from klp_ld.ksyms.discover import print_sources
        from klp_ld.target import find_target

        try:
            target = find_target(cmd.cwd, os.environ, cmd.script)
        except KlpLdError as exc:
            print_diagnostics(exc.diagnostics)
            return 1
        headers = target.headers_dir or cmd.cwd
        sys.stdout.write("\n".join(print_sources(headers, explicit=opts.symbols)) + "\n")
        return 0
    try:
        own = realld.own_paths(sys.argv[0])
        path, argv0 = realld.find_real_ld(opts.real_ld, cmd.invoked_as, os.environ, own)
    except realld.RealLdError as exc:
        sys.stderr.write(f"klp-ld: error: {exc}\n")
        return 1
    if cmd.kind in (cmdline.PROBE, cmdline.PASSTHROUGH):
        return _dry_passthrough(cmd, argv0)
    identity = realld.gnu_ld_identity(path) if cmd.rejected and not cmd.doubts else None
    if identity is not None and not cmdline.same_options(cmd, identity[1]):
        sys.stderr.write(printable(
            f"klp-ld: error: this command line has no -m, and {path} reads it with the options of its "
            f"default emulation {identity[1]}, which klp-ld reads only when -m names it: add "
            f"-m {identity[1]} (kbuild passes it)") + "\n")
        return 1
    if identity is not None and identity[0] == cmdline.GRAMMAR_VERSION:
        # The real ld is the one whose grammar rejected this command line: it fails on it before
        # reading any input or writing anything, so its own words are the best answer.
        if opts.dry_run:
            sys.stdout.write(printable(f"klp-ld: ld rejects this command line ({cmd.rejected})") + "\n")
            return _dry_passthrough(cmd, argv0)
        failed = realld.exec_real_ld(path, [argv0, *cmd.ld_argv])
        sys.stderr.write(f"klp-ld: error: cannot run {path}: {failed.strerror}\n")
        return 1
    return _livepatch(cmd, path, argv0)


def _dry_passthrough(cmd: LinkCommand, argv0: str) -> int:
    sys.stdout.write(f"klp-ld: {cmd.kind}: nothing for klp-ld to do\n")
    sys.stdout.write(printable(f"klp-ld: would run: {' '.join([argv0, *cmd.ld_argv])}") + "\n")
    return 0


def _livepatch(cmd: LinkCommand, path: str, argv0: str) -> int:
    """Run the livepatch link and report it; the exit status is ld's when ld failed, 128+N for a
    signal, 1 for anything klp-ld refused or found, and 0 only with every output in place.

    The report (--klp-report) is written just before the outputs are committed: a report that
    cannot be written fails the link with nothing changed, and a record never describes an
    output that is not there. Should the commit itself fail after that, a second record says so.
    """
    from klp_ld.output import check_report_path
    from klp_ld.pipeline import RealLd, Terminated, livepatch_link

    opts = cmd.options
    report = Report(kind=cmd.kind, cwd=cmd.cwd, argv=list(cmd.ld_argv), output=cmd.output,
                    dry_run=opts.dry_run, detailed=bool(opts.dry_run or opts.verbose or opts.report))
    recorded: list[str] = []  # the status of each record written, "" for one that could not be

    def write_report(r: Report) -> None:
        if opts.report:
            try:
                append_json(opts.report, r)
            except OSError as exc:
                recorded.append("")
                raise fail(f"cannot write the report: {exc.strerror or exc}; nothing was written",
                           obj=opts.report) from None
            recorded.append(r.status)

    def before_commit(r: Report) -> None:
        if opts.fatal_warnings and any(d.severity == "warning" for d in r.diagnostics):
            raise fail("warnings are fatal (--klp-fatal-warnings): nothing was written")
        write_report(r)

    status = 1
    report_ok = True
    try:
        if opts.report:
            try:
                check_report_path(opts.report)
            except KlpLdError:
                report_ok = False
                raise
        status = livepatch_link(cmd, RealLd(path, argv0), report, before_commit)
    except KlpLdError as exc:
        report.status = "error"
        report.diagnostics.extend(d for d in exc.diagnostics if d not in report.diagnostics)
    except KeyboardInterrupt:
        report.status = "interrupted"
        status = 130
    except Terminated as exc:
        report.status = "interrupted" if exc.signum == signal.SIGINT else "terminated"
        status = 128 + exc.signum
    except OSError as exc:
        report.status = "error"
        where = f" {exc.filename}:" if getattr(exc, "filename", None) else ""
        report.diagnostics.append(error(f"{where} {exc.strerror or exc}".strip()))
    warned = any(d.severity == "warning" for d in report.diagnostics)
    if report.status == "ok" and opts.fatal_warnings and warned:
        report.status = "error"
        report.diagnostics.append(error("warnings are fatal (--klp-fatal-warnings)"))
    if opts.dry_run or opts.verbose:
        stream = sys.stdout if opts.dry_run else sys.stderr
        stream.write("\n".join(report.lines()) + "\n")
    print_diagnostics(report.diagnostics)
    if report.status == "error":
        status = 1
    if opts.report and report_ok and "" not in recorded and recorded[-1:] != [report.status]:
        try:
            write_report(report)
        except KlpLdError as exc:
            print_diagnostics(exc.diagnostics)
            status = status or 1
    return status


def check_main(args: list[str]) -> int:
    """`klp-ld check MODULE.ko`: verify a livepatch module, whoever built it."""
    from klp_ld.check import check_module_file
    from klp_ld.sources import load_resolver

    try:
        options, rest = cmdline.split_options(args, os.environ)
    except cmdline.UsageError as exc:
        sys.stderr.write(f"klp-ld: error: {exc}\n")
        return 2
    if options.help or not rest:
        sys.stdout.write(HELP)
        return 0 if options.help else 2
    try:
        resolver = load_resolver(options.symbols, options.symvers, os.getcwd())
    except KlpLdError as exc:
        print_diagnostics(exc.diagnostics)
        return 1
    worst = 0
    for path in rest:
        try:
            lines, diagnostics = check_module_file(path, resolver)
        except KlpLdError as exc:
            print_diagnostics(exc.diagnostics)
            worst = 1
            continue
        sys.stdout.write("\n".join(lines) + "\n")
        print_diagnostics(diagnostics)
        if any(d.severity == "error" for d in diagnostics):
            worst = 1
    return worst
