"""ELF and kernel livepatch constants, named as in the ELF spec and the kernel's uapi headers."""

from __future__ import annotations

from enum import IntEnum

# e_ident / header
ELFMAG = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_REL = 1
ET_EXEC = 2
ET_DYN = 3
EM_X86_64 = 62

# Section types
SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHT_GROUP = 17
SHT_SYMTAB_SHNDX = 18

# Section flags
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_INFO_LINK = 0x40
SHF_LINK_ORDER = 0x80
SHF_GROUP = 0x200
SHF_COMPRESSED = 0x800
# include/uapi/linux/elf.h; not SHF_RO_AFTER_INIT (0x00200000), which the loader sets itself.
SHF_RELA_LIVEPATCH = 0x00100000

# Special section indices
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_LIVEPATCH = 0xFF20
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
SHN_XINDEX = 0xFFFF

# Symbol binding and type
STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2
STB_GNU_UNIQUE = 10
STT_NOTYPE = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3
STT_FILE = 4

# Kernel limits (include/linux/module.h, include/linux/kallsyms.h)
MODULE_NAME_LEN = 56
KSYM_NAME_LEN = 512


class RX86(IntEnum):
    """x86_64 relocation types (psABI); the loader applies only the subset in KERNEL_RELOC_TYPES."""

    NONE = 0
    R64 = 1
    PC32 = 2
    GOT32 = 3
    PLT32 = 4
    COPY = 5
    GLOB_DAT = 6
    JUMP_SLOT = 7
    RELATIVE = 8
    GOTPCREL = 9
    R32 = 10
    R32S = 11
    R16 = 12
    PC16 = 13
    R8 = 14
    PC8 = 15
    DTPMOD64 = 16
    DTPOFF64 = 17
    TPOFF64 = 18
    TLSGD = 19
    TLSLD = 20
    DTPOFF32 = 21
    GOTTPOFF = 22
    TPOFF32 = 23
    PC64 = 24
    GOTOFF64 = 25
    GOTPC32 = 26
    GOT64 = 27
    GOTPCREL64 = 28
    GOTPC64 = 29
    GOTPLT64 = 30
    PLTOFF64 = 31
    SIZE32 = 32
    SIZE64 = 33
    GOTPC32_TLSDESC = 34
    TLSDESC_CALL = 35
    TLSDESC = 36
    IRELATIVE = 37
    RELATIVE64 = 38
    GOTPCRELX = 41
    REX_GOTPCRELX = 42


def reloc_name(r_type: int) -> str:
    """Spell a relocation type the way readelf does, also for numbers we have no name for."""
    try:
        member = RX86(r_type)
    except ValueError:
        return f"R_X86_64_<unknown {r_type}>"
    spelled = {RX86.R64: "64", RX86.R32: "32", RX86.R32S: "32S", RX86.R16: "16", RX86.R8: "8"}
    return "R_X86_64_" + spelled.get(member, member.name)


# arch/x86/kernel/module.c: apply_relocate_add accepts these and nothing else.
KERNEL_RELOC_TYPES = frozenset(
    {RX86.NONE, RX86.R64, RX86.R32, RX86.R32S, RX86.PC32, RX86.PLT32, RX86.PC64})

# Width in bytes of the field each accepted type writes.
RELOC_WIDTH: dict[int, int] = {
    RX86.R64: 8, RX86.PC64: 8, RX86.R32: 4, RX86.R32S: 4, RX86.PC32: 4, RX86.PLT32: 4}

PC_RELATIVE = frozenset({RX86.PC32, RX86.PLT32, RX86.PC64})
