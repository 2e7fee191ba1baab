"""Check a converted module against every rule the kernel's loader applies, before it is written.

A module that breaks one of these rules either fails to load with a terse kernel message or,
worse, loads and writes the wrong bytes. Each rule names the kernel code it mirrors; each failure names the
object, section, offset and symbol. All problems are collected and reported together.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from klp_ld.convert import Conversion
from klp_ld.diag import Diagnostic, error, note, warning
from klp_ld.elf.consts import (
    KERNEL_RELOC_TYPES,
    RELOC_WIDTH,
    RX86,
    SHF_ALLOC,
    SHF_RELA_LIVEPATCH,
    SHN_LIVEPATCH,
    SHT_NOBITS,
    reloc_name,
)
from klp_ld.elf.model import ElfObject, Section
from klp_ld.names import KLP_RELA, VMLINUX, identity_problems
from klp_ld.report import SiteCheckRecord
from klp_ld.x86_sites import (
    CapstoneUnavailable,
    RelocSite,
    Severity,
    SiteProblem,
    check_data_sites,
    check_text_sites,
)

# What the loader needs (apply_relocations, move_module); pahole drops SHF_INFO_LINK, which is harmless.
REQUIRED_KLP_FLAGS = SHF_ALLOC | SHF_RELA_LIVEPATCH
# Sections the loader consumes before module-specific klp relocations exist (module_finalize and the
# COMING notifiers run before klp_module_coming):
# a vmlinux identity is written in time, a module one is not.
EARLY_CONSUMED = (".altinstructions", ".altinstr_replacement", ".altinstr_aux", ".parainstructions",
                  "__jump_table", ".static_call_sites")
# Tables that must only describe the module's own code: no klp relocation at all.
OWN_CODE_TABLES = ("__ex_table", "__bug_table", "__mcount_loc", ".orc_unwind", ".orc_unwind_ip",
                   ".orc_header", ".smp_locks", ".return_sites", ".call_sites", ".retpoline_sites",
                   ".ibt_endbr_seal", ".cfi_sites", "__patchable_function_entries", ".kcfi_traps")
# Where ordinary code and data live; a klp relocation anywhere else is in a section nobody vetted.
ORDINARY_PREFIXES = (".text", ".data", ".rodata", ".bss", ".init.", ".exit.", ".noinstr.text",
                     ".ref.text", ".sched.text", ".cpuidle.text", ".entry.text", ".static_call.text",
                     "__param", ".gnu.linkonce.this_module")


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
    problems.extend(_check_modinfo(obj, conversions))
    problems.extend(check_tables(obj))
    return problems


def _check_site(obj: ElfObject, target: Section | None, conv: Conversion,
                where: dict[str, Any]) -> list[Diagnostic]:
    out = []
    kw = where
    ident = conv.identity
    if conv.r_type not in KERNEL_RELOC_TYPES or conv.r_type == RX86.NONE:
        out.append(error(f"relocation type {reloc_name(conv.r_type)} cannot be a livepatch relocation: "
                         "the x86_64 loader applies only R_X86_64_64, 32, 32S, PC32, PLT32 and PC64",
                         code="reloc-type", **kw))
    if target is None:
        return out
    if not target.is_alloc:
        out.append(error(f"target section {target.name} is not SHF_ALLOC; the loader skips its "
                         "relocations", code="target-not-alloc", **kw))
    if ident.rela_obj != VMLINUX and target.name.startswith(".init"):
        out.append(error(f"module-specific relocation for {ident.rela_obj} in init section "
                         f"{target.name}: it is applied after init memory is freed",
                         code="target-init", **kw))
    if ident.rela_obj != VMLINUX and ident.sym_obj == VMLINUX:
        out.append(error(f"module-specific relocation section {KLP_RELA}{ident.rela_obj}.* refers to "
                         f"vmlinux symbol '{ident.name}'; the kernel refuses this (invalid access to "
                         "vmlinux symbol from module-specific livepatch relocation section)",
                         code="vmlinux-in-module-section", **kw))
    width = RELOC_WIDTH.get(conv.r_type)
    if width is not None:
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
    out.extend(_check_special(target, conv, kw))
    return out


def _check_special(target: Section, conv: Conversion, kw: dict[str, Any]) -> list[Diagnostic]:
    name = target.name
    ident = conv.identity
    if name in OWN_CODE_TABLES or name.startswith(".orc"):
        return [error(f"klp relocation in {name}, a table that may only describe the module's own code",
                      code="special-section", **kw)]
    if name in EARLY_CONSUMED:
        if ident.rela_obj != VMLINUX or ident.sym_obj != VMLINUX:
            hint = ("use static_key_enabled() instead" if name == "__jump_table" else
                    "call the function directly instead" if name == ".static_call_sites" else
                    "the loader applies alternatives before module-specific relocations exist")
            return [error(f"module-specific klp relocation in {name}, which the loader consumes before "
                          f"{ident.rela_obj} relocations are written; {hint}",
                          code="special-section", **kw)]
        return []
    if not name.startswith(ORDINARY_PREFIXES):
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
    """Structural rules: klp sections well formed, no identity behind an ordinary relocation,
    and one effective relocation per site."""
    out: list[Diagnostic] = []
    sites: Counter[tuple[int, int]] = Counter()
    for rsec in obj.rela_sections():
        target = rsec.info_section
        is_klp = rsec.name.startswith(KLP_RELA)
        if is_klp and (rsec.flags & REQUIRED_KLP_FLAGS) != REQUIRED_KLP_FLAGS:
            missing = "SHF_ALLOC" if not rsec.flags & SHF_ALLOC else "SHF_RELA_LIVEPATCH"
            out.append(error(f"livepatch relocation section lacks {missing}", code="klp-section-flags",
                             obj=obj.path, section=rsec.name))
        if is_klp and rsec.link is not obj.symtab:
            out.append(error("livepatch relocation section is not linked to .symtab", code="klp-section-link",
                             obj=obj.path, section=rsec.name))
        for rela in rsec.relocs:
            if rela.type == RX86.NONE:
                continue
            sym = rela.symbol
            livepatch = sym is not None and sym.section is None and sym.special == SHN_LIVEPATCH
            sec_name = target.name if target is not None else rsec.name
            if is_klp and not livepatch:
                out.append(error("entry in a livepatch relocation section refers to a symbol that is not "
                                 "SHN_LIVEPATCH", code="klp-entry-symbol", obj=obj.path, section=sec_name,
                                 offset=rela.offset, symbol=sym.name if sym else None))
            if not is_klp and livepatch:
                out.append(error(f"ordinary relocation in {rsec.name} refers to a livepatch symbol",
                                 code="leftover-reloc", obj=obj.path, section=sec_name, offset=rela.offset,
                                 symbol=sym.name if sym else None))
            if target is not None:
                sites[(id(target), rela.offset)] += 1
    names = {id(s): s.name for s in obj.sections}
    for (sec_id, offset), count in sorted(sites.items(), key=lambda kv: (names.get(kv[0][0], ""), kv[0][1])):
        if count > 1:
            out.append(error(f"{count} relocations write the same site; the loader allows one",
                             code="site-twice", obj=obj.path, section=names.get(sec_id), offset=offset))
    return out


def check_sites(obj: ElfObject,
                conversions: list[Conversion]) -> tuple[list[Diagnostic], list[SiteCheckRecord]]:
    """Decode every converted site: it must be exactly an instruction's field of the right width."""
    by_section: dict[str, list[Conversion]] = {}
    for conv in conversions:
        by_section.setdefault(conv.section, []).append(conv)
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
                checks = check_text_sites(sec.data, name, funcs, sites)
            except CapstoneUnavailable as exc:
                problems.append(error(f"cannot validate relocation sites: {exc}", code="no-capstone",
                                      obj=obj.path))
                return problems, records
            for check in checks:
                records.append(SiteCheckRecord(obj.path, name, check.offset, check.ok, check.log_line(name)))
                if check.problem is not None:
                    problems.append(_from_site_problem(obj.path, name, check.problem))
        else:
            found = check_data_sites(name, sec.size, sites)
            bad = {p.offset for p in found if p.severity == Severity.ERROR}
            for conv in convs:
                detail = f"{name}+{conv.offset:#x} {reloc_name(conv.r_type)} data field"
                records.append(SiteCheckRecord(obj.path, name, conv.offset, conv.offset not in bad, detail))
            problems.extend(_from_site_problem(obj.path, name, p) for p in found)
    return problems, records


