"""arm64 (AArch64, little-endian, LP64): arch/arm64/kernel/module.c and module-plts.c (Linux 7.2), as a
livepatch relocation meets them. arm64 has HAVE_LIVEPATCH since 6.17, so there is no older loader to
respect.

What differs from x86_64 and ppc64le, and why each rule here exists:
- `apply_relocate_add` applies NONE (type 0, which the kernel calls R_ARM_NONE, and its own
  R_AARCH64_NONE, 256, readelf's R_AARCH64_NULL), six data types and the instruction types of the
  small and large code models. Any other type fails the load ("unsupported RELA relocation", -ENOEXEC),
  the GOT types among them: modules are built -fno-PIE and have no GOT.
- It never looks at the bits it replaces: data fields are overwritten (reloc_data), and an
  instruction keeps every bit but its immediate field, which aarch64_insn_encode_immediate masks out and
  rewrites (reloc_insn_imm, reloc_insn_movw). So a site need not be zero; it must be exactly the field
  the type describes, on an instruction of the form the type assumes (arm64_text checks that).
- Overflow is checked for every type but the _NC ones, the 64-bit data fields and the G3 groups: a
  checked type whose value does not fit fails the load ("overflow in relocation type %d val %Lx").
  The kernel image and every module lie in one 2 GiB window (arch/arm64/mm/init.c:
  module_init_limits), at 0xffff8000_0000_0000 and above for every VA size, so a 64-bit field, a
  32-bit PC-relative one, a 4 GiB page (adrp) and a 26-bit branch (through a PLT) reach every kernel
  symbol; 32- and 16-bit absolute fields, and the 21-, 19- and 14-bit PC-relative ones, do not.
- CALL26/JUMP26 out of direct range (128 MiB; usual under RANDOMIZE_MODULE_REGION_FULL, the default
  with KASLR, which puts the module area anywhere in a 2 GiB window around the kernel) branch through a
  PLT entry in the module's `.plt`. module_frob_arch_sections makes room for them by counting, at load,
  the CALL26/JUMP26 entries against another section's symbol in every SHT_RELA section of an executable
  target (count_plts), `.klp.rela.*` included: an SHN_LIVEPATCH symbol is never in the target section,
  so every klp call gets its entry.
- After the module is formed, a late (module-specific) relocation is written through
  aarch64_insn_copy, a fixmap alias (WRITE_PLACE), so its site may be in text or read-only data. But
  the PLT entry a late out-of-range branch needs is written by module_emit_plt_entry with a plain store
  into `.plt`, which is read-only text by then; so is the veneer module_emit_veneer_for_adrp writes for
  an adrp at a page offset of 0xff8 or 0xffc on a CPU with Cortex-A53 erratum 843419.
- module_finalize applies alternatives (`.altinstructions`), whose replacement code is not in a
  section of its own but in a subsection of the code it patches (alternative-macros.h), patches the
  unwind tables for the shadow call stack (`.init.eh_frame`) and fills the ftrace trampolines; the
  COMING notifier jump_label_add_module reads `__jump_table`. All of that happens before any
  module-specific relocation is written.
- module_init_section is the generic one: `.init*` is init memory, freed when the module's init
  returns.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING

from klp_ld.arch.model import Arch, speller

if TYPE_CHECKING:
    from klp_ld.elf.model import ElfObject

EM_AARCH64 = 183


class RA64(IntEnum):
    """AArch64 relocation types, named as binutils 2.40's readelf prints them (R_AARCH64_ + name); the
    ILP32 (P32_) numbers included, since readelf names them in any file."""

    NONE = 0
    P32_ABS32 = 1
    P32_ABS16 = 2
    P32_PREL32 = 3
    P32_PREL16 = 4
    P32_MOVW_UABS_G0 = 5
    P32_MOVW_UABS_G0_NC = 6
    P32_MOVW_UABS_G1 = 7
    P32_MOVW_SABS_G0 = 8
    P32_LD_PREL_LO19 = 9
    P32_ADR_PREL_LO21 = 10
    P32_ADR_PREL_PG_HI21 = 11
    P32_ADD_ABS_LO12_NC = 12
    P32_LDST8_ABS_LO12_NC = 13
    P32_LDST16_ABS_LO12_NC = 14
    P32_LDST32_ABS_LO12_NC = 15
    P32_LDST64_ABS_LO12_NC = 16
    P32_LDST128_ABS_LO12_NC = 17
    P32_TSTBR14 = 18
    P32_CONDBR19 = 19
    P32_JUMP26 = 20
    P32_CALL26 = 21
    P32_MOVW_PREL_G0 = 22
    P32_MOVW_PREL_G0_NC = 23
    P32_MOVW_PREL_G1 = 24
    P32_GOT_LD_PREL19 = 25
    P32_ADR_GOT_PAGE = 26
    P32_LD32_GOT_LO12_NC = 27
    P32_LD32_GOTPAGE_LO14 = 28
    P32_TLSGD_ADR_PREL21 = 80
    P32_TLSGD_ADR_PAGE21 = 81
    P32_TLSGD_ADD_LO12_NC = 82
    P32_TLSLD_ADR_PREL21 = 83
    P32_TLSLD_ADR_PAGE21 = 84
    P32_TLSLD_ADD_LO12_NC = 85
    P32_TLSLD_MOVW_DTPREL_G1 = 87
    P32_TLSLD_MOVW_DTPREL_G0 = 88
    P32_TLSLD_MOVW_DTPREL_G0_NC = 89
    P32_TLSLD_ADD_DTPREL_HI12 = 90
    P32_TLSLD_ADD_DTPREL_LO12 = 91
    P32_TLSLD_ADD_DTPREL_LO12_NC = 92
    P32_TLSIE_ADR_GOTTPREL_PAGE21 = 103
    P32_TLSIE_LD32_GOTTPREL_LO12_NC = 104
    P32_TLSIE_LD_GOTTPREL_PREL19 = 105
    P32_TLSLE_MOVW_TPREL_G1 = 106
    P32_TLSLE_MOVW_TPREL_G0 = 107
    P32_TLSLE_MOVW_TPREL_G0_NC = 108
    P32_TLSLE_ADD_TPREL_HI12 = 109
    P32_TLSLE_ADD_TPREL_LO12 = 110
    P32_TLSLE_ADD_TPREL_LO12_NC = 111
    P32_TLSLE_LDST8_TPREL_LO12 = 112
    P32_TLSLE_LDST8_TPREL_LO12_NC = 113
    P32_TLSLE_LDST16_TPREL_LO12 = 114
    P32_TLSLE_LDST16_TPREL_LO12_NC = 115
    P32_TLSLE_LDST32_TPREL_LO12 = 116
    P32_TLSLE_LDST32_TPREL_LO12_NC = 117
    P32_TLSLE_LDST64_TPREL_LO12 = 118
    P32_TLSLE_LDST64_TPREL_LO12_NC = 119
    P32_TLSDESC_LD_PREL19 = 122
    P32_TLSDESC_ADR_PREL21 = 123
    P32_TLSDESC_ADR_PAGE21 = 124
    P32_TLSDESC_LD32_LO12_NC = 125
    P32_TLSDESC_ADD_LO12_NC = 126
    P32_TLSDESC_CALL = 127
    P32_COPY = 180
    P32_GLOB_DAT = 181
    P32_JUMP_SLOT = 182
    P32_RELATIVE = 183
    P32_TLS_DTPMOD = 184
    P32_TLS_DTPREL = 185
    P32_TLS_TPREL = 186
    P32_TLSDESC = 187
    P32_IRELATIVE = 188
    NULL = 256
    ABS64 = 257
    ABS32 = 258
    ABS16 = 259
    PREL64 = 260
    PREL32 = 261
    PREL16 = 262
    MOVW_UABS_G0 = 263
    MOVW_UABS_G0_NC = 264
    MOVW_UABS_G1 = 265
    MOVW_UABS_G1_NC = 266
    MOVW_UABS_G2 = 267
    MOVW_UABS_G2_NC = 268
    MOVW_UABS_G3 = 269
    MOVW_SABS_G0 = 270
    MOVW_SABS_G1 = 271
    MOVW_SABS_G2 = 272
    LD_PREL_LO19 = 273
    ADR_PREL_LO21 = 274
    ADR_PREL_PG_HI21 = 275
    ADR_PREL_PG_HI21_NC = 276
    ADD_ABS_LO12_NC = 277
    LDST8_ABS_LO12_NC = 278
    TSTBR14 = 279
    CONDBR19 = 280
    JUMP26 = 282
    CALL26 = 283
    LDST16_ABS_LO12_NC = 284
    LDST32_ABS_LO12_NC = 285
    LDST64_ABS_LO12_NC = 286
    MOVW_PREL_G0 = 287
    MOVW_PREL_G0_NC = 288
    MOVW_PREL_G1 = 289
    MOVW_PREL_G1_NC = 290
    MOVW_PREL_G2 = 291
    MOVW_PREL_G2_NC = 292
    MOVW_PREL_G3 = 293
    LDST128_ABS_LO12_NC = 299
    MOVW_GOTOFF_G0 = 300
    MOVW_GOTOFF_G0_NC = 301
    MOVW_GOTOFF_G1 = 302
    MOVW_GOTOFF_G1_NC = 303
    MOVW_GOTOFF_G2 = 304
    MOVW_GOTOFF_G2_NC = 305
    MOVW_GOTOFF_G3 = 306
    GOTREL64 = 307
    GOTREL32 = 308
    GOT_LD_PREL19 = 309
    LD64_GOTOFF_LO15 = 310
    ADR_GOT_PAGE = 311
    LD64_GOT_LO12_NC = 312
    LD64_GOTPAGE_LO15 = 313
    TLSGD_ADR_PREL21 = 512
    TLSGD_ADR_PAGE21 = 513
    TLSGD_ADD_LO12_NC = 514
    TLSGD_MOVW_G1 = 515
    TLSGD_MOVW_G0_NC = 516
    TLSLD_ADR_PREL21 = 517
    TLSLD_ADR_PAGE21 = 518
    TLSLD_ADD_LO12_NC = 519
    TLSLD_MOVW_G1 = 520
    TLSLD_MOVW_G0_NC = 521
    TLSLD_LD_PREL19 = 522
    TLSLD_MOVW_DTPREL_G2 = 523
    TLSLD_MOVW_DTPREL_G1 = 524
    TLSLD_MOVW_DTPREL_G1_NC = 525
    TLSLD_MOVW_DTPREL_G0 = 526
    TLSLD_MOVW_DTPREL_G0_NC = 527
    TLSLD_ADD_DTPREL_HI12 = 528
    TLSLD_ADD_DTPREL_LO12 = 529
    TLSLD_ADD_DTPREL_LO12_NC = 530
    TLSLD_LDST8_DTPREL_LO12 = 531
    TLSLD_LDST8_DTPREL_LO12_NC = 532
    TLSLD_LDST16_DTPREL_LO12 = 533
    TLSLD_LDST16_DTPREL_LO12_NC = 534
    TLSLD_LDST32_DTPREL_LO12 = 535
    TLSLD_LDST32_DTPREL_LO12_NC = 536
    TLSLD_LDST64_DTPREL_LO12 = 537
    TLSLD_LDST64_DTPREL_LO12_NC = 538
    TLSIE_MOVW_GOTTPREL_G1 = 539
    TLSIE_MOVW_GOTTPREL_G0_NC = 540
    TLSIE_ADR_GOTTPREL_PAGE21 = 541
    TLSIE_LD64_GOTTPREL_LO12_NC = 542
    TLSIE_LD_GOTTPREL_PREL19 = 543
    TLSLE_MOVW_TPREL_G2 = 544
    TLSLE_MOVW_TPREL_G1 = 545
    TLSLE_MOVW_TPREL_G1_NC = 546
    TLSLE_MOVW_TPREL_G0 = 547
    TLSLE_MOVW_TPREL_G0_NC = 548
    TLSLE_ADD_TPREL_HI12 = 549
    TLSLE_ADD_TPREL_LO12 = 550
    TLSLE_ADD_TPREL_LO12_NC = 551
    TLSLE_LDST8_TPREL_LO12 = 552
    TLSLE_LDST8_TPREL_LO12_NC = 553
    TLSLE_LDST16_TPREL_LO12 = 554
    TLSLE_LDST16_TPREL_LO12_NC = 555
    TLSLE_LDST32_TPREL_LO12 = 556
    TLSLE_LDST32_TPREL_LO12_NC = 557
    TLSLE_LDST64_TPREL_LO12 = 558
    TLSLE_LDST64_TPREL_LO12_NC = 559
    TLSDESC_LD_PREL19 = 560
    TLSDESC_ADR_PREL21 = 561
    TLSDESC_ADR_PAGE21 = 562
    TLSDESC_LD64_LO12 = 563
    TLSDESC_ADD_LO12 = 564
    TLSDESC_OFF_G1 = 565
    TLSDESC_OFF_G0_NC = 566
    TLSDESC_LDR = 567
    TLSDESC_ADD = 568
    TLSDESC_CALL = 569
    TLSLE_LDST128_TPREL_LO12 = 570
    TLSLE_LDST128_TPREL_LO12_NC = 571
    TLSLD_LDST128_DTPREL_LO12 = 572
    TLSLD_LDST128_DTPREL_LO12_NC = 573
    COPY = 1024
    GLOB_DAT = 1025
    JUMP_SLOT = 1026
    RELATIVE = 1027
    TLS_DTPMOD64 = 1028
    TLS_DTPREL64 = 1029
    TLS_TPREL64 = 1030
    TLSDESC = 1031
    IRELATIVE = 1032


spell = speller("R_AARCH64_", {int(t): t.name for t in RA64})


# The kernel's two spellings of "no relocation" (asm/elf.h: R_ARM_NONE 0, R_AARCH64_NONE 256);
# apply_relocate_add writes nothing for either.
NONE_TYPES = frozenset({RA64.NONE, RA64.NULL})

# reloc_data: a whole little-endian field of 64, 32 or 16 bits, and whether it is relative to the site.
DATA_WIDTHS: dict[int, int] = {RA64.ABS64: 8, RA64.ABS32: 4, RA64.ABS16: 2, RA64.PREL64: 8, RA64.PREL32: 4,
                               RA64.PREL16: 2}
DATA_FIELDS: dict[int, bool] = {RA64.ABS64: False, RA64.ABS32: False, RA64.ABS16: False, RA64.PREL64: True,
                                RA64.PREL32: True, RA64.PREL16: True}
# b/bl: imm26, with a PLT entry when out of range.
BRANCH26 = frozenset({RA64.JUMP26, RA64.CALL26})
# adrp: the 4 KiB page delta, >> 12, into immhi:immlo (reloc_insn_adrp).
PAGE21 = frozenset({RA64.ADR_PREL_PG_HI21, RA64.ADR_PREL_PG_HI21_NC})
# The :lo12: types -> the shift reloc_insn_imm applies before writing imm12 (its `lsb`), which must be
# the scale of the instruction's access (log2 of its size in bytes); ADD and LDST8 are the same case.
LO12_SCALE: dict[int, int] = {RA64.ADD_ABS_LO12_NC: 0, RA64.LDST8_ABS_LO12_NC: 0, RA64.LDST16_ABS_LO12_NC: 1,
                              RA64.LDST32_ABS_LO12_NC: 2, RA64.LDST64_ABS_LO12_NC: 3,
                              RA64.LDST128_ABS_LO12_NC: 4}


class Movw(IntEnum):
    """How reloc_insn_movw treats a MOVW type: MOVKZ keeps the opcode, MOVNZ makes it movz or movn by the
    sign of the value (AARCH64_INSN_IMM_MOVKZ / _MOVNZ)."""

    MOVKZ = 0
    MOVNZ = 1


# MOVW types -> (group: the value's bits 16*group.. go into imm16; MOVKZ or MOVNZ; whether overflow is
# checked), as apply_relocate_add's cases call reloc_insn_movw.
MOVW: dict[int, tuple[int, Movw, bool]] = {
    RA64.MOVW_UABS_G0: (0, Movw.MOVKZ, True), RA64.MOVW_UABS_G0_NC: (0, Movw.MOVKZ, False),
    RA64.MOVW_UABS_G1: (1, Movw.MOVKZ, True), RA64.MOVW_UABS_G1_NC: (1, Movw.MOVKZ, False),
    RA64.MOVW_UABS_G2: (2, Movw.MOVKZ, True), RA64.MOVW_UABS_G2_NC: (2, Movw.MOVKZ, False),
    RA64.MOVW_UABS_G3: (3, Movw.MOVKZ, False),
    RA64.MOVW_SABS_G0: (0, Movw.MOVNZ, True), RA64.MOVW_SABS_G1: (1, Movw.MOVNZ, True),
    RA64.MOVW_SABS_G2: (2, Movw.MOVNZ, True),
    RA64.MOVW_PREL_G0: (0, Movw.MOVNZ, True), RA64.MOVW_PREL_G0_NC: (0, Movw.MOVKZ, False),
    RA64.MOVW_PREL_G1: (1, Movw.MOVNZ, True), RA64.MOVW_PREL_G1_NC: (1, Movw.MOVKZ, False),
    RA64.MOVW_PREL_G2: (2, Movw.MOVNZ, True), RA64.MOVW_PREL_G2_NC: (2, Movw.MOVKZ, False),
    RA64.MOVW_PREL_G3: (3, Movw.MOVNZ, False),
}
MOVW_PREL = frozenset(t for t in MOVW if spell(t).startswith("R_AARCH64_MOVW_PREL_"))
# PC-relative immediates the loader range-checks and has no PLT for -> their reach, in bytes either way.
SHORT_PREL: dict[int, int] = {RA64.ADR_PREL_LO21: 1 << 20, RA64.LD_PREL_LO19: 1 << 20, RA64.CONDBR19: 1 << 20,
                              RA64.TSTBR14: 1 << 15}
INSN_TYPES = frozenset({*BRANCH26, *PAGE21, *LO12_SCALE, *MOVW, *SHORT_PREL})
# apply_relocate_add applies these (and NONE) and nothing else -> the bytes at r_offset it rewrites:
# a data field, or one 4-byte instruction word.
WIDTHS: dict[int, int] = {**DATA_WIDTHS, **dict.fromkeys(INSN_TYPES, 4)}

# A MOVW type whose checked group still holds a kernel address: every one is at or above
# -2^47 (the kernel image sits at KIMAGE_VADDR = _PAGE_END(VA_BITS_MIN), VA_BITS_MIN <= 48, and modules
# just below it), so ~(S >> 32) < 2^15 for SABS_G2; a PC-relative value inside the 2 GiB window fits
# PREL_G1 (and a fortiori G2 and G3).
_MOVW_FITS = frozenset({RA64.MOVW_SABS_G2, RA64.MOVW_PREL_G1, RA64.MOVW_PREL_G2})
# What a livepatch relocation can be: every type that reaches any kernel or module address.
KLP_TYPES = frozenset({RA64.ABS64, RA64.PREL64, RA64.PREL32, *BRANCH26, *PAGE21, *LO12_SCALE,
                       *(t for t, (_g, _k, checked) in MOVW.items() if not checked or t in _MOVW_FITS)})
_GOT_TYPES = frozenset(t for t in RA64 if "GOT" in t.name and not t.name.startswith("P32_"))
_APPLIED = ", ".join(spell(t).removeprefix("R_AARCH64_") for t in sorted(WIDTHS))
_WINDOW = ("the kernel image and every module lie in one 2 GiB window at 0xffff8000_0000_0000 or above "
           "(arch/arm64/mm/init.c: module_init_limits)")


def klp_type_problem(r_type: int) -> tuple[str, str] | None:
    """Why the loader would refuse or mis-apply a livepatch relocation of this type.

    A klp symbol resolves to a kernel or module address, inside the 2 GiB window module_init_limits
    keeps the kernel image and all modules in, at or above -2^47: what a type can hold there decides.
    """
    name = spell(r_type)
    if r_type in KLP_TYPES:
        return None
    if r_type in (RA64.ABS32, RA64.ABS16):
        bits = DATA_WIDTHS[r_type] * 8
        return ("reloc-32" if bits == 32 else "reloc-16",
                f"{name} cannot hold a kernel address: {_WINDOW}, and apply_relocate_add refuses an "
                f"absolute value above {bits} unsigned bits (reloc_data: 'overflow in relocation type "
                f"{r_type}'); use a pointer-sized field (R_AARCH64_ABS64) or a 32-bit PC-relative one "
                "(R_AARCH64_PREL32)")
    if r_type == RA64.PREL16:
        return ("reloc-16", f"{name} reaches only 32 KiB either way from its site: no kernel symbol is that "
                "close to module memory (and another module's only by chance), and apply_relocate_add "
                f"refuses the module ('overflow in relocation type {r_type}'); use R_AARCH64_PREL32, which "
                f"reaches every kernel symbol because {_WINDOW}")
    if r_type in SHORT_PREL:
        reach = "1 MiB" if SHORT_PREL[r_type] == 1 << 20 else "32 KiB"
        return ("reloc-short", f"{name} reaches only {reach} either way, and unlike a b/bl "
                "(CALL26/JUMP26) it gets no PLT entry: no kernel symbol is that close to module memory "
                "(another module's only by chance), and apply_relocate_add refuses the module ('overflow in "
                f"relocation type {r_type}'); reach the symbol with adrp and a :lo12: add or load, or call "
                "it with bl")
    if r_type in MOVW:
        group = MOVW[r_type][0]
        what = "a PC-relative value" if r_type in MOVW_PREL else "a kernel address"
        return ("reloc-movw", f"{name} is a checked group: the loader refuses the module when the value "
                f"needs more than {16 * (group + 1)} bits ('overflow in relocation type {r_type}'), and "
                f"{what} does; build the value with the _NC groups and G3 (movz ...:abs_g3:, movk "
                "...:abs_g2_nc:, ...), as -mcmodel=large does")
    if r_type in _GOT_TYPES:
        return ("reloc-got", f"{name} goes through a GOT, which a module does not have: the arm64 loader "
                "does not apply it ('unsupported RELA relocation'); build without -fPIC/-fPIE (kbuild "
                "passes -fno-PIE), so that gcc reaches an extern object with adrp and :lo12:")
    if r_type in NONE_TYPES:
        return ("reloc-type", f"{name} writes nothing, so it cannot be a livepatch relocation")
    return ("reloc-type", f"relocation type {name} cannot be a livepatch relocation: the arm64 loader "
            f"applies only {_APPLIED} and NONE ('unsupported RELA relocation'), and of those a livepatch "
            "relocation can be ABS64, PREL64 or PREL32 (data), CALL26 or JUMP26 (b/bl), ADR_PREL_PG_HI21 "
            "with a :lo12: ADD or LDSTn (adrp and its pair), or the MOVW groups that hold a whole address")


def late_stub(r_type: int, offset: int) -> str | None:
    """Why a module-specific (late) relocation of this type may make the loader write a stub with a
    plain store into the patch module's text, read-only by then (complete_formation made it ROX)."""
    if r_type in BRANCH26:
        return ("when the branch is out of direct range (128 MiB) the loader writes a PLT entry into this "
                "module's .plt with a plain store (module_emit_plt_entry), but a module-specific relocation "
                "is written after the module's text became read-only, so that store faults; modules are "
                "packed together, so two are that far apart only when the module area fills up (the "
                "128 MiB window near the kernel exhausted, its 2 GiB fallback in use); a call through a "
                "pointer in writable data (an R_AARCH64_ABS64 there, written with aarch64_insn_copy) never "
                "needs a PLT entry")
    if r_type in PAGE21 and offset & 0xFF8 == 0xFF8:
        return ("this adrp sits at a section offset whose low 12 bits are 0xff8 or 0xffc, where a CPU with "
                "Cortex-A53 erratum 843419 must not run one: the loader then rewrites it into an adr or, out "
                "of that 1 MiB range, into a branch to a veneer it writes into .plt with a plain store "
                "(module_emit_veneer_for_adrp), which faults for a module-specific relocation, written after "
                "the module's text became read-only")
    return None


