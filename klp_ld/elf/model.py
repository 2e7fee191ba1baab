"""A mutable model of an ELF64 relocatable object, detached from any parser.

Sections, symbols and relocations refer to each other by object, never by index: indices are an
artefact of one file layout, and every stage that adds or removes a section or symbol would
otherwise have to renumber them. The reader (`klp_ld.elf.read`) turns indices into references, and
the writer (`klp_ld.elf.write`) numbers them again from the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from klp_ld.elf.consts import (
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHN_UNDEF,
    SHT_GROUP,
    SHT_NOBITS,
    SHT_RELA,
    STB_LOCAL,
    STT_FILE,
    STT_FUNC,
    STT_SECTION,
)
from klp_ld.elf.layout import EI_DATA, Layout, layout_of


@dataclass(eq=False, slots=True)
class Symbol:
    """One `.symtab` entry; `section` is None for SHN_UNDEF and the reserved indices in `special`.

    `name_offset` is where the input's `.strtab` had the name: ld does not merge duplicate strings,
    so reusing the exact offset is what keeps an unchanged table byte-identical.
    """

    name: str
    value: int = 0
    size: int = 0
    bind: int = STB_LOCAL
    type: int = 0
    other: int = 0
    section: Section | None = None
    special: int = SHN_UNDEF
    name_offset: int | None = None

    @property
    def is_undefined(self) -> bool:
        return self.section is None and self.special == SHN_UNDEF

    @property
    def is_local(self) -> bool:
        return self.bind == STB_LOCAL

    def display_name(self) -> str:
        """Section symbols have no name of their own; show the section's, as readelf and objdump do."""
        if self.type == STT_SECTION and self.section is not None and not self.name:
            return self.section.name
        return self.name


@dataclass(eq=False, slots=True)
class Rela:
    """One Elf64_Rela; `symbol` is None for relocations against symbol index 0."""

    offset: int
    type: int
    symbol: Symbol | None
    addend: int


@dataclass(eq=False, slots=True)
class Section:
    """One section; `data` holds the bytes except for SHT_NOBITS, whose size lives in `nobits_size`.

    The tables the writer regenerates (`.symtab`, SHT_RELA, SHT_GROUP) keep their content in
    `relocs`, `members` and the object's symbol list instead of `data`. `file_offset` and `name_offset`
    remember where the input had the section and its name, so that the writer can keep the
    input's layout.
    """

    name: str
    type: int
    flags: int = 0
    addr: int = 0
    addralign: int = 1
    entsize: int = 0
    data: bytes = b""
    nobits_size: int = 0
    link: Section | None = None
    info: int = 0
    info_section: Section | None = None
    info_symbol: Symbol | None = None
    relocs: list[Rela] = field(default_factory=list)
    group_flags: int = 0
    members: list[Section] = field(default_factory=list)
    file_offset: int | None = None
    name_offset: int | None = None

    @property
    def size(self) -> int:
        return self.nobits_size if self.type == SHT_NOBITS else len(self.data)

    @property
    def is_alloc(self) -> bool:
        return bool(self.flags & SHF_ALLOC)

    @property
    def is_exec(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)

    @property
    def is_rela(self) -> bool:
        return self.type == SHT_RELA

    @property
    def is_group(self) -> bool:
        return self.type == SHT_GROUP


