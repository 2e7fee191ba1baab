"""What each architecture's module loader asks of a livepatch relocation.

The `.klp.rela`/`.klp.sym` format, names and sympos rules are the same on every architecture;
what differs is in `arch/*/kernel/module*.c`: which relocation types `apply_relocate_add` applies,
the field each writes, whether it refuses a site that is not zero, which sections it consumes
before livepatch relocations exist, and what a site must look like in the code (checked with
capstone, in the architecture's `*_text` module, imported only when text sites need it).

An object says its architecture in `e_machine`; every rule is looked up through
`klp_ld.arch.for_machine`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from klp_ld.arch.sites import FuncRange, SiteCheck, SiteInput


@dataclass(frozen=True)
class Arch:
    """One architecture's loader, as klp-ld must respect it."""

    name: str
    e_machine: int
    #: how readelf spells this architecture's relocation types ("R_X86_64_" + ...)
    spell: Callable[[int], str]
    #: the type that writes nothing, which a converted original becomes
    none: int
    #: the 64-bit absolute type of an annotation record's `sym` field
    abs64: int
    #: every type `apply_relocate_add` applies -> the width in bytes of the field it writes
    #: (a whole little-endian field; instruction fields are the text checker's business)
    widths: Mapping[int, int]
    #: of those, the types that write a whole data field (DWARF, pointers), with whether the
    #: value is relative to the site
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

    def reloc_name(self, r_type: int) -> str:
        return self.spell(r_type)

    def check_text_sites(self, code: bytes, section: str, funcs: Iterable[FuncRange],
                         sites: Iterable[SiteInput]) -> list[SiteCheck]:
        """Decode the code around each site; raises CapstoneUnavailable when capstone is missing."""
        module = importlib.import_module(self.text_module)
        checked: list[SiteCheck] = module.check_text_sites(code, section, funcs, sites)
        return checked
