"""A livepatch link, step by step (`_livepatch_link` lists them): read, harvest, rename, link,
convert, validate, commit.

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
from klp_ld.archive import (
    Archive,
    annotated_libraries,
    index_symbols,
    is_archive_file,
    read_archive_file,
    with_members,
    write_archive,
)
from klp_ld.cmdline import LinkCommand
from klp_ld.convert import convert, has_work
from klp_ld.diag import Diagnostic, KlpLdError, error, fail, note
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf, read_elf_file
from klp_ld.elf.write import write_elf
from klp_ld.link import Renamer, display_argv, ld_command
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
from klp_ld.resolve import Resolver, check_annotations, check_own_globals, resolve_unannotated
from klp_ld.runld import run_ld, write_response_files
from klp_ld.sources import find_resolver
from klp_ld.srcloc import annotate
from klp_ld.target import Target, find_target
from klp_ld.validate import check_module, check_sites, reload_caveat


@dataclass(frozen=True, slots=True)
class RealLd:
    path: str
    argv0: str


@dataclass(frozen=True, slots=True)
class SideOutput:
    """`-Map` or `--dependency-file`: where its argument is, and where the user wants the file."""

    index: int      # into `cmd.expanded`
    prefix: str     # the option's spelling before the value, when joined (`-Map=`)
    destination: Destination
    what: str


@dataclass(frozen=True, slots=True)
class Outputs:
    """What the link will commit, checked against the output policy before any work."""

    module: Destination
    sides: tuple[SideOutput, ...]


@dataclass(frozen=True, slots=True)
class PlacedOutputs:
    """Where ld writes each output until the commit (`side` is None in a dry run)."""

    module: Placed
    sides: tuple[tuple[SideOutput, str, Placed | None], ...]  # (side, ld's temporary file, commit)


@dataclass(frozen=True, slots=True)
class InputObject:
    """One ELF object the link reads: a file named on the command line, or an archive's member.

    `obj` is the parsed object, which `plan_renames` renames in memory; `member` is its number in
    the archive at `cmd.expanded[index]`, None for a plain file.
    """

    n: int          # position among the command's inputs, for the copies' names
    index: int      # index into `cmd.expanded`
    display: str
    obj: ElfObject
    member: int | None = None


@dataclass(frozen=True, slots=True)
class Inputs:
    objects: tuple[InputObject, ...]
    archives: dict[int, tuple[int, Archive]]  # index -> (n, the archive given there)


@dataclass(frozen=True, slots=True)
class TargetHint:
    """The kernel kbuild builds for, found once per link: the inputs are held to its symbols and
    the module is finished for it. Hints that disagree are an error only where a step needs them."""

    target: Target
    problem: KlpLdError | None = None

    @classmethod
    def of(cls, cmd: LinkCommand) -> TargetHint:
        try:
            return cls(find_target(cmd.cwd, os.environ, cmd.script))
        except KlpLdError as exc:
            return cls(Target(None, None, "nothing"), exc)

    def get(self) -> Target:
        if self.problem is not None:
            raise self.problem
        return self.target


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
    """The steps of a livepatch link, each a function below; only the first and the last two
    touch the user's files (the check, the report, the commit)."""
    opts = cmd.options
    outputs = plan_outputs(cmd)                                    # refusals, the output policy
    target = TargetHint.of(cmd)                                    # the kernel kbuild builds for
    tmpdir = _open_scratch(scratch, opts.keep_tmp, report)         # klp-ld's private directory
    inputs = read_inputs(cmd)                                      # objects, archive members
    harvests = harvest_inputs(inputs)                              # their annotations
    resolver, missing = find_sources(cmd, inputs, harvests, target, report)  # the target's symbols
    renamed = plan_renames(cmd, inputs, harvests, resolver, missing, report)  # identities, in memory
    replaced = write_copies(inputs, renamed, tmpdir)               # the renamed objects, for ld
    del inputs, harvests, resolver                                 # tens of MB the rest never reads
    placed = place_outputs(outputs, tmpdir, scratch, opts.dry_run)  # ld's temporary outputs
    status, renamer = run_real_ld(cmd, ld, replaced, placed, tmpdir, report)
    if status != 0:
        return status                                              # ld said why
    if cmd.kind == cmdline.FINAL:
        finish_final_link(placed, report, target.target, tmpdir)   # convert, validate, post-link
    sides = finish_side_outputs(placed, renamer)                   # -Map, --dependency-file
    if opts.dry_run:
        return 0
    if before_commit is not None:
        before_commit(report)                                      # the report, fatal warnings
    commit_outputs(placed, sides, scratch)                         # every output, or none
    return 0