# struct alt_instr (asm/alternative.h): orig_offset, alt_offset (PREL32 each), cpucap, orig_len, alt_len.
_ALT_INSTR = struct.Struct("<iiHBB")
_ARM64_CB_BIT = 0x8000  # the entry names a callback that writes the code, not replacement code


def alternative_code(obj: ElfObject) -> Mapping[str, Sequence[tuple[int, int, str]]]:
    """The code ranges apply_alternatives_module (module_finalize) rewrites or copies: each alternative's
    original instructions, and its replacement, which lives in a subsection of the section it patches
    and so cannot be told by name. Section name -> (start, end, why)."""
    table = obj.section(".altinstructions")
    if table is None or not table.data:
        return {}
    fields = {rela.offset: rela for rsec in obj.rela_sections() if rsec.info_section is table
              for rela in rsec.relocs}
    out: dict[str, list[tuple[int, int, str]]] = {}
    for base in range(0, len(table.data) - _ALT_INSTR.size + 1, _ALT_INSTR.size):
        _orig, _alt, cpucap, orig_len, alt_len = _ALT_INSTR.unpack_from(table.data, base)
        parts = [(base, orig_len, f"code an alternative replaces (.altinstructions+{base:#x}): "
                                  "apply_alternatives_module overwrites it with the replacement, or with "
                                  "what its callback writes, when the CPU has the capability")]
        if not cpucap & _ARM64_CB_BIT:
            parts.append((base + 4, alt_len, f"the replacement code of an alternative (.altinstructions+"
                                             f"{base:#x}): apply_alternatives_module copies it over the "
                                             "original when the CPU has the capability, so a later write "
                                             "reaches only the unused copy"))
        for at, length, why in parts:
            rela = fields.get(at)
            sym = rela.symbol if rela is not None else None
            if rela is None or rela.type != RA64.PREL32 or sym is None or sym.section is None or not length:
                continue
            start = sym.value + rela.addend
            out.setdefault(sym.section.name, []).append((start, start + length, why))
    return out


