"""The file header and section header table of any ELF64 file, of either byte order, checked.

The one reader under both the object model (`klp_ld.elf.read`: ET_REL objects and `.ko` files)
and the vmlinux symbol source (`klp_ld.ksyms.symtab`: ET_EXEC). What a file is for, and which
machine and file type it must have, is the caller's business; what every ELF file must get right
to be read at all is checked here, once, with the same words for every kind of file.

More than 65,279 sections (`-ffunction-sections` code can have them) use the extended numbering
of the ELF spec: the count and the section-name table index in section 0. Headers returned from
here have it resolved.
"""

from __future__ import annotations

from typing import NamedTuple

from klp_ld.diag import fail
from klp_ld.elf.consts import ELFCLASS64, ELFMAG, SHN_XINDEX, SHT_NOBITS, SHT_NULL
from klp_ld.elf.layout import EHDR_SIZE, EI_DATA, SHDR_SIZE, Layout, layout_of


class FileHeader(NamedTuple):
    """Elf64_Ehdr, field for field."""

    e_ident: bytes
    e_type: int
    e_machine: int
    e_version: int
    e_entry: int
    e_phoff: int
    e_shoff: int
    e_flags: int
    e_ehsize: int
    e_phentsize: int
    e_phnum: int
    e_shentsize: int
    e_shnum: int
    e_shstrndx: int

    @property
    def layout(self) -> Layout:
        """The records of this file's byte order (`read_file_header` accepts no other)."""
        layout = layout_of(self.e_ident[EI_DATA])
        if layout is None:
            raise ValueError(f"EI_DATA {self.e_ident[EI_DATA]}, which read_file_header refuses")
        return layout


# Elf64_Shdr as Layout.shdr unpacks it: sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link,
# sh_info, sh_addralign, sh_entsize. Readers unpack it into variables of those names. A plain
# tuple, not a NamedTuple: building the subclass costs 2-3 % of reading an object (35,000 headers
# for 100 objects), and an object with 70,000 sections has as many.
SectionHeader = tuple[int, int, int, int, int, int, int, int, int, int]


class SectionHeaders(NamedTuple):
    """The section header table with the extended numbering resolved."""

    headers: list[SectionHeader]
    shstrndx: int


def read_file_header(data: bytes, name: str) -> FileHeader:
    """The ELF header of `data`, once it is known to be a 64-bit ELF file of either byte order."""
    if len(data) < EHDR_SIZE:
        raise fail(f"file is truncated: {len(data)} bytes, shorter than an ELF header", obj=name)
    if data[:4] != ELFMAG:
        raise fail("not an ELF file", obj=name)
    layout = layout_of(data[EI_DATA])
    if data[4] != ELFCLASS64 or layout is None:
        raise fail("not a 64-bit ELF file of a known byte order", obj=name)
    return FileHeader._make(layout.ehdr.unpack_from(data))


def read_section_headers(data: bytes, ehdr: FileHeader, name: str) -> SectionHeaders:
    """Every section header, and the index of the section-name table (0: there is none)."""
    e_shoff = ehdr.e_shoff
    shdr = ehdr.layout.shdr
    if e_shoff == 0:
        raise fail("object has no section header table", obj=name)
    if ehdr.e_shentsize != SHDR_SIZE:
        raise fail(f"section header size is {ehdr.e_shentsize}, not {SHDR_SIZE}", obj=name)
    if e_shoff + SHDR_SIZE > len(data):
        raise fail(f"section header table at {e_shoff:#x} runs past the end of the file", obj=name)
    _, first_type, _, _, _, first_size, first_link, _, _, _ = shdr.unpack_from(data, e_shoff)
    nsec = ehdr.e_shnum or first_size  # 65,280 sections or more: sh_size of section 0
    if nsec == 0:
        raise fail("object has no section header table", obj=name)
    if e_shoff + nsec * SHDR_SIZE > len(data):
        raise fail(f"section header table at {e_shoff:#x} ({nsec} sections) runs past the end of the "
                   "file", obj=name)
    if first_type != SHT_NULL:
        raise fail("section header 0 is not the null section", obj=name)
    # SHN_XINDEX: the index is in sh_link of section 0
    shstrndx = first_link if ehdr.e_shstrndx == SHN_XINDEX else ehdr.e_shstrndx
    if shstrndx >= nsec:
        raise fail(f"the section name table is section {shstrndx}, but there are {nsec} sections",
                   obj=name)
    table = data[e_shoff:e_shoff + nsec * SHDR_SIZE]
    headers: list[SectionHeader] = list(shdr.iter_unpack(table))
    return SectionHeaders(headers, shstrndx)


def section_bytes(data: bytes, sh: SectionHeader, what: str, name: str) -> bytes:
    """The contents of a section (none for SHT_NOBITS and SHT_NULL); `what` names it in messages."""
    _, sh_type, _, _, sh_offset, sh_size, _, _, _, _ = sh
    if sh_type in (SHT_NOBITS, SHT_NULL):
        return b""
    if sh_offset + sh_size > len(data):
        raise fail(f"section {what} ({sh_size:#x} bytes at {sh_offset:#x}) runs past the end of the file "
                   f"({len(data):#x} bytes)", obj=name)
    return data[sh_offset:sh_offset + sh_size]


def cstring(table: bytes, offset: int) -> str | None:
    """The NUL-terminated string at `offset` of a string table; None when there is none there."""
    if offset >= len(table):
        return None
    end = table.find(b"\0", offset)
    if end < 0:
        return None
    return table[offset:end].decode("utf-8", "surrogateescape")