# ---------------------------------------------------------------------------------------------
# The steps, in the order they run


def plan_outputs(cmd: LinkCommand) -> Outputs:
    """Refuse, before any work, a command line klp-ld cannot honour and outputs it may not write."""
    refused = [error(reason) for reason in cmdline.refusals(cmd)] or annotated_libraries(cmd)
    if refused:
        raise KlpLdError(refused[0])
    shown = cmd.output if cmd.output is not None else "a.out"
    module = Destination(os.path.join(cmd.cwd, shown), shown)
    check_target(module, "output file")
    check_not_input(module, cmdline.files_read(cmd))
    sides: list[SideOutput] = []
    if cmd.map_file is not None:
        map_out = map_target(cmd.map_file.value, shown, cmd.cwd)
        if map_out is not None:
            sides.append(SideOutput(cmd.map_file.index, cmd.map_file.prefix, map_out, "map file"))
    if cmd.depfile is not None:
        dep = Destination(os.path.join(cmd.cwd, cmd.depfile.value), cmd.depfile.value, follow=True)
        sides.append(SideOutput(cmd.depfile.index, cmd.depfile.prefix, dep, "dependency file"))
    for side in sides:
        check_target(side.destination, side.what)
    return Outputs(module, tuple(sides))


def place_outputs(outputs: Outputs, tmpdir: str, scratch: Scratch, dry_run: bool) -> PlacedOutputs:
    """The temporary files ld writes; each is recorded for cleanup as it is made."""
    with _blocked():
        if dry_run:
            module = Placed(outputs.module, os.path.join(tmpdir, "dry-run-output"), True)
        else:
            module = scratch.track(place(outputs.module, tmpdir))
        sides = tuple((side, os.path.join(tmpdir, f"side-{n}"),
                       None if dry_run else scratch.track(place(side.destination, tmpdir, side.what)))
                      for n, side in enumerate(outputs.sides))
    return PlacedOutputs(module, sides)


def _open_scratch(scratch: Scratch, keep: bool, report: Report) -> str:
    """klp-ld's private directory: renamed copies, response files, side outputs as ld writes them."""
    with _blocked():
        try:
            tmpdir = scratch.tmpdir = tempfile.mkdtemp(prefix="klp-ld-")
        except OSError as exc:
            raise fail(f"cannot create a temporary directory in {tempfile.gettempdir()}: "
                       f"{exc.strerror or exc}") from None
    if keep:  # said now, so that the report written before the commit carries it
        report.diagnostics.append(note(f"temporary files kept in {tmpdir}"))
    return tmpdir


def read_inputs(cmd: LinkCommand) -> Inputs:
    """Every ELF object the link reads, archive members included: ld merges those as it merges
    files, so their meanings must be kept apart the same way."""
    objects: list[InputObject] = []
    archives: dict[int, tuple[int, Archive]] = {}
    for n, index in enumerate(cmd.inputs):
        display = cmd.expanded[index].value
        path = os.path.join(cmd.cwd, display)
        if _is_elf_object(path, display):
            objects.append(InputObject(n, index, display, read_elf_file(path, display)))
        elif is_archive_file(path, display):
            lib = read_archive_file(path, display)
            archives[index] = (n, lib)
            objects.extend(InputObject(n, index, member.display, read_elf(member.data, member.display), m)
                           for m, member in enumerate(lib.members) if member.is_elf)
    return Inputs(tuple(objects), archives)


def harvest_inputs(inputs: Inputs) -> list[Harvest]:
    """Each object's annotations, in the order of `inputs.objects`; malformed ones stop the link."""
    found = [harvest(item.obj) for item in inputs.objects]
    errors = [p for h in found for p in h.problems if p.severity == "error"]
    if errors:
        raise KlpLdError(*errors)
    return found


