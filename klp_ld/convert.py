"""Turn a linked `.ko` into the kernel's livepatch format (Documentation/livepatch/module-elf-format.rst).

ld keeps neither SHN_LIVEPATCH nor SHF_RELA_LIVEPATCH, and cannot hold two relocation sections for
one section, so this runs on the finished `.ko`, after the last ld. For every relocation against
an identity symbol:
- a copy goes to `.klp.rela.<obj>.<target section>` (SHT_RELA, SHF_ALLOC|SHF_INFO_LINK|
  SHF_RELA_LIVEPATCH, linked to `.symtab`, `sh_info` = target); SHF_ALLOC because module-specific
  sections are applied after the load image is freed;
- the original becomes the architecture's NONE type against no symbol, so the loader writes
  each site once; where the loader does not apply NONE (ppc64: "Unknown ADD relocation: 0"), the
  original is removed from its section instead;
- the symbol becomes `.klp.sym.<obj>.<name>,<pos>` in SHN_LIVEPATCH.
The annotation sections have done their job and are removed.
"""

from __future__ import annotations

from dataclasses import dataclass

from klp_ld.arch import arch_of
from klp_ld.diag import KlpLdError, error
from klp_ld.elf.consts import (
    SHF_ALLOC,
    SHF_INFO_LINK,
    SHF_RELA_LIVEPATCH,
    SHN_LIVEPATCH,
    SHT_RELA,
    STB_GLOBAL,
    STT_NOTYPE,
)
from klp_ld.elf.layout import RELA_SIZE
from klp_ld.elf.model import ElfObject, Rela, Section, Symbol
from klp_ld.names import MODULE_RELOCS, Identity, parse_identity

KLP_RELA_FLAGS = SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH


@dataclass(frozen=True, slots=True)
class Conversion:
    """One relocation moved into a `.klp.rela` section."""

    section: str
    offset: int
    r_type: int
    addend: int
    identity: Identity
    link_name: str
    klp_section: str


@dataclass(slots=True)
class ConvertResult:
    conversions: list[Conversion]
    removed_sections: list[str]


def identity_symbols(obj: ElfObject) -> dict[int, tuple[Symbol, Identity]]:
    """id(symbol) -> (symbol, identity) for every undefined or already converted identity symbol."""
    found = {}
    for sym in obj.symbols[1:]:
        if sym.is_undefined or (sym.section is None and sym.special == SHN_LIVEPATCH):
            identity = parse_identity(sym.name)
            if identity is not None:
                found[id(sym)] = (sym, identity)
    return found


def has_work(obj: ElfObject) -> bool:
    return bool(identity_symbols(obj)) or any(True for _ in obj.sections_named(MODULE_RELOCS))


def convert(obj: ElfObject) -> ConvertResult:
    """Convert `obj` in place; the caller validates the result before writing it."""
    identities = identity_symbols(obj)
    annotation_secs = {s for s in obj.sections_named(MODULE_RELOCS) if not s.is_rela}
    removed = sorted({s.name for s in annotation_secs})
    users = obj.remove_sections(annotation_secs)
    if users:
        raise KlpLdError(*(error("loaded code or data refers to an annotation record, which klp-ld "
                                 "removes from the module", code="annotation-used", obj=obj.path,
                                 section=target.name, offset=rela.offset,
                                 symbol=rela.symbol.name if rela.symbol else None)
                           for target, rela in users))

    # One kernel symbol per kernel name: SUSE's split may give two link names for one symbol.
    kernel_symbol: dict[str, Symbol] = {}
    for sym, identity in identities.values():
        kernel_symbol.setdefault(identity.kernel_name, sym)

    arch = arch_of(obj)
    none = arch.none
    klp_secs: dict[tuple[str, int], Section] = {}
    conversions: list[Conversion] = []
    for rsec in list(obj.rela_sections()):
        target = rsec.info_section
        if target is None or rsec.flags & SHF_RELA_LIVEPATCH:
            continue
        moved: set[int] = set()
        for rela in rsec.relocs:
            if rela.symbol is None or id(rela.symbol) not in identities:
                continue
            sym, identity = identities[id(rela.symbol)]
            klp_name = identity.rela_section(target.name)
            key = (klp_name, id(target))
            klp = klp_secs.get(key)
            if klp is None:
                klp = Section(name=klp_name, type=SHT_RELA, flags=KLP_RELA_FLAGS, addralign=8,
                              entsize=RELA_SIZE, link=obj.symtab, info_section=target)
                klp_secs[key] = klp
            klp.relocs.append(Rela(rela.offset, rela.type, kernel_symbol[identity.kernel_name], rela.addend))
            conversions.append(Conversion(target.name, rela.offset, rela.type, rela.addend, identity,
                                          sym.name, klp_name))
            rela.type = none
            rela.symbol = None
            rela.addend = 0
            moved.add(id(rela))
        if moved and not arch.none_applied:
            rsec.relocs = [r for r in rsec.relocs if id(r) not in moved]

    merged = {id(s) for s, ident in identities.values() if kernel_symbol[ident.kernel_name] is not s}
    if merged:
        obj.symbols = [s for s in obj.symbols if id(s) not in merged]
    for sym in kernel_symbol.values():
        identity = identities[id(sym)][1]
        sym.name = identity.kernel_name
        sym.name_offset = None
        sym.section = None
        sym.special = SHN_LIVEPATCH
        sym.bind = STB_GLOBAL
        sym.type = STT_NOTYPE
        sym.value = 0
        sym.size = 0
    obj.sections.extend(klp_secs.values())
    return ConvertResult(conversions, removed)
