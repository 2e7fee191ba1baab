"""s390x text relocation sites, checked against the instructions capstone decodes.

An instruction is 2, 4 or 6 bytes, and its first two bits say which, so the instruction holding a
site is found by stepping from the start of the function that covers it (or, between functions,
from the end of the one before: gcc pads with 2-byte `nopr`) without decoding anything; capstone
then decodes that one instruction, which must use every byte the step assumed. Bytes it cannot
decode are an error, never skipped. The fields are read the way `apply_rela`
(arch/s390/kernel/module.c, 6.1) writes them:

- The DBL types write a 32-bit signed halfword count at r_offset, which is the I2 field of a 6-byte
  RIL instruction whose operand is relative to the instruction (brasl, brcl, larl, lgrl, lrl, exrl,
  ...): r_offset is the instruction's address + 2, and the CPU goes to the instruction's address +
  twice the field, so the target is symbol + addend - 2. The loader refuses an odd value.
- R_390_PLT32DBL is a call (brasl) or jump (brcl, jg): within 4 GiB it branches to symbol + addend - 2,
  otherwise to the symbol's PLT entry + addend - 2, which enters the PLT entry only with addend 2.
- R_390_GOTENT and R_390_GOTPLTENT point the instruction at the symbol's GOT slot + addend - 2: the
  slot itself with addend 2, read by lgrl (or addressed by larl).
- R_390_64, 32, PC64 and PC32 store a whole field: in code that can only be data between functions
  (zero bytes in the object, as gas leaves a RELA field); over an instruction it is an error.

Everything here is a pure function of the bytes and lists it is given; capstone is imported only when
a site needs decoding.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any, NamedTuple

from klp_ld.arch.s390x import ARCH, DATA_FIELDS, R390, RIL_TYPES, WIDTHS, spell
from klp_ld.arch.sites import (
    Checker,
    FuncRange,
    RelocSite,
    SiteCheck,
    SiteInput,
    check_each_site,
    describe,
    import_capstone,
)

# Instruction length by the top two bits of the first byte (Principles of Operation, 5-7).
_LENGTHS = (2, 4, 4, 6)
# RIL opcodes (first byte, low nibble of the second) whose I2 is relative to the instruction: larl,
# brcl, brasl in the C0 group; every C4 (lrl, lgrl, strl, ...) and C6 (exrl, pfdrl, crl, ...); brcth.
_RELATIVE_RIL = frozenset({(0xC0, 0x0), (0xC0, 0x4), (0xC0, 0x5), (0xCC, 0x6),
                           *((0xC4, n) for n in range(16)), *((0xC6, n) for n in range(16))})
_LARL, _BRCL, _BRASL, _LGRL = (0xC0, 0x0), (0xC0, 0x4), (0xC0, 0x5), (0xC4, 0x8)
# Where a RIL instruction's I2 field starts; the DBL types' addend names the symbol itself when it
# makes up for that distance (the CPU counts from the instruction, the loader from the field).
_I2_AT = 2
_SYMBOL_ADDEND = _I2_AT


class Insn(NamedTuple):
    """One decoded instruction: where, its bytes, and capstone's text."""

    addr: int
    raw: bytes
    mnemonic: str
    op_str: str

    @property
    def opcode(self) -> tuple[int, int]:
        """A RIL instruction's opcode: its first byte and the low nibble of the second."""
        return self.raw[0], self.raw[1] & 0xF

    def shown(self, section: str) -> str:
        return describe(section, self.addr, self.raw, self.mnemonic, self.op_str)


def _load_capstone() -> Any:
    """A z/Architecture decoder; a missing capstone becomes CapstoneUnavailable."""
    capstone = import_capstone("s390x")
    return capstone.Cs(capstone.CS_ARCH_SYSZ, capstone.CS_MODE_BIG_ENDIAN)


