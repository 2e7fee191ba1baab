"""ppc64le (ELFv2): arch/powerpc/kernel/module_64.c and module.c (6.1), as a livepatch relocation meets them.

What differs from x86_64, and why each rule here exists:
- `apply_relocate_add` applies fifteen types and has no case for R_PPC64_NONE: a NONE entry in any
  relocation section of an SHF_ALLOC target fails the load ("Unknown ADD relocation: 0", -ENOEXEC).
  So the original of a converted relocation is removed from its section, not retyped.
- It never looks at the bytes already at a site: REL24 keeps the word's opcode, AA and LK bits and
  replaces LI, the TOC16/REL16 types OR 16 bits into a halfword, ADDR64/REL64 overwrite. So a site
  need not be zero; it must still be exactly the field the type describes.
- A call to a symbol outside the module (SHN_UNDEF or SHN_LIVEPATCH: every klp symbol) goes through
  a stub in `.stubs` that saves r2 and jumps to the symbol's global entry point, and restore_r2
  turns the `nop` after the `bl` into `ld r2,24(r1)` ("Expected nop after call" otherwise). The
  stubs are counted once, at load, over every SHT_RELA section, `.klp.rela.*` included
  (module_frob_arch_sections -> get_stubs_size -> count_relocs).
- Extern data is reached through the module's own `.toc`: `addis/ld` with TOC16_HA/TOC16_LO_DS
  against the `.toc` section, whose entry holds the address (R_PPC64_ADDR64). So a klp relocation
  for data sits in `.rela.toc`; a TOC-relative relocation against a kernel symbol cannot be right,
  because the loader computes it against this module's TOC pointer (my_r2).
- Late writes (module-specific sections, applied after the module is formed) go through
  patch_instruction for REL24 only; every other type is a plain store, which faults on memory that
  is read-only by then (STRICT_MODULE_RWX, the Kconfig default on Book3S-64).
- module_init_section() returns false: `.init*` sections are laid out with the core and never freed.
- module_finalize applies the feature-fixup tables (`__ftr_fixup`, `__mmu_ftr_fixup`,
  `__fw_ftr_fixup`, `__spec_barrier_fixup`, `__lwsync_fixup`): each entry holds REL64 offsets to the
  module's own code, and the `__ftr_alt_*` sections hold replacement code copied over the original
  then, before any module-specific klp relocation is written.
"""

from __future__ import annotations

from enum import IntEnum

from klp_ld.arch.model import Arch, speller

EM_PPC64 = 21


