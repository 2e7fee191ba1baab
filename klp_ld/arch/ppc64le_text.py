"""ppc64le text relocation sites, checked against the instructions capstone decodes.

Every instruction is one little-endian 4-byte word at a 4-aligned offset (klp-ld takes no prefixed
instructions: kbuild builds with ``-mno-prefixed``), so unlike x86 no sweep is needed: the word that
holds a site is the instruction, and ``funcs`` is not used. capstone must decode that word (and, for
a call, the next one); bytes it cannot decode are an error, never skipped. The fields themselves are
read from the word's bits, the way ``apply_relocate_add`` (arch/powerpc/kernel/module_64.c, 6.1)
writes them:

- R_PPC64_REL24 keeps bits 0-1 and 26-31 of the word and replaces LI (bits 2-25), so the word must be
  an I-form branch with AA=0. Every site given here is a livepatch relocation, whose symbol is
  SHN_LIVEPATCH, so the loader takes the external path: the branch goes to a stub that saves r2 and
  enters the symbol at ``symbol value + addend`` with r12 set, and restore_r2 replaces the word after
  a ``bl`` with ``ld r2,24(r1)``. Hence ``bl`` (LK=1), a ``nop`` after it, and addend 0 (the global
  entry point, which derives the callee's r2 from r12).
- The TOC16 and REL16 types OR 16 bits (``_DS``: the top 14, keeping the low two) into the halfword
  at ``r_offset``: on little-endian the first half of a D- or DS-form word.
- ADDR64, REL64, ADDR32, REL32 and TOC store a whole field: in code that can only be data between
  functions (zero bytes in the object, as gas leaves a RELA field); over an instruction it is an error.

Everything here is a pure function of the bytes and lists it is given; capstone is imported only when
a site needs decoding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from klp_ld.arch.ppc64le import ARCH, DS_TYPES, REL16, RPPC64, TOC16, WIDTHS, spell
from klp_ld.arch.sites import (
    FuncRange,
    RelocSite,
    SiteCheck,
    SiteInput,
    check_each_site,
    import_capstone,
    plural,
)
from klp_ld.arch.words import WordChecker

NOP = 0x60000000          # ori r0,r0,0
LD_R2_24_R1 = 0xE8410018  # what restore_r2 writes after a bl (PPC_INST_LD_TOC)
_OPCODE_I_FORM = 18       # b, ba, bl, bla
_OPCODE_B_FORM = 16       # bc and its extended mnemonics
# Primary opcodes whose low halfword is a 16-bit immediate (D-form) ...
_D_FORM = frozenset({2, 3, 7, 8, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, *range(32, 56)})
# ... and those where it is a 14-bit displacement above a 2-bit extended opcode (DS-form: ld, ldu, lwa,
# std, stdu, lfdp, stfdp, lxsd, stxsd, ...).
_DS_FORM = frozenset({57, 58, 61, 62})
_DATA_TYPES = frozenset({RPPC64.ADDR64, RPPC64.REL64, RPPC64.ADDR32, RPPC64.REL32, RPPC64.TOC})


def _load_capstone() -> Any:
    """A little-endian 64-bit PowerPC decoder; a missing capstone becomes CapstoneUnavailable."""
    capstone = import_capstone("ppc64le")
    return capstone.Cs(capstone.CS_ARCH_PPC, capstone.CS_MODE_64 | capstone.CS_MODE_LITTLE_ENDIAN)


class _Checker(WordChecker):
    """The checks of one section, by relocation type."""

    def check(self, site: RelocSite) -> SiteCheck:
        r_type = site.r_type
        if r_type == RPPC64.REL24:
            return self._rel24(site)
        if r_type in TOC16 or r_type in REL16:
            return self._half(site)
        if r_type in _DATA_TYPES:
            return self.data_in_code(site, WIDTHS[site.r_type])
        return self.fail(site, f"{spell(r_type)} does not write a symbol's value into an instruction "
                                "(it marks a TOC save or a global entry point's TOC setup)")

    def _misaligned(self, site: RelocSite, unit: str) -> SiteCheck:
        base = site.offset & ~3
        into = site.offset - base
        insn = self.word(base)
        if insn is None:
            return self.fail(site, f"site is {plural(into, 'byte')} into a word capstone cannot decode "
                                    f"({self.code[base:base + 4].hex(' ')}) at {self.section}+{base:#x}")
        extra = ""
        if into == 2 and site.r_type != RPPC64.REL24:
            extra = ("; on little-endian the immediate of a D- or DS-form instruction is the first halfword "
                     "(r_offset = the instruction's address): +2 is where big-endian keeps it")
        return self.fail(site, f"site is {plural(into, 'byte')} into {insn.shown(self.section)}: "
                                f"{spell(site.r_type)} {unit}{extra}", insn)

    def _rel24(self, site: RelocSite) -> SiteCheck:
        off, sym = site.offset, site.symbol
        if off % 4:
            return self._misaligned(site, "rewrites the LI field of a whole branch word, so its site is "
                                          "the word's address (apply_relocate_add refuses the module "
                                          "otherwise: 'REL24 ... out of range!')")
        insn = self.word(off)
        if insn is None:
            return self.fail(site, self.undecodable(off))
        shown = insn.shown(self.section)
        opcode = insn.value >> 26
        if opcode == _OPCODE_B_FORM:
            return self.fail(site, f"site is on the conditional branch {shown}: its 14-bit BD field "
                                    "takes R_PPC64_REL14, which the ppc64 loader does not apply, and "
                                    "R_PPC64_REL24 would overwrite its BO and BI fields; only bl can call a "
                                    "kernel function", insn)
        if opcode != _OPCODE_I_FORM:
            return self.fail(site, f"site is on {shown}, not on a branch (b/bl): R_PPC64_REL24 replaces "
                                    "bits 2-25 of the word (the LI field of an I-form branch), here 24 bits "
                                    "of its operands", insn)
        if insn.value & 2:
            return self.fail(site, f"absolute branch {shown} (AA=1): the loader writes the displacement to "
                                    "a stub into LI, and the CPU would jump to it as an absolute address",
                              insn)
        if not insn.value & 1:
            return self.fail(site, f"sibling call {shown} (b without link) to {sym}: the loader sends it "
                                    "through a stub that saves r2, but restore_r2 leaves a non-link branch "
                                    "alone (module_64.c: restore_r2), so when the callee returns to this "
                                    "function's caller, r2 holds the callee's TOC and not the module's; only "
                                    "'bl' followed by 'nop' can call a kernel function (gcc never tail-calls "
                                    "an external function under ELFv2)", insn)
        after = off + 4
        if after + 4 > len(self.code):
            return self.fail(site, f"{shown} is the last word of {self.section}: restore_r2 needs a nop "
                                    "after a bl to an external symbol, to restore the module's TOC pointer "
                                    "(r2) there ('Expected nop after call')", insn)
        nxt = self.word(after)
        if nxt is None:
            return self.fail(site, f"no nop after {shown}: {self.undecodable(after)}", insn)
        if nxt.value != NOP:
            again = (" (what restore_r2 writes there: this word was relocated before)"
                     if nxt.value == LD_R2_24_R1 else "")
            return self.fail(site, f"no nop after {shown}: restore_r2 replaces the word after a bl to an "
                                    "external symbol with 'ld r2,24(r1)' and refuses the module otherwise "
                                    f"('Expected nop after call, got {nxt.value:08x}'); found "
                                    f"{nxt.shown(self.section)}{again}", insn)
        if site.addend:
            return self.fail(site, f"addend {site.addend} on {shown}: the loader's stub enters {sym} at "
                                    f"{sym}{site.addend:+#x} (stub_for_addr(symbol value + addend)), but a "
                                    "function called from another module must be entered at its global "
                                    f"entry point, {sym} itself, where it sets up its TOC pointer from r12; "
                                    "addend 0 expected", insn)
        return SiteCheck(off, True, insn.addr, insn.raw, insn.mnemonic, insn.op_str, "li", 4, None,
                         site.r_type, spell(site.r_type), sym, 0, bits=24)

    def _half(self, site: RelocSite) -> SiteCheck:
        off = site.offset
        if off % 4:
            return self._misaligned(site, "writes the 16-bit immediate of a D- or DS-form instruction")
        insn = self.word(off)
        if insn is None:
            return self.fail(site, self.undecodable(off))
        shown = insn.shown(self.section)
        opcode = insn.value >> 26
        name = spell(site.r_type)
        if opcode in _DS_FORM:
            if site.r_type not in DS_TYPES:
                return self.fail(site, f"{name} writes all 16 bits of the immediate, but the low 2 bits of "
                                        f"{shown} are its extended opcode (DS-form): the loader would change "
                                        "the instruction; a _DS type (which masks 0xfffc) is expected", insn)
            field, bits = "ds", 14
        elif opcode in _D_FORM:
            if site.r_type in DS_TYPES:
                return self.fail(site, f"{name} keeps the low 2 bits of the halfword (a DS-form's extended "
                                        f"opcode), but {shown} is D-form: those bits are part of its 16-bit "
                                        "immediate", insn)
            field, bits = "d", 16
        else:
            return self.fail(site, f"site is on {shown}, which has no 16-bit immediate (not a D- or "
                                    f"DS-form instruction): {name} would overwrite its operand bits", insn)
        return SiteCheck(off, True, insn.addr, insn.raw, insn.mnemonic, insn.op_str, field, 2, None,
                         site.r_type, name, site.symbol, site.addend, bits=bits)


def check_text_sites(
    code: bytes | bytearray | memoryview,
    section: str,
    funcs: Iterable[FuncRange],
    sites: Iterable[SiteInput],
) -> list[SiteCheck]:
    """Check each relocation site of an executable section against the instruction word(s) it patches.

    ``funcs`` is accepted for the common signature and not needed: every 4-aligned word is an
    instruction start. Returns one ``SiteCheck`` per site, in input order; every failure, including
    "could not decode", is reported, never skipped.

    :raises CapstoneUnavailable: capstone cannot be imported (only if a site needs decoding).
    """
    return check_each_site(ARCH, code, section, sites,
                           lambda data: _Checker(ARCH, _load_capstone(), data, section))