def _from_site_problem(path: str, section: str, problem: SiteProblem) -> Diagnostic:
    make = error if problem.severity == Severity.ERROR else warning
    return make(problem.message, code="site-encoding", obj=path, section=section, offset=problem.offset,
                symbol=problem.symbol)


# "livepatch,x86: Clear relocation targets on a module removal" (0c05e7bd2d01) came with 6.3.
_CLEARS_RELOCATIONS = (6, 3)


def reload_caveat(release: str | None, conversions: list[Conversion], display: str) -> list[Diagnostic]:
    """Kernels before 6.3 never clear module-specific klp relocation sites: while the patch is
    loaded, a patched module that is unloaded cannot be loaded again (its sites are nonzero)."""
    if release is None:
        return []
    numbers = release.split("-", 1)[0].split(".")
    try:
        version = (int(numbers[0]), int(numbers[1]))
    except (IndexError, ValueError):
        return []
    targets = sorted({c.identity.rela_obj for c in conversions if c.identity.rela_obj != VMLINUX})
    if version >= _CLEARS_RELOCATIONS or not targets:
        return []
    return [note(f"kernel {release} does not clear livepatch relocations when a module is removed: while "
                 f"this patch is loaded, {', '.join(targets)} cannot be unloaded and loaded again (the "
                 "loader refuses the nonzero sites; fixed in 6.3)", obj=display)]