@dataclass(eq=False, slots=True)
class ElfObject:
    """An ET_REL object or `.ko`: header fields the writer echoes, sections, one symbol table.

    `sections[0]` is the null section and `symbols[0]` the null symbol, as in the file.
    """

    path: str
    e_type: int
    e_machine: int
    e_version: int
    e_flags: int
    e_ident_tail: bytes
    sections: list[Section]
    symbols: list[Symbol]
    symtab: Section | None = None
    strtab_original: bytes = b"\0"
    shstrtab: Section | None = None

    @property
    def layout(self) -> Layout:
        """The records of the object's byte order, which the writer keeps (e_ident echoes it)."""
        ei_data = self.e_ident_tail[EI_DATA - 4]
        layout = layout_of(ei_data)
        if layout is None:
            raise ValueError(f"{self.path}: EI_DATA {ei_data}, which the reader refuses")
        return layout

    def section(self, name: str) -> Section | None:
        """First section with this name; names may repeat (e.g. many `.text` in one object)."""
        for sec in self.sections:
            if sec.name == name:
                return sec
        return None

    def sections_named(self, prefix: str) -> Iterator[Section]:
        return (sec for sec in self.sections if sec.name.startswith(prefix))

    def rela_sections(self) -> Iterator[Section]:
        return (sec for sec in self.sections if sec.type == SHT_RELA)

    def rela_for(self, target: Section) -> Section | None:
        """The relocation section that applies to `target`, if any (ld and objtool assume one)."""
        for sec in self.sections:
            if sec.type == SHT_RELA and sec.info_section is target:
                return sec
        return None

    def relocs_against(self) -> Iterator[tuple[Section, Rela]]:
        """Every relocation with the section it applies to."""
        for rsec in self.rela_sections():
            if rsec.info_section is None:
                continue
            for rela in rsec.relocs:
                yield rsec.info_section, rela

    def function_symbols(self, section: Section) -> list[Symbol]:
        """FUNC symbols defined in `section`, by address: the exact anchors for an instruction sweep."""
        funcs = [s for s in self.symbols if s.section is section and s.type == STT_FUNC]
        funcs.sort(key=lambda s: (s.value, s.size))
        return funcs

    def symbol_at(self, section: Section, offset: int) -> tuple[Symbol, int] | None:
        """The named symbol that covers `offset`, for `func+0x1b`-style locations in messages.

        AArch64 mapping symbols (`$x`, `$d`, `$x.<any>`: AAELF64's marks of where code and data start)
        name no function, so they never stand for one."""
        best: Symbol | None = None
        for sym in self.symbols:
            if sym.section is not section or not sym.name or sym.type in (STT_SECTION, STT_FILE):
                continue
            if sym.name[:1] == "$" and sym.name[1:2] in ("x", "d") and sym.name[2:3] in ("", "."):
                continue
            covers = sym.size == 0 or offset < sym.value + sym.size or sym.value == offset
            if sym.value <= offset and covers and (best is None or sym.value > best.value):
                best = sym
        return (best, offset - best.value) if best is not None else None

    def remove_sections(self, doomed: set[Section]) -> list[tuple[Section, Rela]]:
        """Drop sections with their relocation sections and the symbols defined in them.

        Debug information may still describe a dropped symbol (an annotation array, say): such
        relocations in non-ALLOC sections become type 0 (NONE), as the array no longer exists.
        A relocation in an ALLOC section that refers to a dropped symbol is returned to the caller,
        which must decide (it means loaded code or data used what is being removed).
        """
        doomed = set(doomed)
        doomed.update(s for s in self.sections if s.type == SHT_RELA and s.info_section in doomed)
        self.sections = [s for s in self.sections if s not in doomed]
        for grp in self.sections:
            if grp.type == SHT_GROUP:
                grp.members = [m for m in grp.members if m not in doomed]
        dead = {id(s) for s in self.symbols if s.section in doomed}
        users: list[tuple[Section, Rela]] = []
        if not dead:
            return users
        for rsec in self.rela_sections():
            target = rsec.info_section
            for rela in rsec.relocs:
                if rela.symbol is None or id(rela.symbol) not in dead:
                    continue
                if target is not None and target.is_alloc:
                    users.append((target, rela))
                else:
                    rela.type = 0
                    rela.symbol = None
                    rela.addend = 0
        if not users:
            self.symbols = [s for s in self.symbols if id(s) not in dead]
        return users


def ordered_symbols(symbols: list[Symbol]) -> list[Symbol]:
    """The ELF rule: the null symbol, then every local, then the rest, each group in its own order."""
    head, rest = symbols[:1], symbols[1:]
    return head + [s for s in rest if s.bind == STB_LOCAL] + [s for s in rest if s.bind != STB_LOCAL]