class RPPC64(IntEnum):
    """ppc64 relocation types, named as binutils 2.40's readelf prints them (R_PPC64_ + name)."""

    NONE = 0
    ADDR32 = 1
    ADDR24 = 2
    ADDR16 = 3
    ADDR16_LO = 4
    ADDR16_HI = 5
    ADDR16_HA = 6
    ADDR14 = 7
    ADDR14_BRTAKEN = 8
    ADDR14_BRNTAKEN = 9
    REL24 = 10
    REL14 = 11
    REL14_BRTAKEN = 12
    REL14_BRNTAKEN = 13
    GOT16 = 14
    GOT16_LO = 15
    GOT16_HI = 16
    GOT16_HA = 17
    COPY = 19
    GLOB_DAT = 20
    JMP_SLOT = 21
    RELATIVE = 22
    UADDR32 = 24
    UADDR16 = 25
    REL32 = 26
    PLT32 = 27
    PLTREL32 = 28
    PLT16_LO = 29
    PLT16_HI = 30
    PLT16_HA = 31
    SECTOFF = 33
    SECTOFF_LO = 34
    SECTOFF_HI = 35
    SECTOFF_HA = 36
    REL30 = 37
    ADDR64 = 38
    ADDR16_HIGHER = 39
    ADDR16_HIGHERA = 40
    ADDR16_HIGHEST = 41
    ADDR16_HIGHESTA = 42
    UADDR64 = 43
    REL64 = 44
    PLT64 = 45
    PLTREL64 = 46
    TOC16 = 47
    TOC16_LO = 48
    TOC16_HI = 49
    TOC16_HA = 50
    TOC = 51
    PLTGOT16 = 52
    PLTGOT16_LO = 53
    PLTGOT16_HI = 54
    PLTGOT16_HA = 55
    ADDR16_DS = 56
    ADDR16_LO_DS = 57
    GOT16_DS = 58
    GOT16_LO_DS = 59
    PLT16_LO_DS = 60
    SECTOFF_DS = 61
    SECTOFF_LO_DS = 62
    TOC16_DS = 63
    TOC16_LO_DS = 64
    PLTGOT16_DS = 65
    PLTGOT16_LO_DS = 66
    TLS = 67
    DTPMOD64 = 68
    TPREL16 = 69
    TPREL16_LO = 70
    TPREL16_HI = 71
    TPREL16_HA = 72
    TPREL64 = 73
    DTPREL16 = 74
    DTPREL16_LO = 75
    DTPREL16_HI = 76
    DTPREL16_HA = 77
    DTPREL64 = 78
    GOT_TLSGD16 = 79
    GOT_TLSGD16_LO = 80
    GOT_TLSGD16_HI = 81
    GOT_TLSGD16_HA = 82
    GOT_TLSLD16 = 83
    GOT_TLSLD16_LO = 84
    GOT_TLSLD16_HI = 85
    GOT_TLSLD16_HA = 86
    GOT_TPREL16_DS = 87
    GOT_TPREL16_LO_DS = 88
    GOT_TPREL16_HI = 89
    GOT_TPREL16_HA = 90
    GOT_DTPREL16_DS = 91
    GOT_DTPREL16_LO_DS = 92
    GOT_DTPREL16_HI = 93
    GOT_DTPREL16_HA = 94
    TPREL16_DS = 95
    TPREL16_LO_DS = 96
    TPREL16_HIGHER = 97
    TPREL16_HIGHERA = 98
    TPREL16_HIGHEST = 99
    TPREL16_HIGHESTA = 100
    DTPREL16_DS = 101
    DTPREL16_LO_DS = 102
    DTPREL16_HIGHER = 103
    DTPREL16_HIGHERA = 104
    DTPREL16_HIGHEST = 105
    DTPREL16_HIGHESTA = 106
    TLSGD = 107
    TLSLD = 108
    TOCSAVE = 109
    ADDR16_HIGH = 110
    ADDR16_HIGHA = 111
    TPREL16_HIGH = 112
    TPREL16_HIGHA = 113
    DTPREL16_HIGH = 114
    DTPREL16_HIGHA = 115
    REL24_NOTOC = 116
    ADDR64_LOCAL = 117
    ENTRY = 118
    PLTSEQ = 119
    PLTCALL = 120
    PLTSEQ_NOTOC = 121
    PLTCALL_NOTOC = 122
    PCREL_OPT = 123
    REL24_P9NOTOC = 124
    D34 = 128
    D34_LO = 129
    D34_HI30 = 130
    D34_HA30 = 131
    PCREL34 = 132
    GOT_PCREL34 = 133
    PLT_PCREL34 = 134
    PLT_PCREL34_NOTOC = 135
    ADDR16_HIGHER34 = 136
    ADDR16_HIGHERA34 = 137
    ADDR16_HIGHEST34 = 138
    ADDR16_HIGHESTA34 = 139
    REL16_HIGHER34 = 140
    REL16_HIGHERA34 = 141
    REL16_HIGHEST34 = 142
    REL16_HIGHESTA34 = 143
    D28 = 144
    PCREL28 = 145
    TPREL34 = 146
    DTPREL34 = 147
    GOT_TLSGD_PCREL34 = 148
    GOT_TLSLD_PCREL34 = 149
    GOT_TPREL_PCREL34 = 150
    GOT_DTPREL_PCREL34 = 151
    REL16_HIGH = 240
    REL16_HIGHA = 241
    REL16_HIGHER = 242
    REL16_HIGHERA = 243
    REL16_HIGHEST = 244
    REL16_HIGHESTA = 245
    REL16DX_HA = 246
    JMP_IREL = 247
    IRELATIVE = 248
    REL16 = 249
    REL16_LO = 250
    REL16_HI = 251
    REL16_HA = 252
    GNU_VTINHERIT = 253
    GNU_VTENTRY = 254


spell = speller("R_PPC64_", {int(t): t.name for t in RPPC64})


