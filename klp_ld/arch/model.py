"""What each architecture's module loader asks of a livepatch relocation.

The `.klp.rela`/`.klp.sym` format, names and sympos rules are the same on every architecture;
what differs is in `arch/*/kernel/module*.c`: which relocation types `apply_relocate_add` applies
(and whether NONE is one of them), the field each writes and how (a whole field in the object's byte order on
x86_64; masked bits of an instruction word on ppc64le and arm64), whether it refuses a site that is
not zero, how it writes once the module is formed (and what else it may write then, such as arm64's
PLT entries), which sections and code it consumes before livepatch relocations exist, and what a site
must look like in the code (checked with capstone, in the architecture's `*_text` module, imported
only when text sites need it).

An object says its architecture in `e_machine`; every rule is looked up through
`klp_ld.arch.for_machine`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from klp_ld.arch.sites import FuncRange, SiteCheck, SiteInput
    from klp_ld.elf.model import ElfObject

#: section name -> (start, end, why) of code the loader rewrites or copies early
CodeRanges = Mapping[str, Sequence[tuple[int, int, str]]]


@dataclass(frozen=True)
class Arch:
    """One architecture's loader, as klp-ld must respect it."""

    name: str
    e_machine: int
    #: how readelf spells this architecture's relocation types ("R_X86_64_" + ..., "R_PPC64_" + ...)
    spell: Callable[[int], str]
    #: the type that writes nothing (type 0); a converted original becomes it where the loader
    #: applies it (`none_applied`)
    none: int
    #: the 64-bit absolute type of an annotation record's `sym` field
    abs64: int
    #: every type `apply_relocate_add` applies -> how many bytes at `r_offset` it reads or writes: the
    #: whole field for data (pointers, DWARF, x86_64's displacements and immediates); for a field inside
    #: an instruction word, the unit the loader loads and stores (ppc64le's REL24 rewrites 24 bits of a
    #: 4-byte word, its TOC16/REL16 types 16 bits of a 2-byte halfword). Which bits of that unit are the
    #: field, and whether the unit is an instruction at all, is the text checker's business.
    widths: Mapping[int, int]
    #: of those, the types that write a whole data field (DWARF, pointers), with whether
    #: the value is relative to the site
    data_fields: Mapping[int, bool]
    #: whether `apply_relocate_add` refuses a site whose bytes are not zero
    zero_sites: bool
    #: (code, message) when the loader would refuse or mis-apply a livepatch relocation of a type
    klp_type_problem: Callable[[int], tuple[str, str] | None]
    #: sections the loader consumes at load, before a module-specific klp relocation is written
    early_consumed: tuple[str, ...]
    #: tables that may only describe the module's own code: no klp relocation at all
    own_code_tables: tuple[str, ...]
    #: tables of naturally aligned fields (a misaligned site there is an error, not a warning)
    aligned_tables: frozenset[str]
    #: tables whose fields need less than natural alignment
    table_align: Mapping[str, int]
    #: the module holding `check_text_sites` for this architecture (imports capstone)
    text_module: str
    #: whether `apply_relocate_add` applies `none` (as a no-op); where it does not, a NONE entry fails
    #: the load, so the conversion removes the original relocation instead of retyping it
    none_applied: bool = True
    #: name prefixes of sections that hold ordinary data read through klp relocations, besides the
    #: `.text`/`.data`/... every architecture has (ppc64le: `.toc`, the module's table of addresses)
    data_sections: tuple[str, ...] = ()
    #: name prefixes of further sections consumed like `early_consumed` (numbered names)
    early_consumed_prefixes: tuple[str, ...] = ()
    #: name prefixes of further tables like `own_code_tables`
    own_code_prefixes: tuple[str, ...] = ()
    #: the byte order of the architecture's objects ("big" on s390x); an object saying otherwise in
    #: its ELF header is not one this loader takes
    byteorder: str = "little"
    #: whether `.init*` sections are init memory, freed when the module's init returns
    #: (kernel/module/main.c: module_init_section, which an architecture may override)
    init_freed: bool = True
    #: types `apply_relocate_add` writes with a plain store even after the module is formed (late,
    #: module-specific klp relocations): their sites must still be writable memory then
    plain_store_types: frozenset[int] = frozenset()
    #: types whose module-specific sites the loader cannot write a second time before 6.3, when the
    #: module they refer to is unloaded and loaded again (None: every type, as where sites must be zero)
    rewrite_refused_types: frozenset[int] | None = None
    #: what the loader does then, as a message says it
    rewrite_refusal: str = "the loader refuses the nonzero sites"

    #: types the loader makes room for by counting them in SHT_RELA sections only (ppc64: a REL24
    #: call's stub, get_stubs_size): in a section retyped after the link they find no room
    counted_in_rela: frozenset[int] = frozenset()
    #: what that means, as a message says it (`{types}` names the types found)
    counted_in_rela_why: str = ("the loader makes room for {types} entries by counting them in SHT_RELA "
                                "sections only (get_stubs_size), so these find none and the module fails "
                                "to load")
    #: types whose symbol's address the loader stores in a slot of the patch module once and never again
    #: (s390's GOT: got_initialized): `.klp.rela.<module>` is applied anew when that module loads again,
    #: but such a slot keeps the address of its first load
    slot_types: frozenset[int] = frozenset()
    #: what that means, as a message says it (`{module}` names the patched module)
    slot_why: str = ""
    #: why a module-specific relocation of a type, at an offset of its section, may make the loader write
    #: a stub into the patch module's text with a plain store once that text is read-only (arm64: a PLT
    #: entry or an erratum veneer), or None; the type's own site may well be written safely
    late_stub: Callable[[int, int], str | None] = lambda r_type, offset: None
    #: code ranges inside ordinary sections that the loader rewrites or copies before any module-specific
    #: relocation is written (arm64: alternatives, whose replacement code shares the section it patches);
    #: None where `early_consumed` names every such place
    consumed_code: Callable[[ElfObject], CodeRanges] | None = None
    #: why an object with these ELF header flags is not one this loader takes (an ABI), or None
    header_problem: Callable[[int], str | None] = lambda e_flags: None
    #: undefined names the module's final link defines itself (ppc64: `.TOC.`, and the register
    #: save/restore helpers `--save-restore-funcs` adds): never kernel symbols to resolve
    linker_defined: tuple[str, ...] = ()

    def reloc_name(self, r_type: int) -> str:
        return self.spell(r_type)

    def check_text_sites(self, code: bytes, section: str, funcs: Iterable[FuncRange],
                         sites: Iterable[SiteInput]) -> list[SiteCheck]:
        """Decode the code around each site; raises CapstoneUnavailable when capstone is missing."""
        module = importlib.import_module(self.text_module)
        checked: list[SiteCheck] = module.check_text_sites(code, section, funcs, sites)
        return checked


def speller(prefix: str, names: Mapping[int, str]) -> Callable[[int], str]:
    """readelf's spelling of an architecture's relocation types (`prefix` + name), also for numbers
    that have no name."""
    def spell(r_type: int) -> str:
        name = names.get(r_type)
        return prefix + name if name is not None else f"{prefix}<unknown {r_type}>"

    return spell