class _Checker(Checker):
    """The checks of one section; steps through each function at most once."""

    def __init__(self, cs: Any, code: bytes, section: str, funcs: Iterable[FuncRange]) -> None:
        super().__init__(ARCH, cs, code, section)
        self.ranges = sorted((start, start + size) for start, size in funcs if size > 0)
        self.starts = [start for start, _ in self.ranges]
        # the largest end among the functions up to each one: the first function that still covers an
        # offset is the first whose running end passes it
        self.reach = list(accumulate((end for _, end in self.ranges), max))
        self.ends = sorted(end for _, end in self.ranges)
        self.steps: dict[int, list[int]] = {}

    def origin(self, off: int) -> int:
        """Where stepping to `off` starts: the first start among the functions covering it (so that an
        overlapping symbol cannot start it mid-instruction), else the end of the last function before it."""
        last = bisect.bisect_right(self.starts, off) - 1
        first = bisect.bisect_right(self.reach, off)
        if first <= last:
            return self.ranges[first][0]
        before = bisect.bisect_right(self.ends, off) - 1
        return self.ends[before] if before >= 0 else 0

    def holding(self, off: int) -> tuple[int, int] | None:
        """(address, length) of the instruction whose bytes hold `off`; None past the code."""
        start = self.origin(off)
        steps = self.steps.setdefault(start, [start])
        while steps[-1] <= off:
            at = steps[-1]
            if at >= len(self.code):
                return None
            steps.append(at + _LENGTHS[self.code[at] >> 6])
        i = bisect.bisect_right(steps, off) - 1
        at = steps[i]
        length = steps[i + 1] - at
        return (at, length) if at + length <= len(self.code) else None

    def decode(self, at: int, length: int) -> Insn | None:
        """The instruction of `length` bytes at `at`, or None when capstone reads those bytes otherwise."""
        raw = self.code[at:at + length]
        got = next(self.cs.disasm_lite(raw, at, 1), None)
        if got is None or got[1] != length:
            return None
        return Insn(at, raw, got[2], got[3])

    def covering(self, start: int, end: int) -> Sequence[Insn]:
        held = self.holding(start)
        insn = self.decode(*held) if held is not None else None
        return [insn] if insn is not None else []

    def check(self, site: RelocSite) -> SiteCheck:
        if site.r_type in DATA_FIELDS:
            return self.data_in_code(site, WIDTHS[site.r_type])
        start = self.origin(site.offset)
        if start % 2:
            return self.fail(site, f"stepping to the site would start at {self.section}+{start:#x}, an odd "
                                   "address (a function symbol there?): s390 instructions are halfword "
                                   "aligned, so the instruction holding the site cannot be found")
        held = self.holding(site.offset)
        if held is None:
            return self.fail(site, f"no instruction holds {self.section}+{site.offset:#x}: stepping from "
                                   f"{self.section}+{start:#x} runs past the end of the code")
        insn = self.decode(*held)
        if insn is None:
            at, length = held
            raw = self.code[at:at + length]
            return self.fail(site, f"decode failure: capstone cannot decode the {length}-byte "
                                   f"instruction ({raw.hex(' ')}) at {self.section}+{at:#x} that holds the "
                                   "site; the site cannot be verified")
        if site.r_type in RIL_TYPES:
            return self._ril(site, insn)
        return self.fail(site, f"{spell(site.r_type)} on {insn.shown(self.section)}: klp-ld checks the "
                               "32-bit relative fields of RIL instructions (PC32DBL, PLT32DBL, GOTENT, "
                               "GOTPLTENT, GOTPCDBL) and whole data fields in s390x code, and no livepatch "
                               "relocation has another type", insn)

    def _ril(self, site: RelocSite, insn: Insn) -> SiteCheck:
        name = spell(site.r_type)
        shown = insn.shown(self.section)
        into = site.offset - insn.addr
        if len(insn.raw) != 6 or insn.opcode not in _RELATIVE_RIL:
            return self.fail(site, f"site is {into} byte(s) into {shown}, which has no 32-bit relative "
                                   f"operand: {name} writes the I2 field of a RIL instruction (brasl, brcl, "
                                   "larl, lgrl, ...)", insn)
        if into != _I2_AT:
            return self.fail(site, f"site is {into} byte(s) into {shown}: {name} writes its 32-bit I2 "
                                   "field, which starts 2 bytes into the instruction (r_offset = address "
                                   "+ 2)", insn)
        if site.addend % 2:
            return self.fail(site, f"odd addend {site.addend} on {shown}: the field counts halfwords, and "
                                   "apply_rela refuses an odd value ('relocation error for symbol')", insn)
        if site.r_type == R390.PLT32DBL:
            if insn.opcode not in (_BRASL, _BRCL) or (insn.opcode == _BRCL and insn.raw[1] >> 4 == 0):
                return self.fail(site, f"{name} on {shown}, which is not a call or jump (brasl, or brcl "
                                       "with a nonzero mask): the loader may point it at the symbol's PLT "
                                       "entry", insn)
            if site.addend != _SYMBOL_ADDEND:
                off = site.addend - _SYMBOL_ADDEND
                return self.fail(site, f"addend {site.addend} on {shown}: out of brasl range the loader "
                                       f"sends the branch to {site.symbol}'s PLT entry{off:+#x}, and only "
                                       "the entry itself jumps to the symbol; addend 2 expected", insn)
        elif site.r_type in (R390.GOTENT, R390.GOTPLTENT):
            if insn.opcode not in (_LGRL, _LARL):
                return self.fail(site, f"{name} on {shown}: the field then addresses {site.symbol}'s GOT "
                                       "slot, a 64-bit address that only lgrl loads (or larl addresses)",
                                 insn)
            if site.addend != _SYMBOL_ADDEND:
                off = site.addend - _SYMBOL_ADDEND
                return self.fail(site, f"addend {site.addend} on {shown}: the instruction reaches "
                                       f"{site.symbol}'s GOT slot{off:+#x}, not the slot that holds its "
                                       "address; addend 2 expected", insn)
        return SiteCheck(site.offset, True, insn.addr, insn.raw, insn.mnemonic, insn.op_str, "rel", 4, None,
                         site.r_type, name, site.symbol, site.addend - _SYMBOL_ADDEND)


def check_text_sites(
    code: bytes | bytearray | memoryview,
    section: str,
    funcs: Iterable[FuncRange],
    sites: Iterable[SiteInput],
) -> list[SiteCheck]:
    """Check each relocation site of an executable section against the instruction it patches.

    ``funcs`` are the (start, size) of the section's FUNC symbols, where stepping starts. Returns one
    ``SiteCheck`` per site, in input order; every failure, including "could not decode", is reported,
    never skipped.

    :raises CapstoneUnavailable: capstone cannot be imported (only if a site needs decoding).
    """
    return check_each_site(ARCH, code, section, sites,
                           lambda data: _Checker(_load_capstone(), data, section, funcs), (R390.NONE,))
