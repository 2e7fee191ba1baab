"""Check a converted module against every rule the kernel's loader applies, before it is written.

A module that breaks one of these rules either fails to load with a terse kernel message or,
worse, loads and writes the wrong bytes. Each rule names the kernel code it mirrors; each failure names the
object, section, offset and symbol. All problems are collected and reported together.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from klp_ld.arch import Arch, arch_of
from klp_ld.arch.sites import CapstoneUnavailable, RelocSite, Severity, SiteProblem, check_data_sites
from klp_ld.convert import Conversion
from klp_ld.diag import Diagnostic, error, note, warning
from klp_ld.elf.consts import (
    SHF_ALLOC,
    SHF_RELA_LIVEPATCH,
    SHF_WRITE,
    SHN_ABS,
    SHN_COMMON,
    SHN_LIVEPATCH,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_RELA,
    STB_WEAK,
)
from klp_ld.elf.model import ElfObject, Rela, Section, Symbol
from klp_ld.names import KLP_RELA, KLP_SYM, MODULE_RELOCS, VMLINUX, identity_problems
from klp_ld.report import SiteCheckRecord

# What the loader needs (apply_relocations, move_module); pahole drops SHF_INFO_LINK, which is harmless.
REQUIRED_KLP_FLAGS = SHF_ALLOC | SHF_RELA_LIVEPATCH
# Where ordinary code and data live (with the architecture's `data_sections`); a klp relocation anywhere
# else is in a section nobody vetted.
ORDINARY_PREFIXES = (".text", ".data", ".rodata", ".bss", ".init.", ".exit.", ".noinstr.text",
                     ".ref.text", ".sched.text", ".cpuidle.text", ".entry.text", ".static_call.text",
                     "__param", ".gnu.linkonce.this_module", ".init_array", ".ctors")
# The kernel writes `.klp.rela.vmlinux.*` in load_module's apply_relocations, before any of the module
# runs. It writes `.klp.rela.<module>.*` only in klp_init_object_loaded: inside klp_enable_patch (called
# by the patch's own init) when the module is already loaded, or in klp_module_coming when it loads
# later, by which time the patch's init memory is freed. So these sections, read or run before
# klp_enable_patch, may not hold a module-specific site; each reason names the reader.
# (module_init_section: a name starting `.init` is init; `.exit*` is init only without MODULE_UNLOAD.)
_INIT_REASON = ("init code and data run before or while the patch's init calls klp_enable_patch, and init "
                "memory is freed when that init returns, so a write when the module loads later lands in "
                "freed memory")
# Architectures whose module_init_section() keeps `.init*` in core memory (ppc64 returns false).
_KEPT_INIT_REASON = ("init code runs before or while the patch's init calls klp_enable_patch, so it has "
                     "read the site before the kernel writes it, and never runs again (this loader keeps "
                     "`.init*` with the core, so the write itself lands)")
# Sections made read-only when the module's init returns (kernel/module/main.c: layout_and_allocate
# marks them SHF_RO_AFTER_INIT; module_enable_ro after do_init_module's init call).
RO_AFTER_INIT = (".data..ro_after_init", "__jump_table")
READ_BEFORE_KLP_ENABLE = {
    "__param": "module parameters given to insmod are set by parse_args before the patch's init runs",
    ".gnu.linkonce.this_module": "the loader reads struct module (init, exit) before the patch's init runs",
    ".ctors": "constructors run from do_mod_ctors before the patch's init runs",
}


def check_module(obj: ElfObject, conversions: list[Conversion]) -> list[Diagnostic]:
    """Every load-time rule for the conversions made in `obj`."""
    problems: list[Diagnostic] = []
    sections = {s.name: s for s in obj.sections}
    seen_names: set[str] = set()
    for conv in conversions:
        ident = conv.identity
        where: dict[str, Any] = {"obj": obj.path, "section": conv.section, "offset": conv.offset,
                                 "symbol": conv.link_name}
        if ident.kernel_name not in seen_names:
            seen_names.add(ident.kernel_name)
            problems.extend(error(message, code=code, **where) for code, message in identity_problems(ident))
        problems.extend(_check_site(obj, sections.get(conv.section), conv, where))
    problems.extend(_consumed_code_problems(obj, conversions))
    problems.extend(_late_problems(obj, conversions))
    problems.extend(_check_modinfo(obj, conversions))
    problems.extend(check_tables(obj))
    return problems


def _check_site(obj: ElfObject, target: Section | None, conv: Conversion,
                where: dict[str, Any]) -> list[Diagnostic]:
    out = []
    kw = where
    ident = conv.identity
    arch = arch_of(obj)
    type_problem = arch.klp_type_problem(conv.r_type)
    if type_problem is not None:
        out.append(error(type_problem[1], code=type_problem[0], **kw))
    if target is None:
        return out
    if not target.is_alloc:
        out.append(error(f"target section {target.name} is not SHF_ALLOC; the loader skips its "
                         "relocations", code="target-not-alloc", **kw))
    early = read_before_klp_enable(target.name, arch)
    if ident.rela_obj != VMLINUX and early is not None:
        init = target.name.startswith(".init")
        out.append(error(f"module-specific relocation for {ident.rela_obj} in "
                         f"{'init section ' if init else ''}{target.name}: {early}; the kernel writes "
                         f"{KLP_RELA}{ident.rela_obj}.* only inside klp_enable_patch (when {ident.rela_obj} "
                         f"is loaded) or when {ident.rela_obj} loads later",
                         code="target-init" if init else "target-early", **kw))
    if ident.rela_obj != VMLINUX and ident.sym_obj == VMLINUX:
        out.append(error(f"module-specific relocation section {KLP_RELA}{ident.rela_obj}.* refers to "
                         f"vmlinux symbol '{ident.name}'; the kernel refuses this (invalid access to "
                         "vmlinux symbol from module-specific livepatch relocation section)",
                         code="vmlinux-in-module-section", **kw))
    late_store = _late_store_problem(arch, target, conv)
    if late_store is not None:
        out.append(error(late_store, code="late-readonly-write", **kw))
    width = arch.widths.get(conv.r_type)
    if width is not None and arch.zero_sites:
        if target.type == SHT_NOBITS:
            out.append(error(f"relocation site in {target.name}, which has no file contents",
                             code="site-nobits", **kw))
        elif conv.offset + width > len(target.data):
            out.append(error(f"{width}-byte site runs past the end of {target.name} ({len(target.data):#x} "
                             "bytes)", code="site-bounds", **kw))
        elif any(target.data[conv.offset:conv.offset + width]):
            value = target.data[conv.offset:conv.offset + width].hex(" ")
            out.append(error(f"site bytes are not zero ({value}); the loader refuses to relocate a "
                             "nonzero site", code="site-nonzero", **kw))
    out.extend(_check_special(arch, target, conv, kw))
    return out


def read_before_klp_enable(section: str, arch: Arch | None = None) -> str | None:
    """Why a module-specific klp relocation in `section` is read before the kernel writes it; None
    when the section is read only after klp_enable_patch (or never by the loader itself).

    Code that is merely called from init before klp_enable_patch cannot be told from the ELF alone:
    this covers what the loader itself runs or reads before the patch's init gets that far. Whether
    init memory is freed afterwards depends on the architecture's module_init_section (None: it is).
    """
    if section.startswith(".init"):
        return _INIT_REASON if arch is None or arch.init_freed else _KEPT_INIT_REASON
    return READ_BEFORE_KLP_ENABLE.get(section)


def _late_store_problem(arch: Arch, target: Section, conv: Conversion) -> str | None:
    """A module-specific relocation the loader would write with a plain store into read-only memory.

    `.klp.rela.<module>.*` is written after the patch module is formed (klp_init_object_loaded, from
    klp_enable_patch or klp_module_coming), when complete_formation has made its text and rodata
    read-only and, for a module that loads after the patch's init, ro_after_init too. x86_64 writes
    through text_poke then; ppc64's apply_relocate_add (module_64.c, 6.1) uses patch_instruction only
    for R_PPC64_REL24 and stores every other type directly, which faults under STRICT_MODULE_RWX.
    """
    if conv.identity.rela_obj == VMLINUX or conv.r_type not in arch.plain_store_types:
        return None
    name = arch.reloc_name(conv.r_type)
    if target.is_exec or not target.flags & SHF_WRITE:
        when = "complete_formation made it read-only before any module-specific relocation is written"
    elif target.name in RO_AFTER_INIT:
        when = ("it is read-only after the patch's init returns, so the write faults when "
                f"{conv.identity.rela_obj} loads after the patch")
    else:
        return None
    return (f"module-specific {name} relocation in {target.name}: the {arch.name} loader writes this type "
            f"with a plain store even into a formed module (apply_relocate_add), and {when}: an oops under "
            "STRICT_MODULE_RWX; keep such pointers in writable data (.data, or the .toc entries the compiler "
            "makes for extern objects), or refer to a vmlinux symbol, whose relocations are written while "
            "the module is still writable")


def _consumed_code_problems(obj: ElfObject, conversions: list[Conversion]) -> list[Diagnostic]:
    """A module-specific relocation inside code the loader rewrites or copies before writing it
    (the architecture's `consumed_code`: arm64's alternatives, applied by module_finalize)."""
    arch = arch_of(obj)
    late = [c for c in conversions if c.identity.rela_obj != VMLINUX]
    if arch.consumed_code is None or not late:
        return []
    ranges = arch.consumed_code(obj)
    out = []
    for conv in late:
        why = next((why for start, end, why in ranges.get(conv.section, ()) if start <= conv.offset < end),
                   None)
        if why is not None:
            out.append(error(f"module-specific klp relocation inside {why}; the loader does that in "
                             f"module_finalize, before {conv.identity.rela_obj} relocations are written",
                             code="special-section", obj=obj.path, section=conv.section, offset=conv.offset,
                             symbol=conv.link_name))
    return out


def _late_problems(obj: ElfObject, conversions: list[Conversion]) -> list[Diagnostic]:
    """Module-specific relocations that the loader may get wrong after the patch module is formed,
    depending on where modules land or on whether the target module is loaded again: a stub stored
    into read-only text (the architecture's `late_stub`: arm64's PLT entries and erratum veneers), a
    slot written only once (`slot_types`: s390's GOT). The module is right as loaded, so this warns,
    once per object and reason, naming its first sites."""
    arch = arch_of(obj)
    found: dict[tuple[str, str, str], list[Conversion]] = {}
    for conv in conversions:
        rela_obj = conv.identity.rela_obj
        if rela_obj == VMLINUX:
            continue
        why = arch.late_stub(conv.r_type, conv.offset)
        if why is not None:
            found.setdefault((rela_obj, "late-stub", why), []).append(conv)
        if conv.r_type in arch.slot_types:
            why = arch.slot_why.format(module=rela_obj)
            found.setdefault((rela_obj, "stale-slot", why), []).append(conv)
    out = []
    for (rela_obj, code, why), convs in found.items():
        first = convs[0]
        names = ", ".join(sorted({arch.reloc_name(c.r_type) for c in convs}))
        others = tuple(f"also at {c.section}+{c.offset:#x} ({c.link_name})" for c in convs[1:5])
        if len(convs) > 5:
            others += (f"and {len(convs) - 5} more site(s)",)
        out.append(warning(f"module-specific {names} relocation for {rela_obj}: {why}", code=code,
                           obj=obj.path, section=first.section, offset=first.offset, symbol=first.link_name,
                           notes=others))
    return out


def _check_special(arch: Arch, target: Section, conv: Conversion,
                   kw: dict[str, Any]) -> list[Diagnostic]:
    name = target.name
    ident = conv.identity
    if name in arch.own_code_tables or name.startswith(arch.own_code_prefixes):
        return [error(f"klp relocation in {name}, a table that may only describe the module's own code",
                      code="special-section", **kw)]
    if name in arch.early_consumed or name.startswith(arch.early_consumed_prefixes):
        if ident.rela_obj != VMLINUX or ident.sym_obj != VMLINUX:
            hint = ("use static_key_enabled() instead" if name == "__jump_table" else
                    "call the function directly instead" if name == ".static_call_sites" else
                    "the loader applies alternatives before module-specific relocations exist")
            return [error(f"module-specific klp relocation in {name}, which the loader consumes before "
                          f"{ident.rela_obj} relocations are written; {hint}",
                          code="special-section", **kw)]
        return []
    if not name.startswith(ORDINARY_PREFIXES + arch.data_sections):
        return [error(f"klp relocation in {name}, a section klp-ld does not know to be safe for livepatch "
                      "relocations", code="unknown-section", **kw)]
    return []


def _check_modinfo(obj: ElfObject, conversions: list[Conversion]) -> list[Diagnostic]:
    if not conversions:
        return []
    modinfo = obj.section(".modinfo")
    fields = modinfo.data.split(b"\0") if modinfo is not None else []
    if b"livepatch=Y" not in fields:
        return [error("module has livepatch relocations but no MODULE_INFO(livepatch, \"Y\"); without "
                      "it the loader keeps no symbol table and klp_enable_patch fails",
                      code="modinfo-livepatch", obj=obj.path, section=".modinfo")]
    return []


def check_tables(obj: ElfObject) -> list[Diagnostic]:
    """Structural rules: klp sections and symbols as the loader needs them, nothing left pointing at
    an unconverted identity or annotation, and one effective relocation per site.

    The final link judges its own output with these, and `klp-ld check` judges any module with them,
    so a module another tool rewrote after the link (objcopy, ld -r) fails the same way.
    """
    arch = arch_of(obj)
    out: list[Diagnostic] = []
    for sec in obj.sections_named(KLP_RELA):
        out.extend(_klp_section_problems(obj, sec))
    annotation_secs = [s for s in obj.sections_named(MODULE_RELOCS) if not s.is_rela]
    out.extend(error("annotation section left in the module: klp-ld's final link converts the references "
                     "it annotates and removes it, so this module was not converted (linked by plain ld?)",
                     code="annotation-left", obj=obj.path, section=s.name) for s in annotation_secs)
    annotations = {id(s) for s in annotation_secs}
    sites: Counter[tuple[int, int]] = Counter()
    unconverted: set[int] = set()
    misplaced: dict[int, list[str]] = {}
    for rsec in obj.rela_sections():
        target = rsec.info_section
        is_klp = rsec.name.startswith(KLP_RELA)
        for rela in rsec.relocs:
            if rela.type == arch.none:
                if not arch.none_applied and target is not None and target.is_alloc:
                    out.append(_unapplied_none(obj, arch, rsec, target, rela))
                continue
            sym = rela.symbol
            sec_name = target.name if target is not None else rsec.name
            at = f"{sec_name}+{rela.offset:#x}"
            if is_klp and sym is not None and _klp_named(sym) and not _livepatch(sym):
                misplaced.setdefault(id(sym), []).append(at)
            elif is_klp and (sym is None or not _livepatch(sym)):
                out.append(error("entry in a livepatch relocation section refers to a symbol that is not "
                                 "SHN_LIVEPATCH", code="klp-entry-symbol", obj=obj.path, section=sec_name,
                                 offset=rela.offset, symbol=sym.name if sym else None))
            elif not is_klp and sym is not None and _livepatch(sym):
                out.append(error(f"ordinary relocation in {rsec.name} refers to a livepatch symbol",
                                 code="leftover-reloc", obj=obj.path, section=sec_name, offset=rela.offset,
                                 symbol=sym.name))
            elif not is_klp and sym is not None and sym.is_undefined and _klp_named(sym):
                unconverted.add(id(sym))
                if id(target) not in annotations:
                    out.append(_unconverted(obj, sec_name, rela, sym))
            if target is not None:
                sites[(id(target), rela.offset)] += 1
    out.extend(_klp_symbol_problems(obj, unconverted, misplaced))
    names = {id(s): s.name for s in obj.sections}
    for (sec_id, offset), count in sorted(sites.items(), key=lambda kv: (names.get(kv[0][0], ""), kv[0][1])):
        if count > 1:
            out.append(error(f"{count} relocations write the same site; the loader allows one",
                             code="site-twice", obj=obj.path, section=names.get(sec_id), offset=offset))
    return out


def _unapplied_none(obj: ElfObject, arch: Arch, rsec: Section, target: Section, rela: Rela) -> Diagnostic:
    """A NONE entry the loader applies and refuses (apply_relocations takes every relocation section
    of an SHF_ALLOC target; ppc64's apply_relocate_add has no case for NONE)."""
    return error(f"{arch.reloc_name(rela.type)} in {rsec.name}: the {arch.name} loader does not apply NONE "
                 f"and refuses the module ('Unknown ADD relocation: {rela.type}'); a converted original must "
                 "be removed from its section, not retyped (rewritten by a tool that assumes x86_64?)",
                 code="reloc-none", obj=obj.path, section=target.name, offset=rela.offset)


def _klp_named(sym: Symbol) -> bool:
    """Named like a livepatch identity: the kernel's `.klp.sym.` or klp-ld's `.klp.sym.rela.` spelling."""
    return sym.name.startswith(KLP_SYM)


def _livepatch(sym: Symbol) -> bool:
    return sym.section is None and sym.special == SHN_LIVEPATCH


def _unconverted(obj: ElfObject, section: str, rela: Rela, sym: Symbol) -> Diagnostic:
    outcome = ("resolves it as a weak undefined symbol to 0, silently" if sym.bind == STB_WEAK else
               "refuses the module (Unknown symbol)")
    return error(f"{arch_of(obj).reloc_name(rela.type)} relocation against undefined livepatch identity: no "
                 "final link converted it into a .klp.rela section (linked by plain ld, or ld -r after "
                 f"klp-ld?), so the loader {outcome}", code="unconverted-reloc", obj=obj.path,
                 section=section, offset=rela.offset, symbol=sym.name)


def _shndx_text(sym: Symbol) -> str:
    if sym.section is not None:
        return f"defined in {sym.section.name}"
    names = {SHN_UNDEF: "undefined (SHN_UNDEF)", SHN_ABS: f"SHN_ABS ({SHN_ABS:#x})",
             SHN_COMMON: f"SHN_COMMON ({SHN_COMMON:#x})"}
    return names.get(sym.special, f"in section index {sym.special:#x}")


def _klp_symbol_problems(obj: ElfObject, unconverted: set[int],
                         misplaced: dict[int, list[str]]) -> list[Diagnostic]:
    """Every `.klp.sym.*` symbol must be SHN_LIVEPATCH: the loader resolves only those itself."""
    out = []
    for sym in obj.symbols[1:]:
        if not _klp_named(sym) or _livepatch(sym) or id(sym) in unconverted:
            continue
        sites = misplaced.get(id(sym), [])
        if sites:
            why = ("the loader refuses every livepatch relocation against it ('symbol ... is not marked as a "
                   "livepatch symbol')")
        elif sym.is_undefined:
            why = ("the loader resolves it as an ordinary symbol" + (" to 0" if sym.bind == STB_WEAK else
                                                                      ", and refuses the module"))
        else:
            why = "the loader treats it as an ordinary symbol, not one livepatch resolves"
        cause = " (ld -r after the conversion turns SHN_LIVEPATCH into SHN_ABS)" if sym.special == SHN_ABS \
            else ""
        shown = tuple(f"used at {at}" for at in sites[:4])
        if len(sites) > 4:
            shown += (f"and {len(sites) - 4} more site(s)",)
        out.append(error(f"livepatch symbol is {_shndx_text(sym)}, not SHN_LIVEPATCH ({SHN_LIVEPATCH:#x})"
                         f"{cause}: {why}", code="klp-symbol-shndx", obj=obj.path, symbol=sym.name,
                         notes=shown))
    return out


_REWRITTEN = "rewritten after the link (objcopy --add-section in scripts/gen-btf.sh?)"


def _klp_section_problems(obj: ElfObject, sec: Section) -> list[Diagnostic]:
    """A `.klp.rela.*` section header as the loader reads it (apply_relocations, klp_write_object_relocs)."""
    where: dict[str, Any] = {"obj": obj.path, "section": sec.name}
    out = []
    if sec.type != SHT_RELA:
        out.append(error(f"section type {sec.type:#x}, not SHT_RELA: {_REWRITTEN}; livepatch relocations "
                         "must stay SHT_RELA entries linked to .symtab and to the section they relocate, so "
                         "nothing may rewrite the module after klp-ld converts it", code="klp-section-type",
                         **where))
    if not sec.flags & SHF_RELA_LIVEPATCH:
        out.append(error(f"flags {sec.flags:#x} lack SHF_RELA_LIVEPATCH ({SHF_RELA_LIVEPATCH:#x}): the "
                         "loader never resolves its .klp.sym symbols, and applies an SHT_RELA one at load as "
                         "ordinary relocations against symbols at 0", code="klp-section-flags", **where))
    if not sec.flags & SHF_ALLOC:
        out.append(error(f"flags {sec.flags:#x} lack SHF_ALLOC: the loader keeps only SHF_ALLOC sections and "
                         "reads a module-specific one after the load image is freed (a crash in "
                         "klp_resolve_symbols)", code="klp-section-flags", **where))
    if sec.link is not obj.symtab:
        link = 0 if sec.link is None else next((i for i, s in enumerate(obj.sections) if s is sec.link), 0)
        shown = f"{link}" if sec.link is None else f"{link} ({sec.link.name})"
        out.append(warning(f"sh_link is {shown}, not .symtab: the loader does not read it, but binutils, "
                           "and any tool that reads the module after the link, need it to find the "
                           "symbols of its entries", code="klp-section-link", **where))
    target = sec.info_section if sec.type == SHT_RELA else None
    if target is None and (sec.type == SHT_RELA or sec.info == 0):
        out.append(error(f"sh_info is {sec.info}, not the section it relocates: the loader skips it at load "
                         "(section 0 is not SHF_ALLOC), so its sites stay zero, and writes a module-specific "
                         "one at r_offset from address 0 (an oops); the kernel needs sh_info naming the "
                         "SHF_ALLOC section it relocates (not an init section, for a module-specific one)",
                         code="klp-section-info", **where))
    return out


def check_sites(obj: ElfObject, conversions: list[Conversion],
                detailed: bool = True) -> tuple[list[Diagnostic], list[SiteCheckRecord]]:
    """Decode every converted site: it must be exactly an instruction's field of the right width.

    Returns the problems, and with `detailed` a record of every site checked, for the report."""
    by_section: dict[str, list[Conversion]] = {}
    for conv in conversions:
        by_section.setdefault(conv.section, []).append(conv)
    arch = arch_of(obj)
    problems: list[Diagnostic] = []
    records: list[SiteCheckRecord] = []
    for name, convs in by_section.items():
        sec = obj.section(name)
        if sec is None or sec.type == SHT_NOBITS:
            continue
        sites = [RelocSite(c.offset, c.r_type, c.addend, c.identity.kernel_name) for c in convs]
        if sec.is_exec:
            funcs = [(s.value, s.size) for s in obj.function_symbols(sec)]
            try:
                checks = arch.check_text_sites(sec.data, name, funcs, sites)
            except CapstoneUnavailable as exc:
                problems.append(error(f"cannot validate relocation sites: {exc}", code="no-capstone",
                                      obj=obj.path))
                return problems, records
            for check in checks:
                if detailed:
                    records.append(SiteCheckRecord(obj.path, name, check.offset, check.ok,
                                                   check.log_line(name)))
                if check.problem is not None:
                    problems.append(_from_site_problem(obj.path, name, check.problem))
        else:
            found = check_data_sites(arch, name, sec.size, sites)
            bad = {p.offset for p in found if p.severity == Severity.ERROR}
            for conv in convs if detailed else ():
                detail = f"{name}+{conv.offset:#x} {arch.reloc_name(conv.r_type)} data field"
                records.append(SiteCheckRecord(obj.path, name, conv.offset, conv.offset not in bad, detail))
            problems.extend(_from_site_problem(obj.path, name, p) for p in found)
    return problems, records


def _from_site_problem(path: str, section: str, problem: SiteProblem) -> Diagnostic:
    make = error if problem.severity == Severity.ERROR else warning
    return make(problem.message, code="site-encoding", obj=path, section=section, offset=problem.offset,
                symbol=problem.symbol)


# "livepatch,x86: Clear relocation targets on a module removal" (0c05e7bd2d01) came with 6.3.
_CLEARS_RELOCATIONS = (6, 3)


def reload_caveat(release: str | None, conversions: list[Conversion], display: str,
                  arch: Arch | None = None) -> list[Diagnostic]:
    """Kernels before 6.3 never clear module-specific klp relocation sites: while the patch is
    loaded, a patched module that is unloaded cannot be loaded again (x86_64: its sites are nonzero;
    ppc64: its calls' nops are already `ld r2,24(r1)`, "powerpc/module_64: Fix "expected nop" error on
    module re-patching", 6.3). `arch` says which types are affected and how (None: every type, as on
    x86_64)."""
    if release is None:
        return []
    numbers = release.split("-", 1)[0].split(".")
    try:
        version = (int(numbers[0]), int(numbers[1]))
    except (IndexError, ValueError):
        return []
    refused = arch.rewrite_refused_types if arch is not None else None
    targets = sorted({c.identity.rela_obj for c in conversions if c.identity.rela_obj != VMLINUX
                      and (refused is None or c.r_type in refused)})
    if version >= _CLEARS_RELOCATIONS or not targets:
        return []
    why = arch.rewrite_refusal if arch is not None else "the loader refuses the nonzero sites"
    return [note(f"kernel {release} does not clear livepatch relocations when a module is removed: while "
                 f"this patch is loaded, {', '.join(targets)} cannot be unloaded and loaded again ({why}; "
                 "fixed in 6.3)", obj=display)]