ARCH = Arch(
    name="arm64",
    e_machine=EM_AARCH64,
    spell=spell,
    none=RA64.NONE,
    abs64=RA64.ABS64,
    widths=WIDTHS,
    data_fields=DATA_FIELDS,
    zero_sites=False,
    klp_type_problem=klp_type_problem,
    # module_finalize: apply_alternatives_module; the COMING notifier jump_label_add_module (arm64's
    # static calls, HAVE_STATIC_CALL if CFI, are out of line: no .static_call_sites to read)
    early_consumed=(".altinstructions", "__jump_table"),
    # entries hold offsets or addresses of the module's own code (sort_extable, module_bug_finalize,
    # ftrace_module_init's __patchable_function_entries, the SCS unwind patching of .init.eh_frame), or
    # are sections module_frob_arch_sections turns into empty NOBITS for the loader's own PLTs and
    # ftrace trampolines, so nothing written there survives
    own_code_tables=("__ex_table", "__bug_table", "__mcount_loc", "__patchable_function_entries",
                     ".eh_frame", ".init.eh_frame", "__kcfi_traps", ".plt", ".init.plt",
                     ".text.ftrace_trampoline", ".init.text.ftrace_trampoline"),
    aligned_tables=frozenset({"__jump_table", "__ex_table", ".altinstructions", "__bug_table",
                              "__mcount_loc", "__patchable_function_entries"}),
    table_align={},
    text_module="klp_ld.arch.arm64_text",
    # every type is written through aarch64_insn_copy once the module is formed (WRITE_PLACE)
    plain_store_types=frozenset(),
    # immediates are replaced, not added to, so a second application writes the same bits
    rewrite_refused_types=frozenset(),
    counted_in_rela=BRANCH26,
    counted_in_rela_why=("the loader makes room for a PLT entry per {types} entry by counting them in "
                         "SHT_RELA sections only (module_frob_arch_sections -> count_plts), so these find "
                         "none, and the module fails to load whenever one of their branches is out of direct "
                         "range (128 MiB), as is usual under RANDOMIZE_MODULE_REGION_FULL"),
    late_stub=late_stub,
    consumed_code=alternative_code,
)
