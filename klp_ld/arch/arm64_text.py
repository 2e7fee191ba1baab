"""arm64 text relocation sites, checked against the instructions capstone decodes.

Every A64 instruction is one little-endian 4-byte word at a 4-aligned offset, so, as on ppc64le, no sweep
is needed: the word that holds a site is the instruction, and ``funcs`` is not used. capstone must decode
that word; bytes it cannot decode are an error, never skipped. The fields are read from the word's bits,
the way ``apply_relocate_add`` (arch/arm64/kernel/module.c, 7.2) writes them.

What must hold instead of x86_64's zero-site rule: the loader keeps every bit of the word but the
immediate field the type names, which aarch64_insn_encode_immediate masks out and replaces (it does not
add to it, so the bits gas left there do not matter, and the addend is ``r_addend`` alone). So the word
must be an instruction whose field is exactly that one, with the meaning the type assumes:

- CALL26/JUMP26 replace imm26 (bits 0-25): a ``bl`` or ``b``. The loader treats both types alike (a PLT
  entry when out of range), so the other one of the pair is only a warning; a JUMP26 is a tail call,
  which needs nothing after it (arm64 has no TOC; the PLT entry clobbers only x16, which AAPCS64 lets any
  veneer clobber). The addend must be 0: out of range the PLT entry ends in ``br x16`` to symbol +
  addend, and under BTI an indirect branch must land on the function's landing pad at its entry.
- ADR_PREL_PG_HI21(_NC) replace immhi:immlo with the 4 KiB page delta: an ``adrp``.
- ADD_ABS_LO12_NC and LDSTn_ABS_LO12_NC replace imm12 (bits 10-21) with the address's low 12 bits
  shifted right by the access's scale (reloc_insn_imm's lsb): a 64-bit ``add`` (immediate, no shift)
  for ADD, a load or store with an unsigned 12-bit offset of exactly that access size for LDSTn. The
  loader drops the shifted-out bits unchecked, so the addend must be a multiple of the access size.
- MOVW types replace imm16 (bits 5-20) and leave hw as assembled, so hw must be the type's group; the
  signed (MOVNZ) types also rewrite the opcode to movz or movn by the value's sign, so they cannot sit
  on a movk, and the others (MOVKZ) write the bits unchanged, so they cannot sit on a movn.
- CONDBR19 replaces imm19 of ``b.cond``/``cbz``/``cbnz``, TSTBR14 imm14 of ``tbz``/``tbnz``,
  LD_PREL_LO19 imm19 of a literal load, ADR_PREL_LO21 immhi:immlo of an ``adr``.
- ABS64/PREL64/ABS32/PREL32/ABS16/PREL16 store a whole field: in code that can only be data between
  functions (zero in the object, as gas leaves a RELA field); over an instruction it is an error.

Everything here is a pure function of the bytes and lists it is given; capstone is imported only when a
site needs decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from klp_ld.arch.arm64 import (
    ARCH,
    BRANCH26,
    DATA_WIDTHS,
    LO12_SCALE,
    MOVW,
    MOVW_PREL,
    NONE_TYPES,
    PAGE21,
    RA64,
    Movw,
    spell,
)
from klp_ld.arch.sites import (
    Field,
    FuncRange,
    RelocSite,
    Severity,
    SiteCheck,
    SiteInput,
    SiteProblem,
    check_each_site,
    import_capstone,
    plural,
)
from klp_ld.arch.words import Word, WordChecker


def _is_branch26(w: int) -> bool:
    return w & 0x7C000000 == 0x14000000  # b, bl (bit 31: link)


def _is_adr_or_adrp(w: int) -> bool:
    return w & 0x1F000000 == 0x10000000  # bit 31: adrp


def _is_add_sub_imm(w: int) -> bool:
    return w & 0x1F800000 == 0x11000000  # sf, op, S, 100010, sh, imm12


def _is_ldst_uimm(w: int) -> bool:
    return w & 0x3B000000 == 0x39000000  # load/store register, unsigned immediate


def _is_movw(w: int) -> bool:
    return w & 0x1F800000 == 0x12800000  # move wide: sf, opc, 100101, hw, imm16


def _ldst_scale(w: int) -> int:
    """log2 of the access size of a load/store with an unsigned offset: its imm12 is scaled by this."""
    size, vector, opc = w >> 30, (w >> 26) & 1, (w >> 22) & 3
    return 4 if vector and size == 0 and opc & 2 else size


# The short PC-relative instructions: type -> (test, what the type expects, its field, the field's bits).
_SHORT: dict[int, tuple[Callable[[int], bool], str, str, int]] = {
    RA64.CONDBR19: (lambda w: w & 0xFF000010 == 0x54000000 or w & 0x7E000000 == 0x34000000,
                    "a conditional branch (b.cond, cbz, cbnz)", "imm19 (bits 5-23)", 19),
    RA64.TSTBR14: (lambda w: w & 0x7E000000 == 0x36000000, "a test-and-branch (tbz, tbnz)",
                   "imm14 (bits 5-18)", 14),
    RA64.LD_PREL_LO19: (lambda w: w & 0x3B000000 == 0x18000000, "a literal load (ldr/ldrsw/prfm label)",
                        "imm19 (bits 5-23)", 19),
    RA64.ADR_PREL_LO21: (lambda w: w & 0x9F000000 == 0x10000000, "an adr",
                         "immhi:immlo (bits 5-23 and 29-30)", 21),
}
_ACCESS = {0: "a 1-byte", 1: "a 2-byte", 2: "a 4-byte", 3: "an 8-byte", 4: "a 16-byte"}
_LDST_TYPE = {scale: t for t, scale in LO12_SCALE.items() if t != RA64.ADD_ABS_LO12_NC}


def _load_capstone() -> Any:
    """A little-endian A64 decoder (CS_ARCH_ARM64 in capstone 5, CS_ARCH_AARCH64 in 6); a missing
    capstone becomes CapstoneUnavailable."""
    capstone = import_capstone("arm64")
    arch = getattr(capstone, "CS_ARCH_ARM64", None)
    if arch is None:
        arch = capstone.CS_ARCH_AARCH64
    return capstone.Cs(arch, capstone.CS_MODE_ARM | capstone.CS_MODE_LITTLE_ENDIAN)


class _Checker(WordChecker):
    """The checks of one section, by relocation type."""

    def check(self, site: RelocSite) -> SiteCheck:
        r_type = site.r_type
        if r_type in DATA_WIDTHS:
            return self.data_in_code(site, DATA_WIDTHS[site.r_type])
        if site.offset % 4:
            return self._misaligned(site)
        insn = self.word(site.offset)
        if insn is None:
            return self.fail(site, self.undecodable(site.offset))
        if r_type in BRANCH26:
            return self._branch26(site, insn)
        if r_type in PAGE21:
            return self._page21(site, insn)
        if r_type in LO12_SCALE:
            return self._lo12(site, insn)
        if r_type in MOVW:
            return self._movw(site, insn)
        return self._short(site, insn)

    def _ok(self, site: RelocSite, insn: Word, field: Field, bits: int,
            warn: str | None = None) -> SiteCheck:
        problem = None
        if warn is not None:
            problem = SiteProblem(site.offset, site.r_type, spell(site.r_type), site.symbol, warn,
                                  Severity.WARNING, self.section)
        return SiteCheck(site.offset, True, insn.addr, insn.raw, insn.mnemonic, insn.op_str, field, 4,
                         problem, site.r_type, spell(site.r_type), site.symbol, site.addend, bits=bits)

    def _misaligned(self, site: RelocSite) -> SiteCheck:
        base = site.offset & ~3
        into = site.offset - base
        insn = self.word(base)
        name = spell(site.r_type)
        if insn is None:
            return self.fail(site, f"site is {plural(into, 'byte')} into a word capstone cannot decode "
                                    f"({self.code[base:base + 4].hex(' ')}) at {self.section}+{base:#x}")
        return self.fail(site, f"site is {plural(into, 'byte')} into {insn.shown(self.section)}: {name} "
                                "rewrites a field of a whole 4-byte instruction word, so its site is the "
                                "word's address (r_offset = the instruction's address)", insn)

    def _not_on(self, site: RelocSite, insn: Word, wanted: str, field: str) -> SiteCheck:
        return self.fail(site, f"site is on {insn.shown(self.section)}, not on {wanted}: "
                                f"{spell(site.r_type)} replaces {field} of the word, here bits of another "
                                "instruction's encoding", insn)

    def _branch26(self, site: RelocSite, insn: Word) -> SiteCheck:
        w, name, sym = insn.value, spell(site.r_type), site.symbol
        shown = insn.shown(self.section)
        if not _is_branch26(w):
            return self._not_on(site, insn, "a branch (b/bl)", "imm26 (bits 0-25)")
        if site.addend and not site.symbol_is_section:
            return self.fail(site, f"addend {site.addend} on {shown}: out of direct range (128 MiB) the "
                                    "loader branches through a PLT entry ending in 'br x16' to "
                                    f"{sym}{site.addend:+#x} (module_emit_plt_entry: symbol value + addend), "
                                    "and under BTI an indirect branch must land on the landing pad at the "
                                    f"entry of {sym}, which this skips; addend 0 expected", insn)
        link = bool(w >> 31)
        warn = None
        if link != (site.r_type == RA64.CALL26):
            right = "R_AARCH64_CALL26" if link else "R_AARCH64_JUMP26"
            warn = (f"{name} on {shown}: the assembler marks {insn.mnemonic} with {right}; the loader "
                    "applies both the same way (imm26, and a PLT entry when out of range), so this works")
        return self._ok(site, insn, "imm", 26, warn)

    def _page21(self, site: RelocSite, insn: Word) -> SiteCheck:
        w, name = insn.value, spell(site.r_type)
        if _is_adr_or_adrp(w) and not w >> 31:
            return self.fail(site, f"{name} on {insn.shown(self.section)}: adr takes a byte offset "
                                    "(R_AARCH64_ADR_PREL_LO21), and the loader would write the 4 KiB page "
                                    "delta >> 12 into it (reloc_insn_adrp)", insn)
        if not _is_adr_or_adrp(w):
            return self._not_on(site, insn, "adrp", "immhi:immlo (bits 5-23 and 29-30)")
        return self._ok(site, insn, "page", 21)

    def _lo12(self, site: RelocSite, insn: Word) -> SiteCheck:
        w, name, r_type = insn.value, spell(site.r_type), site.r_type
        shown = insn.shown(self.section)
        scale = LO12_SCALE[r_type]
        if _is_add_sub_imm(w):
            add = (w >> 29) & 3 == 0  # op and S clear: add, not adds/sub/subs
            if scale and add:
                return self.fail(site, f"{name} writes (address & 0xfff) >> {scale} into the imm12 of "
                                        f"{shown}, which adds it unscaled: R_AARCH64_ADD_ABS_LO12_NC "
                                        "expected", insn)
            if not add:
                return self._not_on(site, insn, "add (immediate)", "imm12 (bits 10-21)")
            if not w >> 31:
                return self.fail(site, f"{shown} is a 32-bit add: it keeps only the low 32 bits of the "
                                        "address it completes (an adrp computes a 64-bit page); a 64-bit "
                                        "'add xd, xn, #:lo12:sym' expected", insn)
            if (w >> 22) & 1:
                return self.fail(site, f"{shown} shifts its immediate left by 12: the loader writes the "
                                        "address's low 12 bits there, which would be added as bits 12-23",
                                  insn)
            warn = None
            if r_type != RA64.ADD_ABS_LO12_NC:
                warn = (f"{name} on {shown}: the assembler marks an add with R_AARCH64_ADD_ABS_LO12_NC; the "
                        "loader applies both the same way (unscaled imm12), so this works")
            return self._ok(site, insn, "lo", 12, warn)
        if not _is_ldst_uimm(w):
            wanted = "add (immediate)" if r_type == RA64.ADD_ABS_LO12_NC else \
                "a load or store with an unsigned 12-bit offset"
            return self._not_on(site, insn, wanted, "imm12 (bits 10-21)")
        access = _ldst_scale(w)
        if access != scale:
            expected = spell(_LDST_TYPE[access])
            return self.fail(site, f"{name} writes (address & 0xfff) >> {scale} into the imm12 of {shown}, "
                                    f"which the CPU scales by {1 << access} ({_ACCESS[access]} access), so "
                                    f"it would reach another address: {expected} expected", insn)
        if site.addend % (1 << scale):
            return self.fail(site, f"addend {site.addend} on {shown}, {_ACCESS[scale]} access: the "
                                    f"loader drops the low {scale} bits of the address unchecked "
                                    f"(reloc_insn_imm), so the load or store would reach {site.symbol}"
                                    f"{site.addend - site.addend % (1 << scale):+#x}; the addend must be a "
                                    f"multiple of {1 << scale}", insn)
        warn = None
        if r_type == RA64.ADD_ABS_LO12_NC:
            warn = (f"{name} on {shown}: the assembler marks a 1-byte access with "
                    "R_AARCH64_LDST8_ABS_LO12_NC; the loader applies both the same way, so this works")
        return self._ok(site, insn, "lo", 12, warn)

    def _movw(self, site: RelocSite, insn: Word) -> SiteCheck:
        w, name = insn.value, spell(site.r_type)
        shown = insn.shown(self.section)
        if not _is_movw(w):
            return self._not_on(site, insn, "a move-wide instruction (movz/movk/movn)", "imm16 (bits 5-20)")
        group, kind, _checked = MOVW[site.r_type]
        opc, hw, wide = (w >> 29) & 3, (w >> 21) & 3, w >> 31
        if hw != group:
            return self.fail(site, f"{name} writes bits {16 * group}-{16 * group + 15} of the value into "
                                    "imm16 and leaves the shift as assembled (reloc_insn_movw), but "
                                    f"{shown} shifts it by {16 * hw}: 'lsl #{16 * group}' expected", insn)
        if not wide and site.r_type not in MOVW_PREL:
            return self.fail(site, f"{shown} writes a 32-bit register, which cannot hold a kernel address; "
                                    "an x register expected", insn)
        if kind is Movw.MOVNZ and opc == 3:
            return self.fail(site, f"{name} is a signed group: the loader makes the instruction movz or "
                                    f"movn by the value's sign (reloc_insn_movw, MOVNZ), and {shown} is a "
                                    "movk: it would clear the bits the sequence built before it", insn)
        if kind is Movw.MOVKZ and opc == 0:
            return self.fail(site, f"{shown} is a movn, which inverts its immediate, but {name} writes the "
                                    "value's bits unchanged (only the signed groups turn movz into movn for "
                                    "a negative value)", insn)
        return self._ok(site, insn, "imm", 16)

    def _short(self, site: RelocSite, insn: Word) -> SiteCheck:
        test, wanted, field, bits = _SHORT[site.r_type]
        if not test(insn.value):
            return self._not_on(site, insn, wanted, field)
        return self._ok(site, insn, "imm", bits)


def check_text_sites(
    code: bytes | bytearray | memoryview,
    section: str,
    funcs: Iterable[FuncRange],
    sites: Iterable[SiteInput],
) -> list[SiteCheck]:
    """Check each relocation site of an executable section against the instruction word it patches.

    ``funcs`` is accepted for the common signature and not needed: every 4-aligned word is an
    instruction start. Returns one ``SiteCheck`` per site, in input order; every failure, including
    "could not decode", is reported, never skipped.

    :raises CapstoneUnavailable: capstone cannot be imported (only if a site needs decoding).
    """
    return check_each_site(ARCH, code, section, sites,
                           lambda data: _Checker(ARCH, _load_capstone(), data, section),
                           NONE_TYPES)
