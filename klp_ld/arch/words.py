"""What the text checks of fixed-width instruction sets share (ppc64le and arm64).

Every 4-aligned word is an instruction start there, so no sweep is needed: a site's word is
decoded where it stands, once per word. The architecture's checker (a `WordChecker`) says what
each relocation type needs of its word; the failures, data written into code and the driver are
every architecture's (`klp_ld.arch.sites`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

from klp_ld.arch.model import Arch
from klp_ld.arch.sites import Checker, describe

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


class WordChecker(Checker):
    """The checks of one section; decodes each word at most once. `check` is the architecture's."""

    def __init__(self, arch: Arch, cs: Any, code: bytes, section: str) -> None:
        super().__init__(arch, cs, code, section)
        self.words: dict[int, Word | None] = {}

    def word(self, addr: int) -> Word | None:
        """The instruction word at a 4-aligned `addr`, or None when capstone cannot decode it."""
        if addr not in self.words:
            raw = self.code[addr:addr + 4]
            got = next(self.cs.disasm_lite(raw, addr, 1), None) if len(raw) == 4 else None
            self.words[addr] = None if got is None else Word(addr, _WORD.unpack(raw)[0], raw, got[2], got[3])
        return self.words[addr]

    def covering(self, start: int, end: int) -> Sequence[Word]:
        return [w for w in (self.word(a) for a in range(start & ~3, end, 4)) if w is not None]

    def undecodable(self, addr: int) -> str:
        raw = self.code[addr:addr + 4]
        return (f"decode failure: capstone cannot decode the word ({raw.hex(' ')}) at "
                f"{self.section}+{addr:#x}; the site cannot be verified")