def find_sources(cmd: LinkCommand, inputs: Inputs, harvests: list[Harvest], target: TargetHint,
                 report: Report) -> tuple[Resolver | None, list[Diagnostic]]:
    """The target kernel's symbols and export lists, when the link needs them: positions to check,
    or a livepatch module whose unannotated references must be decided. Returns them (or None) and
    what could not be found."""
    wanted_objects = {a.identity.sym_obj for h in harvests for a in h.annotations
                      if a.symbol != a.identity.link_name}
    livepatch = any(b"livepatch=Y" in sec.data.split(b"\0") for item in inputs.objects
                    for sec in item.obj.sections if sec.name == ".modinfo")
    opts = cmd.options
    if not (opts.symbols or wanted_objects or livepatch):
        return None, []
    resolver, missing = find_resolver(opts.symbols, opts.symvers, target.get(), cmd.cwd, os.environ,
                                      wanted_objects, discover_sources=not opts.no_discover)
    if resolver is not None:
        report.sources.extend(resolver.sources)
        resolver.index.prefetch(frozenset(
            [a.identity.name for h in harvests for a in h.annotations]
            + [s.name for item in inputs.objects for s in item.obj.symbols if s.is_undefined and s.name]))
    return resolver, missing


def plan_renames(cmd: LinkCommand, inputs: Inputs, harvests: list[Harvest], resolver: Resolver | None,
                 missing: list[Diagnostic], report: Report) -> dict[int, list[Rename]]:
    """Give each object's references their identities, in memory: position in `inputs.objects` ->
    the renames made there. Every problem found is collected before any is reported."""
    problems = [p for h in harvests for p in h.problems] + missing
    own = {s.name for item in inputs.objects for s in item.obj.symbols
           if s.name and not s.is_undefined and not s.is_local}
    keep = _kept_for_objtool(inputs, harvests) if cmd.kind == cmdline.PARTIAL else frozenset()
    renamed: dict[int, list[Rename]] = {}
    for position, (item, found) in enumerate(zip(inputs.objects, harvests, strict=True)):
        # An annotation whose symbol already carries its identity (a partial link's output) says
        # nothing new; list only those that decide something here.
        report.annotations.extend((item.display, a) for a in found.annotations
                                  if a.symbol != a.identity.link_name)
        wanted: dict[str, tuple[Identity, str]] = {
            a.symbol: (a.identity, _reason(a.dialect, a.section, a.offset)) for a in found.annotations}
        if resolver is not None:
            positions, checked = check_annotations(found, resolver)
            problems.extend(checked)
            for symbol, text in positions.items():
                identity, why = wanted[symbol]
                wanted[symbol] = (identity, f"{why}; {text}")
            automatic, unresolved = resolve_unannotated(item.obj, found, own, resolver)
            problems.extend(unresolved)
            wanted.update(automatic)
            problems.extend(check_own_globals(item.obj, item.display, resolver))
        renames = apply_renames(item.obj, wanted, keep)
        if renames:
            renamed[position] = renames
            report.renames.extend(renames)
            if report.detailed:
                report.sites.extend(_site_decisions(item.obj, item.display, renames))
    report.diagnostics.extend(p for p in problems if p.severity != "error")
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise KlpLdError(*errors)
    return renamed


def write_copies(inputs: Inputs, renamed: dict[int, list[Rename]], tmpdir: str) -> dict[int, str]:
    """Write each renamed object to a temporary copy; an archive with a renamed member is written
    anew, whole. Returns the inputs to replace: index into `cmd.expanded` -> the copy's path."""
    replaced: dict[int, str] = {}
    members: dict[int, dict[int, bytes]] = {}  # index -> member number -> new bytes
    for position in renamed:
        item = inputs.objects[position]
        if item.member is not None:
            members.setdefault(item.index, {})[item.member] = write_elf(item.obj)
            continue
        copy = os.path.join(tmpdir, f"{item.n:04d}-{os.path.basename(item.display)}")
        _write_bytes(copy, write_elf(item.obj), f"{copy} (temporary copy of {item.display})")
        replaced[item.index] = copy
    for index, renamed_members in members.items():
        # Every ELF member's index entries come from its symbol table, so ld pulls the same members
        # from the copy as from the original; other members keep the entries the input had.
        n, lib = inputs.archives[index]
        contents = {item.member: (renamed_members.get(item.member, lib.members[item.member].data),
                                  index_symbols(item.obj))
                    for item in inputs.objects if item.index == index and item.member is not None}
        copy = os.path.join(tmpdir, f"{n:04d}-{os.path.basename(lib.display)}")
        _write_bytes(copy, write_archive(with_members(lib, contents)),
                     f"{copy} (temporary copy of {lib.display})")
        replaced[index] = copy
    return replaced


