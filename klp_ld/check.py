"""`klp-ld check`: verify a finished livepatch module, whoever built it (klp-ld, kpatch, klp-build).

The module is read back into the same conversions klp-ld would have made, so the same rules and
site checks apply to every producer.
"""

from __future__ import annotations

from collections import Counter

from klp_ld.convert import Conversion
from klp_ld.diag import Diagnostic, error
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf
from klp_ld.ksyms.decompress import decompress
from klp_ld.ksyms.load import read_source_bytes
from klp_ld.ksyms.resolution import SymbolProblem
from klp_ld.names import KLP_RELA, VMLINUX, Identity, parse_identity
from klp_ld.postlink import restore_retyped
from klp_ld.resolve import Resolver
from klp_ld.validate import check_module, check_sites


def conversions_in(obj: ElfObject) -> tuple[list[Conversion], list[Diagnostic]]:
    """The klp relocations of a converted module, as `Conversion`s."""
    found: list[Conversion] = []
    problems: list[Diagnostic] = []
    for rsec in obj.rela_sections():
        if not rsec.name.startswith(KLP_RELA):
            continue
        rela_obj = rsec.name[len(KLP_RELA):].split(".", 1)[0]
        target = rsec.info_section
        if target is None:
            continue  # validate.check_tables says why the loader cannot apply such a section
        for rela in rsec.relocs:
            sym = rela.symbol
            parsed = parse_identity(sym.name) if sym is not None else None
            if sym is None or parsed is None:
                problems.append(error("livepatch relocation against a symbol whose name is not "
                                      ".klp.sym.<obj>.<name>,<pos>", code="identity-malformed",
                                      obj=obj.path, section=target.name, offset=rela.offset,
                                      symbol=sym.name if sym is not None else None))
                continue
            identity = Identity(rela_obj, parsed.sym_obj, parsed.name, parsed.sympos)
            found.append(Conversion(target.name, rela.offset, rela.type, rela.addend, identity, sym.name,
                                    rsec.name))
    return found, problems


def check_positions(obj: ElfObject, conversions: list[Conversion], resolver: Resolver) -> list[Diagnostic]:
    """Every identity resolved the way the loader will, with the given symbol sources."""
    problems: list[Diagnostic] = []
    done: set[str] = set()
    for conv in conversions:
        ident = conv.identity
        if ident.kernel_name in done:
            continue
        done.add(ident.kernel_name)
        export = export_problem(obj.path, conv, resolver)
        if export is not None:
            problems.append(export)
        outcome = resolver.index.resolve(ident.sym_obj, ident.name, ident.sympos)
        if isinstance(outcome, SymbolProblem):
            diag = outcome.diagnostic(obj=obj.path, section=conv.section, offset=conv.offset)
            problems.append(Diagnostic(diag.severity, diag.message, diag.obj, diag.section, diag.offset,
                                       ident.kernel_name, diag.code, diag.notes))
    return problems


def export_problem(path: str, conv: Conversion, resolver: Resolver) -> Diagnostic | None:
    """A vmlinux export belongs behind an ordinary relocation, which modpost versions and the loader
    binds with its CRC, license and namespace checks; klp-ld, kpatch and klp-build all keep it there.
    Behind a klp relocation it says the module was built without the kernel's exports. A target
    module's export stays allowed: the patch may load before that module, so only a klp relocation
    can reach it."""
    ident = conv.identity
    if ident.sym_obj != VMLINUX:
        return None
    export = resolver.index.export(ident.name)
    if export is None or export.objname != VMLINUX:
        return None
    return error(f"{ident.name} is exported by vmlinux, but reached through a livepatch relocation: use an "
                 "ordinary reference, which modpost versions and the loader checks (CRC, GPL, namespace)",
                 code="export-via-klp", obj=path, section=conv.section, offset=conv.offset,
                 symbol=ident.kernel_name,
                 notes=("klp-ld keeps exports ordinary when it has the kernel's Module.symvers: this module "
                        "was linked without it (--klp-symvers)",))


def check_object(obj: ElfObject, resolver: Resolver | None = None) -> tuple[list[str], list[Diagnostic]]:
    retyped = restore_retyped(obj)
    conversions, problems = conversions_in(obj)
    problems = retyped + problems
    problems += check_module(obj, conversions)
    site_problems, records = check_sites(obj, conversions)
    problems += site_problems
    if resolver is not None:
        problems += check_positions(obj, conversions, resolver)
    uses: dict[str, list[Conversion]] = {}
    for conv in conversions:
        uses.setdefault(conv.identity.kernel_name, []).append(conv)
    failed = Counter((r.section, r.offset) for r in records if not r.ok)
    lines = [f"{obj.path}: {len(conversions)} livepatch relocation(s) in "
             f"{len({c.klp_section for c in conversions})} section(s), {len(uses)} symbol(s)"]
    width = max((len(s) for s in uses), default=0)
    for name in sorted(uses):
        bad = sum(failed[site] for site in {(c.section, c.offset) for c in uses[name]})
        lines.append(f"  {name:<{width}}  {len(uses[name]):4d} site(s)  {'ok' if not bad else f'{bad} bad'}")
    errors = sum(1 for p in problems if p.severity == "error")
    lines.append(f"{obj.path}: {'OK' if not errors else f'{errors} error(s)'}")
    return lines, problems


def check_module_file(path: str, resolver: Resolver | None = None) -> tuple[list[str], list[Diagnostic]]:
    """Check a `.ko` (also `.ko.xz`/`.ko.gz`), whoever produced it."""
    from klp_ld.srcloc import annotate

    data = decompress(read_source_bytes(path), path)
    lines, problems = check_object(read_elf(data, path), resolver)
    return lines, annotate(data, path, problems)