# apply_relocate_add (module_64.c, 6.1) applies these and nothing else (NONE included: it has no
# case), -> the number of bytes at r_offset it reads or writes. For an instruction field that is the
# containing unit, not the field: REL24 rewrites bits 2-25 of the 4-byte word, the TOC16 and REL16
# types 16 (or, for _DS, the top 14) bits of a halfword, which on little-endian is the first half of
# the instruction word. ENTRY reads and may rewrite two words; TOCSAVE writes nothing.
WIDTHS: dict[int, int] = {
    RPPC64.ADDR32: 4, RPPC64.ADDR64: 8, RPPC64.TOC: 8, RPPC64.TOC16: 2, RPPC64.TOC16_LO: 2,
    RPPC64.TOC16_DS: 2, RPPC64.TOC16_LO_DS: 2, RPPC64.TOC16_HA: 2, RPPC64.REL24: 4,
    RPPC64.REL64: 8, RPPC64.REL32: 4, RPPC64.TOCSAVE: 4, RPPC64.ENTRY: 8, RPPC64.REL16_HA: 2,
    RPPC64.REL16_LO: 2}
# Of those, the whole data fields (pointers, DWARF), and whether the value is relative to the site.
DATA_FIELDS: dict[int, bool] = {
    RPPC64.ADDR64: False, RPPC64.ADDR32: False, RPPC64.REL64: True, RPPC64.REL32: True}
# 16-bit instruction fields, relative to this module's TOC pointer (my_r2) or to the site.
TOC16 = frozenset({RPPC64.TOC16, RPPC64.TOC16_LO, RPPC64.TOC16_HA, RPPC64.TOC16_DS, RPPC64.TOC16_LO_DS})
REL16 = frozenset({RPPC64.REL16_HA, RPPC64.REL16_LO})
# _DS types keep the low two bits of the halfword (the loader masks 0xfffc): a DS-form's extended opcode.
DS_TYPES = frozenset({RPPC64.TOC16_DS, RPPC64.TOC16_LO_DS})
# What a livepatch relocation can be: a call to a kernel function, or a pointer in data.
KLP_TYPES = frozenset({RPPC64.REL24, RPPC64.ADDR64, RPPC64.REL64})

_APPLIED = ", ".join(spell(t).removeprefix("R_PPC64_") for t in WIDTHS)


def klp_type_problem(r_type: int) -> tuple[str, str] | None:
    """Why the loader would refuse or mis-apply a livepatch relocation of this type.

    A klp symbol resolves to a kernel address: vmlinux at 0xc000000000000000, modules in the vmalloc
    area (from 0xc008000000000000 on Book3S-64 with 64K pages, book3s/64/radix.h and hash-64k.h; 6.1's
    module_alloc has no MODULES_VADDR window near the kernel there).
    Only a 64-bit field holds one, only a stub reaches one from a 24-bit branch, and nothing
    relative to this module's TOC or to the site fits in 16 or 32 bits.
    """
    name = spell(r_type)
    if r_type in KLP_TYPES:
        return None
    if r_type == RPPC64.ADDR32:
        return ("reloc-32", "R_PPC64_ADDR32 cannot hold a kernel address: vmlinux is at 0xc000000000000000 "
                "and modules above it, and apply_relocate_add stores the low 32 bits without a check, so the "
                "site would silently hold a truncated address; use a pointer-sized field (R_PPC64_ADDR64)")
    if r_type == RPPC64.REL32:
        return ("reloc-32", "R_PPC64_REL32 cannot reach a kernel address from module memory: modules live in "
                "the vmalloc area (from 0xc008000000000000 on Book3S-64), 2^51 bytes from vmlinux, and "
                "apply_relocate_add refuses the module ('REL32 ... out of range!'); between two modules it "
                "fits only by chance; use a pointer-sized field (R_PPC64_ADDR64 or R_PPC64_REL64)")
    if r_type in TOC16:
        return ("reloc-toc", f"{name} is relative to the TOC pointer, and apply_relocate_add computes it "
                "against this module's own TOC (my_r2), which no kernel symbol is near: TOC16_HA and "
                "TOC16_LO silently keep 16 bits of the difference, TOC16 and TOC16_DS fail the load ('bad "
                "TOC16 relocation'); reach kernel data through a .toc entry holding its address "
                "(R_PPC64_ADDR64 in .toc), as gcc does for an extern object it does not assume local")
    if r_type == RPPC64.TOC:
        return ("reloc-toc", "R_PPC64_TOC stores this module's TOC pointer, never the symbol's address")
    if r_type in REL16:
        return ("reloc-16", f"{name} keeps 16 bits of symbol - site (a split 32-bit PC-relative address) "
                "without a range check, and no kernel symbol is within 2 GiB of module memory")
    if r_type in (RPPC64.TOCSAVE, RPPC64.ENTRY):
        return ("reloc-type", f"{name} marks a TOC save or a function's TOC setup and writes no symbol's "
                "address, so it cannot be a livepatch relocation")
    return ("reloc-type", f"relocation type {name} cannot be a livepatch relocation: the ppc64 loader "
            f"applies only {_APPLIED} ('Unknown ADD relocation'), and of those a livepatch relocation can "
            "be R_PPC64_REL24 (a bl to a kernel function), R_PPC64_ADDR64 or R_PPC64_REL64 (data)")


