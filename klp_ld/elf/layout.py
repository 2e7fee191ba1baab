"""The byte layouts of the ELF64 records klp-ld reads and writes, each defined once per byte order.

Every reader (objects, `.ko` files, vmlinux) and the writer take their records from the `Layout`
of the file's `EI_DATA` byte, so a field can only be read the way it is written, and a big-endian
file (s390x) is read and written with the same code as a little-endian one. Field order and
widths follow `<elf.h>`; the comment on each record lists its fields, which readers unpack into
variables of those names.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from klp_ld.elf.consts import ELFDATA2LSB, ELFDATA2MSB

# e_ident is the first 16 bytes of the file header; e_type follows it. EI_DATA is its byte order.
EI_NIDENT = 16
EI_DATA = 5

# SHT_GROUP and SHT_SYMTAB_SHNDX sections are arrays of Elf64_Word.
WORD_SIZE = 4


@dataclass(frozen=True)
class Layout:
    """The records of one byte order (`order` is struct's "<" or ">")."""

    order: Literal["<", ">"]
    # Elf64_Ehdr: e_ident, e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
    # e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    ehdr: struct.Struct
    # Elf64_Shdr: sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info,
    # sh_addralign, sh_entsize
    shdr: struct.Struct
    # Elf64_Sym: st_name, st_info, st_other, st_shndx, st_value, st_size
    sym: struct.Struct
    # Elf64_Rela: r_offset, r_info, r_addend (signed)
    rela: struct.Struct
    # Elf64_Chdr: what opens an SHF_COMPRESSED section (ch_type, reserved, ch_size, ch_addralign).
    chdr: struct.Struct
    # klp-convert's `struct klp_module_reloc { void *sym; u32 sympos; } __packed` in a
    # `.klp.module_relocs.<obj>` section: `sym` is only ever read through its relocation.
    klp_module_reloc: struct.Struct

    @classmethod
    def of_order(cls, order: Literal["<", ">"]) -> Layout:
        def record(fmt: str) -> struct.Struct:
            return struct.Struct(order + fmt)

        return cls(order, record("16sHHIQQQIHHHHHH"), record("IIQQQQIIQQ"), record("IBBHQQ"),
                   record("QQq"), record("IIQQ"), record("QI"))

    @property
    def byteorder(self) -> Literal["little", "big"]:
        """The byte order as `int.from_bytes` spells it."""
        return "little" if self.order == "<" else "big"

    def unpack_words(self, data: bytes) -> tuple[int, ...]:
        """An Elf64_Word array; the caller has checked that the length is a multiple of 4."""
        return struct.unpack(f"{self.order}{len(data) // WORD_SIZE}I", data)

    def pack_words(self, words: Sequence[int]) -> bytes:
        return struct.pack(f"{self.order}{len(words)}I", *words)


LSB = Layout.of_order("<")
MSB = Layout.of_order(">")
# The sizes are the same in either byte order.
EHDR_SIZE = LSB.ehdr.size
SHDR_SIZE = LSB.shdr.size
SYM_SIZE = LSB.sym.size
RELA_SIZE = LSB.rela.size


def layout_of(ei_data: int) -> Layout | None:
    """The layout of a file whose e_ident[EI_DATA] is `ei_data`; None for neither byte order."""
    if ei_data == ELFDATA2LSB:
        return LSB
    if ei_data == ELFDATA2MSB:
        return MSB
    return None
