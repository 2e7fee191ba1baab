"""What the text checks of fixed-width instruction sets share (ppc64le and arm64).

Every 4-aligned word is an instruction start there, so no sweep is needed: a site's word is
decoded where it stands, once per word. The architecture's checker (a `WordChecker`) says what
each relocation type needs of its word; the driver, the failures and data written into code
are the same for both.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Iterable
from typing import Any, NamedTuple

from klp_ld.arch.model import Arch
from klp_ld.arch.sites import (
    RelocSite,
    Severity,
    SiteCheck,
    SiteInput,
    SiteProblem,
    as_site,
    describe,
    precheck,
)

_WORD = struct.Struct("<I")


class Word(NamedTuple):
    """One decoded instruction word: where, its bits, and capstone's text."""

    addr: int
    value: int
    raw: bytes
    mnemonic: str
    op_str: str

    def shown(self, section: str) -> str:
        return describe(section, self.addr, self.raw, self.mnemonic, self.op_str)


class WordChecker:
    """The checks of one section; decodes each word at most once. `check` is the architecture's."""

    def __init__(self, arch: Arch, cs: Any, code: bytes, section: str) -> None:
        self.arch = arch
        self.cs = cs
        self.code = code
        self.section = section
        self.words: dict[int, Word | None] = {}

    def check(self, site: RelocSite) -> SiteCheck:
        raise NotImplementedError

    def word(self, addr: int) -> Word | None:
        """The instruction word at a 4-aligned `addr`, or None when capstone cannot decode it."""
        if addr not in self.words:
            raw = self.code[addr:addr + 4]
            got = next(self.cs.disasm_lite(raw, addr, 1), None) if len(raw) == 4 else None
            self.words[addr] = None if got is None else Word(addr, _WORD.unpack(raw)[0], raw, got[2], got[3])
        return self.words[addr]

    def undecodable(self, addr: int) -> str:
        raw = self.code[addr:addr + 4]
        return (f"decode failure: capstone cannot decode the word ({raw.hex(' ')}) at "
                f"{self.section}+{addr:#x}; the site cannot be verified")

    def fail(self, site: RelocSite, message: str, insn: Word | None = None,
             severity: Severity = Severity.ERROR) -> SiteCheck:
        name = self.arch.reloc_name(site.r_type)
        problem = SiteProblem(site.offset, site.r_type, name, site.symbol, message, severity, self.section)
        ok = severity is Severity.WARNING
        if insn is None:
            return SiteCheck(site.offset, ok, None, b"", "", "", None, 0, problem, site.r_type, name,
                             site.symbol)
        return SiteCheck(site.offset, ok, insn.addr, insn.raw, insn.mnemonic, insn.op_str, None, 0, problem,
                         site.r_type, name, site.symbol)

    def data_in_code(self, site: RelocSite, width: int) -> SiteCheck:
        """A whole data value written into an executable section: over instructions it is an error,
        in a zero gap between functions (a literal pool, say) only worth a warning."""
        off = site.offset
        name = self.arch.reloc_name(site.r_type)
        if any(self.code[off:off + width]):
            covered = (self.word(a) for a in range(off & ~3, off + width, 4))
            over = [w for w in covered if w is not None]
            what = ", ".join(w.shown(self.section) for w in over) or "bytes capstone cannot decode"
            return self.fail(site, f"{name} stores a whole {width}-byte value at "
                                   f"{self.section}+{off:#x}, over the instruction(s) {what}: in code "
                                   "only a data word between functions (zero in the object) can take it",
                             over[0] if over else None)
        aligned = "" if off % width == 0 else f", not {width}-byte aligned"
        return self.fail(site, f"{name} writes {width} bytes of data inside code "
                               f"({self.section}+{off:#x}{aligned}): there is no instruction to check them "
                               "against", severity=Severity.WARNING)


def check_word_sites(arch: Arch, code: bytes | bytearray | memoryview, section: str,
                     sites: Iterable[SiteInput], checker: Callable[[bytes], WordChecker],
                     skipped: Collection[int] = ()) -> list[SiteCheck]:
    """One `SiteCheck` per site, in input order; capstone is loaded (by `checker`) only when a site
    needs decoding. Every failure, "could not decode" included, is reported, never skipped."""
    data = code if isinstance(code, bytes) else bytes(code)
    items = [as_site(s) for s in sites]
    results: list[SiteCheck | None] = [precheck(arch, site, section, len(data), skipped) for site in items]
    pending = [idx for idx, early in enumerate(results) if early is None]
    if pending:
        check = checker(data).check
        for idx in pending:
            results[idx] = check(items[idx])
    return [r for r in results if r is not None]