def run_real_ld(cmd: LinkCommand, ld: RealLd, replaced: dict[int, str], placed: PlacedOutputs, tmpdir: str,
                report: Report) -> tuple[int, Renamer]:
    """Run ld on the renamed copies into the temporary outputs; everything it says about those
    files names the user's. Returns ld's status, and the renamer for its side outputs."""
    shown = placed.module.target.display
    names = {copy: cmd.expanded[index].value for index, copy in replaced.items()}
    names[placed.module.temp] = shown
    replace = dict(replaced)
    prepend: tuple[str, ...] = ()
    if cmd.output_arg is None:
        prepend = ("-o", placed.module.temp)
    else:
        replace[cmd.output_arg.index] = cmd.output_arg.prefix + placed.module.temp
    for side, temp, _ in placed.sides:
        replace[side.index] = side.prefix + temp
        names[temp] = side.destination.display
    command = ld_command(cmd, replace, tmpdir, prepend=prepend, names=names)
    renamer = Renamer(command.names, anchors=(tmpdir, placed.module.temp))
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
        return status, renamer
    try:
        written = os.path.getsize(placed.module.temp)
    except OSError:
        written = 0
    if not written:
        raise fail("the real linker exited with status 0 but wrote no output", obj=shown)
    return 0, renamer


def finish_final_link(placed: PlacedOutputs, report: Report, target: Target, tmpdir: str) -> None:
    """Turn the linked module into the kernel's livepatch format, checked, in its temporary file."""
    shown = placed.module.target.display
    converted = finish_module(placed.module.temp, shown, report, target, tmpdir)
    if converted is None:
        return
    if any(r.reason.startswith("annotated") and not r.was_weak for r in report.renames):
        report.diagnostics.append(note(
            "annotations were converted at the final link (a single-object module): modpost saw the plain "
            "names, so such a module builds only with KBUILD_MODPOST_WARN=1; make it a composite module "
            "(obj-m := foo.o, foo-y := foo_main.o) to keep modpost's checks", obj=shown))
    _write_bytes(placed.module.temp, converted, shown)


def finish_side_outputs(placed: PlacedOutputs, renamer: Renamer) -> list[Placed]:
    """ld's side outputs with the temporary names turned back into the user's."""
    finished: list[Placed] = []
    for side, temp, commit_to in placed.sides:
        if commit_to is None or not os.path.exists(temp):
            continue  # a dry run, or ld chose not to write it
        with open(temp, "rb") as f:
            _write_bytes(commit_to.temp, renamer.apply(f.read()), side.destination.display)
        finished.append(commit_to)
    return finished


def commit_outputs(placed: PlacedOutputs, sides: list[Placed], scratch: Scratch) -> None:
    with _blocked():
        for side in sides:
            commit(side, "side output")
            scratch.committed(side)
        commit(placed.module)
        scratch.committed(placed.module)


# ---------------------------------------------------------------------------------------------
# What the steps share


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
    for conv in result.conversions if report.detailed else ():
        report.sites.append(SiteDecision(display, conv.section, conv.offset, arch.reloc_name(conv.r_type),
                                         conv.link_name, conv.addend,
                                         f"{conv.klp_section} {conv.identity.kernel_name}", "converted"))
    problems = check_module(obj, result.conversions)
    problems.extend(reload_caveat(target.release, result.conversions, display, arch_of(obj)))
    site_problems, records = check_sites(obj, result.conversions, detailed=report.detailed)
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


def _kept_for_objtool(inputs: Inputs, harvests: list[Harvest]) -> frozenset[str]:
    """Annotated noreturn callees that can keep their name through the partial link.

    objtool (run on the partial link's output from 6.12 on) knows these callees by name only. A name
    keeps it when every object that references it annotates it with one identity of that same name,
    so the merge in `ld -r` loses nothing; the final link renames it from the surviving annotation.
    """
    meanings: dict[str, set[Identity]] = {}
    unannotated: set[str] = set()
    for item, found in zip(inputs.objects, harvests, strict=True):
        annotated = {a.symbol: a.identity for a in found.annotations}
        for sym in item.obj.symbols[1:]:
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
