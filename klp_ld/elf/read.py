"""Read an ET_REL object or `.ko` of a supported architecture into the `klp_ld.elf.model` classes.

Records are unpacked with `struct` (the file's byte order's `klp_ld.elf.layout.Layout`, the headers through
`klp_ld.elf.headers`): headers and tables are fixed ELF64 records, and a general ELF library spends
more on building its own objects than this whole read takes (pyelftools needs 30-40 ms to import
and about 1 s for the section headers of an object with 70,000 sections). Everything a corrupt
file can get wrong becomes one `KlpLdError` naming the file, never a traceback; an exception of
any other kind is a bug of klp-ld and is left to say so.

From 65,280 sections on, the section indices of symbols that do not fit `st_shndx` are in an
SHT_SYMTAB_SHNDX table.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from klp_ld.arch import for_machine, supported_names
from klp_ld.diag import fail
from klp_ld.elf.consts import (
    ELFMAG,
    ET_REL,
    SHF_COMPRESSED,
    SHF_INFO_LINK,
    SHN_LORESERVE,
    SHN_UNDEF,
    SHN_XINDEX,
    SHT_GROUP,
    SHT_NOBITS,
    SHT_REL,
    SHT_RELA,
    SHT_SYMTAB,
    SHT_SYMTAB_SHNDX,
)
from klp_ld.elf.headers import FileHeader, cstring, read_file_header, read_section_headers, section_bytes
from klp_ld.elf.layout import RELA_SIZE, SYM_SIZE, WORD_SIZE, Layout
from klp_ld.elf.model import ElfObject, Rela, Section, Symbol

SectionAt = Callable[[int, str], Section]
# Larger than any alignment a kernel object uses (page alignment is 4096); a corrupt value would
# otherwise make the writer pad with gigabytes.
MAX_ALIGN = 1 << 16


def read_elf_file(path: str, display: str | None = None) -> ElfObject:
    """Read `path`; `display` is how messages name it (the spelling the user gave ld)."""
    name = display or path
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}", obj=name) from None
    return read_elf(data, name)


def read_elf(data: bytes, name: str) -> ElfObject:
    """Parse `data`; every malformation is reported as `klp-ld: error: NAME: reason`."""
    ehdr = read_file_header(data, name)
    arch = for_machine(ehdr.e_machine)
    if arch is None:
        raise fail(f"unsupported machine {ehdr.e_machine} (klp-ld supports {supported_names()})", obj=name)
    problem = arch.header_problem(ehdr.e_flags)
    if problem is not None:
        raise fail(problem, obj=name)
    if ehdr.layout.byteorder != arch.byteorder:
        raise fail(f"{ehdr.layout.byteorder}-endian {arch.name} object: {arch.name} objects are "
                   f"{arch.byteorder}-endian", obj=name)
    if ehdr.e_type != ET_REL:
        raise fail(f"not a relocatable object (e_type {ehdr.e_type})", obj=name)
    try:
        return _parse(data, ehdr, name)
    except (struct.error, IndexError, ValueError) as exc:
        # Each check below should catch a corruption first; these are what unpacking and slicing
        # raise for one that slipped through. Nothing else is caught: a bug must not pass for a
        # bad input.
        raise fail(f"malformed ELF file: {_describe(exc)}", obj=name) from None


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _parse(data: bytes, ehdr: FileHeader, name: str) -> ElfObject:
    headers, shstrndx = read_section_headers(data, ehdr, name)
    layout = ehdr.layout
    nsec = len(headers)
    names = section_bytes(data, headers[shstrndx], f"{shstrndx} (section names)", name) if shstrndx else b""
    sections: list[Section] = []
    links: list[int] = []
    for i, (sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign,
            sh_entsize) in enumerate(headers):
        sec_name = cstring(names, sh_name) if i and shstrndx else ""
        if sec_name is None:
            raise fail(f"section {i} has a name offset {sh_name:#x} outside the section name table",
                       obj=name)
        if sh_type == SHT_REL:
            raise fail(f"{sec_name}: SHT_REL sections are not used by 64-bit kernels", obj=name)
        if sh_addralign & (sh_addralign - 1) or sh_addralign > MAX_ALIGN:
            raise fail(f"section {sec_name} has an implausible alignment {sh_addralign:#x}", obj=name)
        sections.append(Section(
            name=sec_name, type=sh_type, flags=sh_flags, addr=sh_addr, addralign=sh_addralign,
            entsize=sh_entsize, data=section_bytes(data, headers[i], sec_name, name),
            nobits_size=sh_size if sh_type == SHT_NOBITS else 0, info=sh_info, file_offset=sh_offset,
            name_offset=sh_name))
        links.append(sh_link)

    def section_at(index: int, what: str) -> Section:
        if not 0 < index < nsec:
            raise fail(f"{what} names section index {index}, but there are {nsec} sections", obj=name)
        return sections[index]

    for i in range(1, nsec):
        if links[i]:
            sections[i].link = section_at(links[i], f"section {sections[i].name} sh_link")

    symtabs = [s for s in sections if s.type == SHT_SYMTAB]
    if len(symtabs) > 1:
        raise fail("more than one symbol table", obj=name)
    symbols: list[Symbol] = [Symbol("")]
    symtab = symtabs[0] if symtabs else None
    strtab_bytes = b"\0"
    if symtab is not None:
        if symtab.link is None:
            raise fail(".symtab has no string table (sh_link 0)", obj=name)
        strtab_bytes = symtab.link.data
        extended = _extended_indices(sections, symtab, layout, name)
        symbols = _read_symbols(symtab, strtab_bytes, sections, extended, layout, name)

    for sec in sections:
        if sec.type == SHT_RELA:
            _read_relocs(sec, symbols, layout, name, section_at)
        elif sec.type == SHT_GROUP:
            _read_group(sec, symbols, layout, name, section_at)

    return ElfObject(
        path=name, e_type=ET_REL, e_machine=ehdr.e_machine, e_version=ehdr.e_version, e_flags=ehdr.e_flags,
        e_ident_tail=ehdr.e_ident[len(ELFMAG):], sections=sections, symbols=symbols,
        symtab=symtab, strtab_original=strtab_bytes, shstrtab=sections[shstrndx] if shstrndx else None)


def _extended_indices(sections: list[Section], symtab: Section, layout: Layout,
                      name: str) -> tuple[int, ...] | None:
    """The SHT_SYMTAB_SHNDX table: each symbol's section index where st_shndx says SHN_XINDEX.

    The writer rebuilds it from the symbols, as it does `.symtab`, so its bytes are dropped here.
    """
    tables = [s for s in sections if s.type == SHT_SYMTAB_SHNDX]
    if not tables:
        return None
    if len(tables) > 1:
        raise fail("more than one SHT_SYMTAB_SHNDX section", obj=name)
    table = tables[0]
    if table.link is not symtab:
        raise fail(f"{table.name}: sh_link does not name the symbol table", obj=name)
    if len(table.data) != len(symtab.data) // SYM_SIZE * WORD_SIZE:
        raise fail(f"{table.name}: {len(table.data):#x} bytes for {len(symtab.data) // SYM_SIZE} "
                   "symbols, expected 4 per symbol", obj=name)
    words = layout.unpack_words(table.data)
    table.data = b""
    return words


def _read_symbols(symtab: Section, strtab: bytes, sections: list[Section], extended: tuple[int, ...] | None,
                  layout: Layout, name: str) -> list[Symbol]:
    if symtab.entsize not in (0, SYM_SIZE) or len(symtab.data) % SYM_SIZE:
        raise fail(f".symtab size {len(symtab.data):#x} is not a multiple of {SYM_SIZE}", obj=name)
    symbols: list[Symbol] = []
    nsec = len(sections)
    for index, (st_name, st_info, st_other, st_shndx, st_value, st_size) in enumerate(
            layout.sym.iter_unpack(symtab.data)):
        sym_name = cstring(strtab, st_name)
        if sym_name is None:
            raise fail(f"symbol {index} has a name offset {st_name:#x} outside .strtab", obj=name)
        section: Section | None = None
        special = SHN_UNDEF
        if st_shndx == SHN_XINDEX:
            if extended is None:
                raise fail(f"symbol {sym_name or index} has section index SHN_XINDEX, but there is no "
                           "SHT_SYMTAB_SHNDX section", obj=name)
            st_shndx = extended[index]
            if not 0 < st_shndx < nsec:
                raise fail(f"symbol {sym_name or index} is in section {st_shndx} (SHT_SYMTAB_SHNDX), but "
                           f"there are {nsec} sections", obj=name)
            section = sections[st_shndx]
        elif st_shndx >= SHN_LORESERVE:
            special = st_shndx
        elif st_shndx != SHN_UNDEF:
            if st_shndx >= nsec:
                raise fail(f"symbol {sym_name or index} is in section {st_shndx}, but there are only "
                           f"{nsec} sections", obj=name)
            section = sections[st_shndx]
        symbols.append(Symbol(sym_name, st_value, st_size, st_info >> 4, st_info & 0xF, st_other,
                              section, special, st_name))
    if not symbols:
        symbols.append(Symbol(""))
    return symbols


def _read_relocs(sec: Section, symbols: list[Symbol], layout: Layout, name: str,
                 section_at: SectionAt) -> None:
    if len(sec.data) % RELA_SIZE:
        raise fail(f"{sec.name}: size {len(sec.data):#x} is not a multiple of {RELA_SIZE}", obj=name)
    if sec.info or sec.flags & SHF_INFO_LINK:
        sec.info_section = section_at(sec.info, f"relocation section {sec.name} sh_info")
    target = sec.info_section
    limit = _relocatable_size(target, layout) if target is not None else None
    nsym = len(symbols)
    relocs: list[Rela] = []
    append = relocs.append
    for r_offset, r_info, r_addend in layout.rela.iter_unpack(sec.data):
        sym_index = r_info >> 32
        if sym_index >= nsym:
            raise fail(f"relocation at {r_offset:#x} uses symbol index {sym_index}, but .symtab has "
                       f"{nsym} symbols", obj=name, section=sec.name)
        if limit is not None and r_offset >= limit:
            raise fail(f"relocation at {r_offset:#x} lies past the end of {target.name if target else ''} "
                       f"({limit:#x} bytes)", obj=name, section=sec.name)
        append(Rela(r_offset, r_info & 0xFFFFFFFF, symbols[sym_index] if sym_index else None, r_addend))
    sec.relocs = relocs
    sec.data = b""


def _read_group(sec: Section, symbols: list[Symbol], layout: Layout, name: str,
                section_at: SectionAt) -> None:
    if len(sec.data) % WORD_SIZE or not sec.data:
        raise fail(f"group section {sec.name} has a size that is not a multiple of 4", obj=name)
    words = layout.unpack_words(sec.data)
    sec.group_flags = words[0]
    sec.members = [section_at(w, f"group {sec.name}") for w in words[1:]]
    if not 0 < sec.info < len(symbols):
        raise fail(f"group {sec.name} signature symbol {sec.info} does not exist", obj=name)
    sec.info_symbol = symbols[sec.info]
    sec.data = b""


def _relocatable_size(sec: Section, layout: Layout) -> int:
    """How far relocations may reach into `sec`: a compressed section (gcc -gz) is relocated
    after decompression, so its bound is the size its header announces, not its size on disk."""
    if sec.flags & SHF_COMPRESSED and len(sec.data) >= layout.chdr.size:
        return int(layout.chdr.unpack_from(sec.data)[2])
    return sec.size
