"""A livepatch link, stage by stage: read, harvest, rename, link, convert, validate, write.

The user's files are never written: renamed objects are temporary copies, and the output is
built next to its final path and moved there only when every check has passed, so a failure
(ld's, ours, or a signal) leaves no partial output and keeps a previous good one.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from klp_ld import cmdline
from klp_ld.annotations import KLP_CONVERT, SUSE, Harvest, harvest
from klp_ld.arch import arch_of
from klp_ld.cmdline import LinkCommand
from klp_ld.convert import convert, has_work
from klp_ld.diag import Diagnostic, KlpLdError, error, fail, note
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf, read_elf_file
from klp_ld.elf.write import write_elf
from klp_ld.link import Renamer, annotated_libraries, display_argv, ld_command, run_ld, write_response_files
from klp_ld.names import Identity
from klp_ld.output import (
    Destination,
    Placed,
    Scratch,
    check_not_input,
    check_target,
    commit,
    map_target,
    place,
)
from klp_ld.postlink import BtfStep, btf_step, follow_section_order, mark_kept_by_objcopy, objcopy_damage
from klp_ld.rename import OBJTOOL_NORETURNS, Rename, apply_renames
from klp_ld.report import Report, SiteDecision
from klp_ld.resolve import Resolver, check_annotations, check_own_globals, find_resolver, resolve_unannotated
from klp_ld.srcloc import annotate
from klp_ld.target import Target, find_target
from klp_ld.validate import check_module, check_sites, reload_caveat


@dataclass(frozen=True, slots=True)
class RealLd:
    path: str
    argv0: str


def _reason(dialect: str, section: str, offset: int) -> str:
    if dialect == KLP_CONVERT:
        return f"annotated at {section}+{offset:#x}"
    return "SUSE KLP_RELOC_SYMBOL name" if dialect == SUSE else "identity named in the source"


# The signals that end a link: each removes the temporary files and the real ld before exiting.
SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)


class Terminated(Exception):
    """SIGHUP, SIGINT, SIGTERM or SIGQUIT, turned into an exception so that cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn the first terminating signal into `Terminated`; later ones must not interrupt the
    cleanup it starts. A signal the caller ignores (nohup, a background job) stays ignored."""
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if not fired:
            fired.append(signum)
            raise Terminated(signum)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s, was in previous.items():
        if was is not signal.SIG_IGN:
            signal.signal(s, handler)
    try:
        yield
    finally:
        with _blocked():
            for s, was in previous.items():
                signal.signal(s, was if was is not None else signal.SIG_DFL)


@contextmanager
def _blocked() -> Iterator[None]:
    """Hold the terminating signals while a temporary file is created and recorded (or removed):
    one that arrives in between is delivered afterwards, when the cleanup knows the file."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _write_bytes(path: str, data: bytes, display: str | None = None) -> None:
    """Write a whole file; a full disk or a permission problem is one error naming `display`."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise fail(f"cannot write: {exc.strerror or exc}", obj=display or path) from None


def _is_elf_object(path: str, display: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except FileNotFoundError:
        return False  # ld reports a missing input in its own words
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}", obj=display) from None


def prepare_inputs(cmd: LinkCommand, tmpdir: str, report: Report) -> dict[int, str]:
    """Harvest every input object, hold it to the target's symbols, rename in temporary copies.

    The ELF members of an archive are objects like any other (ld merges them as it merges files,
    so their meanings must be kept apart the same way); an archive with a renamed member is
    written anew, whole, in place of the original.

    Returns the inputs to replace: index into `cmd.expanded` -> path of the rewritten copy.
    """
    from klp_ld.archive import (
        Archive,
        index_symbols,
        is_archive_file,
        read_archive_file,
        with_members,
        write_archive,
    )

    objects: list[tuple[int, int, str, ElfObject, Harvest]] = []
    archives: dict[int, tuple[int, Archive]] = {}  # index -> (n, the archive given there)
    in_archive: dict[int, tuple[int, int]] = {}    # position in `objects` -> (index, member number)
    for n, index in enumerate(cmd.inputs):
        display = cmd.expanded[index].value
        path = os.path.join(cmd.cwd, display)
        if _is_elf_object(path, display):
            obj = read_elf_file(path, display)
            objects.append((n, index, display, obj, harvest(obj)))
        elif is_archive_file(path, display):
            lib = read_archive_file(path, display)
            archives[index] = (n, lib)
            for m, member in enumerate(lib.members):
                if member.is_elf:
                    in_archive[len(objects)] = (index, m)
                    obj = read_elf(member.data, member.display)
                    objects.append((n, index, member.display, obj, harvest(obj)))
    problems: list[Diagnostic] = [p for *_, found in objects for p in found.problems]
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise KlpLdError(*errors)

    opts = cmd.options
    wanted_objects = {a.identity.sym_obj for *_, found in objects for a in found.annotations
                      if a.symbol != a.identity.link_name}
    resolver: Resolver | None = None
    livepatch = any(b"livepatch=Y" in sec.data.split(b"\0") for *_, obj, _ in objects for sec in obj.sections
                    if sec.name == ".modinfo")
    if opts.symbols or wanted_objects or livepatch:
        target = find_target(cmd.cwd, os.environ, cmd.script)
        resolver, missing = find_resolver(opts.symbols, opts.symvers, target, cmd.cwd, os.environ,
                                          wanted_objects, discover_sources=not opts.no_discover)
        problems.extend(missing)
        if resolver is not None:
            report.sources.extend(resolver.sources)
    own = {s.name for *_, obj, _ in objects for s in obj.symbols if s.name and not s.is_undefined
           and not s.is_local}

    keep = _kept_for_objtool(objects) if cmd.kind == cmdline.PARTIAL else frozenset()
    replaced: dict[int, str] = {}
    renamed_members: dict[int, dict[int, bytes]] = {}  # index -> member number -> new bytes
    for position, (n, index, display, obj, found) in enumerate(objects):
        # An annotation whose symbol already carries its identity (a partial link's output) says
        # nothing new; list only those that decide something here.
        report.annotations.extend((display, a) for a in found.annotations
                                  if a.symbol != a.identity.link_name)
        wanted: dict[str, tuple[Identity, str]] = {
            a.symbol: (a.identity, _reason(a.dialect, a.section, a.offset)) for a in found.annotations}
        if resolver is not None:
            positions, checked = check_annotations(found, resolver)
            problems.extend(checked)
            for symbol, text in positions.items():
                identity, why = wanted[symbol]
                wanted[symbol] = (identity, f"{why}; {text}")
            automatic, unresolved = resolve_unannotated(obj, found, own, resolver)
            problems.extend(unresolved)
            wanted.update(automatic)
            problems.extend(check_own_globals(obj, display, resolver))
        renames = apply_renames(obj, wanted, keep)
        if not renames:
            continue
        report.renames.extend(renames)
        report.sites.extend(_site_decisions(obj, display, renames))
        if position in in_archive:
            owner, m = in_archive[position]
            renamed_members.setdefault(owner, {})[m] = write_elf(obj)
            continue
        copy = os.path.join(tmpdir, f"{n:04d}-{os.path.basename(display)}")
        _write_bytes(copy, write_elf(obj), f"{copy} (temporary copy of {display})")
        replaced[index] = copy
    report.diagnostics.extend(p for p in problems if p.severity != "error")
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise KlpLdError(*errors)
    for index, renamed in renamed_members.items():
        # Every ELF member's index entries come from its symbol table, so ld pulls the same members
        # from the copy as from the original; other members keep the entries the input had.
        n, lib = archives[index]
        contents = {m: (renamed.get(m, lib.members[m].data), index_symbols(objects[position][3]))
                    for position, (owner, m) in in_archive.items() if owner == index}
        copy = os.path.join(tmpdir, f"{n:04d}-{os.path.basename(lib.display)}")
        _write_bytes(copy, write_archive(with_members(lib, contents)),
                     f"{copy} (temporary copy of {lib.display})")
        replaced[index] = copy
    return replaced


def _kept_for_objtool(objects: list[tuple[int, int, str, ElfObject, Harvest]]) -> frozenset[str]:
    """Annotated noreturn callees that can keep their name through the partial link.

    objtool (run on the partial link's output from 6.12 on) knows these callees by name only. A name
    keeps it when every object that references it annotates it with one identity of that same name,
    so the merge in `ld -r` loses nothing; the final link renames it from the surviving annotation.
    """
    meanings: dict[str, set[Identity]] = {}
    unannotated: set[str] = set()
    for *_, obj, found in objects:
        annotated = {a.symbol: a.identity for a in found.annotations}
        for sym in obj.symbols[1:]:
            if not sym.is_undefined or sym.name not in OBJTOOL_NORETURNS:
                continue
            if sym.name in annotated:
                meanings.setdefault(sym.name, set()).add(annotated[sym.name])
            else:
                unannotated.add(sym.name)
    return frozenset(name for name, identities in meanings.items() if name not in unannotated
                     and len(identities) == 1 and next(iter(identities)).name == name)


def _site_decisions(obj: ElfObject, display: str, renames: list[Rename]) -> list[SiteDecision]:
    arch = arch_of(obj)
    by_new = {r.new: r for r in reversed(renames)}
    out = []
    for target, rela in obj.relocs_against():
        sym = rela.symbol
        if sym is None or sym.name not in by_new or target.name.startswith(".klp.module_relocs."):
            continue
        r = by_new[sym.name]
        out.append(SiteDecision(display, target.name, rela.offset, arch.reloc_name(rela.type), r.old,
                                rela.addend, r.new, r.reason))
    return out


def finish_module(path: str, display: str, report: Report, target: Target, scratch: str) -> bytes | None:
    """Convert the linked module at `path`; returns the new bytes, or None when there was nothing to do."""
    with open(path, "rb") as f:
        data = f.read()
    obj = read_elf(data, display)
    if not has_work(obj):
        return None
    result = convert(obj)
    report.removed_sections.extend(result.removed_sections)
    arch = arch_of(obj)
    for conv in result.conversions:
        report.sites.append(SiteDecision(display, conv.section, conv.offset, arch.reloc_name(conv.r_type),
                                         conv.link_name, conv.addend,
                                         f"{conv.klp_section} {conv.identity.kernel_name}", "converted"))
    problems = check_module(obj, result.conversions)
    problems.extend(reload_caveat(target.release, result.conversions, display))
    site_problems, records = check_sites(obj, result.conversions)
    report.checks.extend(records)
    problems.extend(site_problems)
    problems = annotate(data, display, problems)
    report.diagnostics.extend(problems)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise KlpLdError(*errors)
    return _kept_after_link(obj, btf_step(target, os.environ), scratch, display, report)


def _kept_after_link(obj: ElfObject, step: BtfStep | None, scratch: str, display: str,
                     report: Report) -> bytes:
    """The module bytes in the form that what kbuild runs after this link leaves intact."""
    data = write_elf(obj)
    if step is None:
        return data
    report.post_link.append(step.why)
    broken = objcopy_damage(step, data, scratch)
    if not broken:
        report.post_link.append("the livepatch sections come through it unchanged")
        return data
    mark_kept_by_objcopy(obj)
    follow_section_order(obj, step, scratch)
    kept = write_elf(obj)
    still = objcopy_damage(step, kept, scratch)
    if not still:
        report.post_link.append(f"it would break them ({broken[0]}); they carry SHF_GNU_MBIND, whose sh_info "
                                "objcopy copies verbatim, and come through it unchanged")
        return kept
    raise KlpLdError(error(
        f"kbuild's module BTF step will break this module's livepatch relocations after the link: "
        f"{'; '.join(still)}", code="postlink-breaks", obj=display,
        notes=(step.why, "a livepatch module needs no BTF: build it with "
               "make ... CONFIG_DEBUG_INFO_BTF_MODULES= to skip that step")))


def _target(cmd: LinkCommand) -> Target:
    """The kernel kbuild builds for, from the same hints the inputs were held to, or an unknown
    one when they disagree or say nothing."""
    try:
        return find_target(cmd.cwd, os.environ, cmd.script)
    except KlpLdError:
        return Target(None, None, "nothing")


def _make_tmpdir() -> str:
    """klp-ld's private directory: renamed copies, response files, side outputs as ld writes them."""
    try:
        return tempfile.mkdtemp(prefix="klp-ld-")
    except OSError as exc:
        raise fail(f"cannot create a temporary directory in {tempfile.gettempdir()}: "
                   f"{exc.strerror or exc}") from None


def livepatch_link(cmd: LinkCommand, ld: RealLd, report: Report,
                   before_commit: Callable[[Report], None] | None = None) -> int:
    """The partial or final link of a livepatch module; returns the exit status.

    Every refusal comes before any work (the command line, the output policy of klp_ld.output);
    the files the user named are written at the very end, after ld, the conversion, the checks
    and `before_commit` (the report) succeeded, and only then. On any way out -- an error, ld's
    failure, a signal -- ld is gone and every temporary file removed before this returns.
    """
    opts = cmd.options
    scratch = Scratch()
    with _signals_raise():
        try:
            return _livepatch_link(cmd, ld, report, before_commit, scratch)
        finally:
            with _blocked():
                scratch.cleanup(opts.keep_tmp)


def _livepatch_link(cmd: LinkCommand, ld: RealLd, report: Report,
                    before_commit: Callable[[Report], None] | None, scratch: Scratch) -> int:
    opts = cmd.options
    refused = [error(reason) for reason in cmdline.refusals(cmd)] or annotated_libraries(cmd)
    if refused:
        raise KlpLdError(refused[0])
    shown_out = cmd.output if cmd.output is not None else "a.out"
    output = Destination(os.path.join(cmd.cwd, shown_out), shown_out)
    check_target(output, "output file")
    check_not_input(output, cmdline.files_read(cmd))
    sides: list[tuple[int, str, Destination, str]] = []  # (argument index, prefix, destination, what)
    if cmd.map_file is not None:
        map_out = map_target(cmd.map_file.value, shown_out, cmd.cwd)
        if map_out is not None:
            sides.append((cmd.map_file.index, cmd.map_file.prefix, map_out, "map file"))
    if cmd.depfile is not None:
        dep = Destination(os.path.join(cmd.cwd, cmd.depfile.value), cmd.depfile.value, follow=True)
        sides.append((cmd.depfile.index, cmd.depfile.prefix, dep, "dependency file"))
    for _, _, destination, what in sides:
        check_target(destination, what)

    with _blocked():
        tmpdir = scratch.tmpdir = _make_tmpdir()
    if opts.keep_tmp:  # said now, so that the report written before the commit carries it
        report.diagnostics.append(note(f"temporary files kept in {tmpdir}"))
    replaced = prepare_inputs(cmd, tmpdir, report)
    with _blocked():
        if opts.dry_run:
            placed = Placed(output, os.path.join(tmpdir, "dry-run-output"), True)
        else:
            placed = scratch.track(place(output, tmpdir))
        side_placed = [(index, prefix, os.path.join(tmpdir, f"side-{n}"),
                        None if opts.dry_run else scratch.track(place(dest, tmpdir, what)), dest)
                       for n, (index, prefix, dest, what) in enumerate(sides)]

    # ld writes into the temporary files; everything it says about them names the user's files
    names = {copy: cmd.expanded[index].value for index, copy in replaced.items()}
    names[placed.temp] = shown_out
    replace = dict(replaced)
    prepend: tuple[str, ...] = ()
    if cmd.output_arg is None:
        prepend = ("-o", placed.temp)
    else:
        replace[cmd.output_arg.index] = cmd.output_arg.prefix + placed.temp
    for index, prefix, temp, _, destination in side_placed:
        replace[index] = prefix + temp
        names[temp] = destination.display
    command = ld_command(cmd, replace, tmpdir, prepend=prepend, names=names)
    renamer = Renamer(command.names, anchors=(tmpdir, placed.temp))
    # the command as run, the renamed copies included, with klp-ld's own outputs under their names
    plumbing = Renamer({temp: names[temp] for temp in names if temp not in replaced.values()})
    report.ld_command = [ld.argv0, *display_argv(command, plumbing)]
    write_response_files(command)
    status = run_ld(ld.path, ld.argv0, command, cmd.cwd, renamer)
    report.ld_status = status
    if -status in SIGNALS:
        raise Terminated(-status)
    if status < 0:
        raise fail(f"the real linker {ld.path} was killed by signal {-status} ({signal.strsignal(-status)})")
    if status != 0:
        report.status = "ld-failed"
        return status
    try:
        written = os.path.getsize(placed.temp)
    except OSError:
        written = 0
    if not written:
        raise fail("the real linker exited with status 0 but wrote no output", obj=shown_out)
    if cmd.kind == cmdline.FINAL:
        converted = finish_module(placed.temp, shown_out, report, _target(cmd), tmpdir)
        if converted is not None:
            if any(r.reason.startswith("annotated") and not r.was_weak for r in report.renames):
                report.diagnostics.append(note(
                    "annotations were converted at the final link (a single-object module): "
                    "modpost saw the plain names, so such a module builds only with "
                    "KBUILD_MODPOST_WARN=1; make it a composite module (obj-m := foo.o, "
                    "foo-y := foo_main.o) to keep modpost's checks", obj=shown_out))
            _write_bytes(placed.temp, converted, shown_out)
    finished: list[Placed] = []
    for _, _, temp, side, destination in side_placed:
        if side is None or not os.path.exists(temp):
            continue  # a dry run, or ld chose not to write it
        with open(temp, "rb") as f:
            _write_bytes(side.temp, renamer.apply(f.read()), destination.display)
        finished.append(side)
    if opts.dry_run:
        return 0
    if before_commit is not None:
        before_commit(report)
    with _blocked():
        for side in finished:
            commit(side, "side output")
            scratch.committed(side)
        commit(placed)
        scratch.committed(placed)
    return 0