def header_problem(e_flags: int) -> str | None:
    """ELFv1 (function descriptors, `.opd`: big-endian kernels) is another ABI than this module's
    rules and site checks describe; 0 is an object that says neither (data, plain assembly)."""
    abi = e_flags & 3  # EF_PPC64_ABI
    if abi in (0, 2):
        return None
    return f"ppc64 ELF ABI version {abi} (e_flags {e_flags:#x}): klp-ld supports ELFv2 (ppc64le) only"


ARCH = Arch(
    name="ppc64le",
    e_machine=EM_PPC64,
    spell=spell,
    none=RPPC64.NONE,
    abs64=RPPC64.ADDR64,
    widths=WIDTHS,
    data_fields=DATA_FIELDS,
    zero_sites=False,
    klp_type_problem=klp_type_problem,
    # module_finalize copies __ftr_alt_* replacement code over the original (patch_feature_section,
    # which retargets its relative branches); jump_label_add_module reads __jump_table keys (REL64).
    early_consumed=("__jump_table",),
    early_consumed_prefixes=("__ftr_alt_",),
    # entries hold offsets or addresses of the module's own code: module_finalize's fixup tables
    # (and the vmlinux-only barrier tables, which no module loader reads), sort_extable, the bug
    # table, ftrace's call sites
    own_code_tables=("__ex_table", "__bug_table", "__mcount_loc", "__patchable_function_entries",
                     "__ftr_fixup", "__mmu_ftr_fixup", "__fw_ftr_fixup", "__spec_barrier_fixup",
                     "__lwsync_fixup", "__barrier_nospec_fixup", "__stf_entry_barrier_fixup",
                     "__stf_exit_barrier_fixup", "__uaccess_flush_fixup", "__entry_flush_fixup",
                     "__scv_entry_flush_fixup", "__rfi_flush_fixup", "__btb_flush_fixup"),
    aligned_tables=frozenset({"__jump_table", "__ex_table", "__bug_table", "__mcount_loc", "__ftr_fixup",
                              "__mmu_ftr_fixup", "__fw_ftr_fixup", "__lwsync_fixup"}),
    table_align={},
    text_module="klp_ld.arch.ppc64le_text",
    none_applied=False,
    # gcc's table of addresses: every extern object a function reads has its ADDR64 entry here
    data_sections=(".toc",),
    init_freed=False,
    plain_store_types=frozenset(t for t in WIDTHS if t != RPPC64.REL24),
    rewrite_refused_types=frozenset({RPPC64.REL24}),
    rewrite_refusal=("restore_r2 finds 'ld r2,24(r1)' where it wants the nop after a bl it relocates: "
                     "'Expected nop after call'"),
    # the TOC base, and the out-of-line register save/restore helpers gcc calls at -Os
    # (ld's --save-restore-funcs defines them in the module, in .sfpr)
    counted_in_rela=frozenset({RPPC64.REL24}),
    header_problem=header_problem,
    linker_defined=(".TOC.", "_savegpr0_", "_restgpr0_", "_savegpr1_", "_restgpr1_", "_savefpr_",
                    "_restfpr_", "_savevr_", "_restvr_"),
)
