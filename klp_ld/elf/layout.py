"""The byte layouts of the ELF64 little-endian records klp-ld reads and writes, each defined once.

Every reader (objects, `.ko` files, vmlinux) and the writer take their records from here, so a
field can only be read the way it is written. Field order and widths follow `<elf.h>`; the
comment on each layout lists its fields, which readers unpack into variables of those names.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

# e_ident is the first 16 bytes of the file header; e_type follows it.
EI_NIDENT = 16

# Elf64_Ehdr: e_ident, e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
# e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
# Elf64_Shdr: sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info,
# sh_addralign, sh_entsize
SHDR = struct.Struct("<IIQQQQIIQQ")
# Elf64_Sym: st_name, st_info, st_other, st_shndx, st_value, st_size
SYM = struct.Struct("<IBBHQQ")
# Elf64_Rela: r_offset, r_info, r_addend (signed)
RELA = struct.Struct("<QQq")
# Elf64_Chdr: what opens an SHF_COMPRESSED section (ch_type, reserved, ch_size, ch_addralign).
CHDR = struct.Struct("<IIQQ")
# klp-convert's `struct klp_module_reloc { void *sym; u32 sympos; } __packed` in a
# `.klp.module_relocs.<obj>` section: `sym` is only ever read through its relocation.
KLP_MODULE_RELOC = struct.Struct("<QI")

EHDR_SIZE = EHDR.size
SHDR_SIZE = SHDR.size
SYM_SIZE = SYM.size
RELA_SIZE = RELA.size
# SHT_GROUP and SHT_SYMTAB_SHNDX sections are arrays of Elf64_Word.
WORD_SIZE = 4


def unpack_words(data: bytes) -> tuple[int, ...]:
    """An Elf64_Word array; the caller has checked that the length is a multiple of 4."""
    return struct.unpack(f"<{len(data) // WORD_SIZE}I", data)


def pack_words(words: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(words)}I", *words)
