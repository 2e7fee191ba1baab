"""Which symbols the kernel's kallsyms table holds, and the type letter it shows for each.

The kernel counts positions over its kallsyms table, so every source must be cut down to what
that table keeps: a symbol `scripts/kallsyms` drops shifts every later position of the same name
if it is counted. The type letters are `nm`'s, which kallsyms, System.map and klp-ld's messages
all show.
"""

from __future__ import annotations

from klp_ld.elf.consts import (
    KSYM_NAME_LEN,
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_WRITE,
    SHN_ABS,
    SHN_COMMON,
    SHT_NOBITS,
    STB_GLOBAL,
    STB_GNU_UNIQUE,
    STB_WEAK,
    STT_OBJECT,
)

# kallsyms leaves these out (scripts/mksysmap, scripts/kallsyms.c: is_ignored_symbol). 'A' is
# there too: x86 keeps no absolute symbols, and the per-CPU ones it does mark 'A' are 'd'/'D' in
# System.map and vmlinux, so they survive this filter.
_IGNORED_TYPES = frozenset("aANUwun")
_IGNORED_PREFIXES = ("$", ".L", "__crc_", "__kstrtab_", "__kstrtabns_", "__kcfi_typeid_")
_IGNORED_NAMES = frozenset({
    "kallsyms_addresses", "kallsyms_offsets", "kallsyms_relative_base", "kallsyms_num_syms",
    "kallsyms_names", "kallsyms_markers", "kallsyms_token_table", "kallsyms_token_index",
    "kallsyms_seqs_of_names",
})


def is_ignored_symbol(name: str, kind: str) -> bool:
    """True for what scripts/kallsyms leaves out of the kernel's table."""
    return (kind in _IGNORED_TYPES or name.startswith(_IGNORED_PREFIXES) or name in _IGNORED_NAMES
            or len(name) >= KSYM_NAME_LEN)


def nm_type(bind: int, stype: int, special: int, flags: int, sh_type: int) -> str:
    """The letter `nm` (and so System.map and kallsyms) gives a defined symbol.

    `special` is the reserved section index (SHN_ABS, SHN_COMMON, ...) or 0 for a real section,
    whose `flags` and `sh_type` then decide.
    """
    if special == SHN_COMMON:
        return "C"
    if bind == STB_GNU_UNIQUE:
        return "u"
    if bind == STB_WEAK:
        return "V" if stype == STT_OBJECT else "W"
    if special == SHN_ABS:
        letter = "a"
    elif flags & SHF_EXECINSTR:
        letter = "t"
    elif flags & SHF_ALLOC:
        letter = "b" if sh_type == SHT_NOBITS else "d" if flags & SHF_WRITE else "r"
    else:
        letter = "n"
    return letter.upper() if bind == STB_GLOBAL else letter
