"""What every architecture's site checker takes and returns, and the data-site check they share.

A relocation the kernel applies at the wrong place corrupts code or data silently, so before klp-ld
trusts its own output it checks every site: in code, against the instruction capstone decodes there
(one `*_text` module per architecture); in data, that the field fits the section and is aligned
where the kernel's tables need it. Everything here is a pure function of the bytes and lists given.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, Protocol, Union

from klp_ld.arch.model import Arch

#: The instruction field a text site lands on, in the architecture's own words (x86_64: "disp", "imm";
#: ppc64le: "li" of a branch, "d" or "ds" of a D- or DS-form instruction).
Field = str
#: (st_value, st_size) of a FUNC symbol in the section being checked.
FuncRange = tuple[int, int]


class CapstoneUnavailable(RuntimeError):
    """capstone (>= 5) cannot be imported, so text sites cannot be checked.

    A separate type lets the caller print one clear line instead of a traceback from deep inside
    the checker.
    """


class Severity(str, Enum):
    """Errors make the output unusable; warnings flag layouts that are legal but unusual."""

    ERROR = "error"
    WARNING = "warning"


class RelocSite(NamedTuple):
    """One relocation to check, in the section it patches.

    The first four fields are what every caller has (a plain 4-tuple is accepted too). The last two
    only sharpen the addend check: ``symbol_is_section`` says the symbol is a section (or other base)
    symbol, so a branch may legitimately target ``symbol + N``; ``symbol_size`` (0 = unknown, as in
    ELF) lets a data reference whose target falls past the end of the symbol be caught.
    """

    offset: int
    r_type: int
    addend: int
    symbol: str
    symbol_is_section: bool = False
    symbol_size: int = 0


SiteInput = Union[RelocSite, tuple[int, int, int, str]]


@dataclass(frozen=True)
class SiteProblem:
    """A site that does not fit; ``message`` is one line that stands on its own in a log."""

    offset: int
    r_type: int
    type_name: str
    symbol: str
    message: str
    severity: Severity = Severity.ERROR
    section: str = ""

    def __str__(self) -> str:
        where = f"{self.section}+{self.offset:#x}" if self.section else f"{self.offset:#x}"
        return f"{where}: {self.severity.value}: {self.type_name} against {self.symbol}: {self.message}"


@dataclass(frozen=True)
class SiteCheck:
    """What the checker concluded about one text site, kept for the decision log even when it is fine.

    ``ok`` is False only for errors; a warning leaves ``ok`` True with ``problem`` set. ``skipped``
    marks sites that have nothing to check (a NONE relocation). ``target_offset`` is the symbol
    offset the site really refers to: for PC-relative fields the addend corrected by where the CPU
    takes the PC from, for absolute ones the addend itself.
    """

    offset: int
    ok: bool
    insn_addr: int | None
    insn_bytes: bytes
    mnemonic: str
    op_str: str
    field: Field | None
    width: int
    problem: SiteProblem | None
    r_type: int
    type_name: str
    symbol: str
    target_offset: int | None = None
    skipped: bool = False
    #: the field's size in bits when it is not the whole ``width`` (ppc64le: REL24's 24-bit LI in a
    #: 4-byte word, a DS field's 14 bits in a halfword)
    bits: int | None = None

    def log_line(self, section: str = "") -> str:
        """One line for a decision log: site, relocation, and the instruction field it lands on."""
        where = f"{section}+{self.offset:#x}" if section else f"{self.offset:#x}"
        head = f"{where} {self.type_name} {self.symbol}".rstrip()  # a NONE site may name no symbol
        if self.skipped:
            return f"{head}: skipped (no field to patch)"
        if self.problem is not None:
            return f"{head}: {self.problem.severity.value}: {self.problem.message}"
        insn = describe(section, self.insn_addr or 0, self.insn_bytes, self.mnemonic, self.op_str)
        target = "" if self.target_offset is None else f" -> {self.symbol}{self.target_offset:+#x}"
        bits = self.width * 8 if self.bits is None else self.bits
        return f"{head}: {self.field}{bits} of {insn}{target}"


def describe(section: str, addr: int, raw: bytes, mnemonic: str, op_str: str) -> str:
    """An instruction as messages show it: text, bytes and place."""
    text = f"{mnemonic} {op_str}".strip()
    return f"'{text}' ({raw.hex(' ')}) at {section}+{addr:#x}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def as_site(raw: SiteInput) -> RelocSite:
    return raw if isinstance(raw, RelocSite) else RelocSite(*raw)


# Longer lists of the types a loader applies are not spelled out in a message (arm64 applies 37).
_LISTED_TYPES = 16


def width_problem(arch: Arch, site: RelocSite, size: int) -> str | None:
    """A site whose type the loader does not apply, or whose field does not fit the section."""
    width = arch.widths.get(site.r_type)
    if width is None:
        none = " and NONE" if arch.none_applied else " (not even NONE)"
        if len(arch.widths) > _LISTED_TYPES:
            return (f"{arch.reloc_name(site.r_type)} has no known field width here: the kernel's {arch.name} "
                    f"apply_relocate_add does not apply it (it applies {len(arch.widths)} other types{none})")
        known = ", ".join(arch.reloc_name(t) for t in sorted(arch.widths))
        return (f"{arch.reloc_name(site.r_type)} has no known field width here: the kernel's {arch.name} "
                f"apply_relocate_add only applies {known}{none}")
    if site.offset < 0 or site.offset + width > size:
        return (f"the {width}-byte field at {site.offset:#x} does not fit in the section "
                f"(size {size:#x})")
    return None


def check_data_sites(arch: Arch, section: str, size: int, sites: Iterable[SiteInput]) -> list[SiteProblem]:
    """Check relocation sites of a non-executable section: the field fits, and is aligned where it must be.

    Alignment is an error in the architecture's aligned tables and a warning elsewhere, since
    ``__packed`` arrays of pointers are legal. DWARF (``.debug*``) is unaligned by design and gets
    no alignment remark. NONE sites are skipped.
    """
    problems: list[SiteProblem] = []
    strict = section in arch.aligned_tables
    quiet = section.startswith(".debug")
    for raw in sites:
        site = as_site(raw)
        if site.r_type == arch.none:
            continue
        name = arch.reloc_name(site.r_type)
        message = width_problem(arch, site, size)
        if message is not None:
            problems.append(SiteProblem(site.offset, site.r_type, name, site.symbol, message, Severity.ERROR,
                                        section))
            continue
        width = arch.widths[site.r_type]
        align = min(width, arch.table_align.get(section, width))
        if site.offset % align == 0 or quiet:
            continue
        if strict:
            why = f"entries of {section} are arrays of naturally aligned fields"
            if align != width:
                why = f"{section} fields need at least {align}-byte alignment"
            severity = Severity.ERROR
        else:
            why = "fine for a packed struct, suspicious otherwise"
            severity = Severity.WARNING
        problems.append(SiteProblem(
            site.offset, site.r_type, name, site.symbol,
            f"the {width}-byte field at {section}+{site.offset:#x} is not {align}-byte aligned "
            f"(offset mod {align} = {site.offset % align}): {why}", severity, section))
    return problems


def failed(arch: Arch, section: str, site: RelocSite, message: str, insn: Decoded | None = None,
           severity: Severity = Severity.ERROR) -> SiteCheck:
    """A site that does not fit, with the instruction it was checked against when there is one; a
    warning leaves the site usable (`ok`)."""
    name = arch.reloc_name(site.r_type)
    problem = SiteProblem(site.offset, site.r_type, name, site.symbol, message, severity, section)
    ok = severity is Severity.WARNING
    if insn is None:
        return SiteCheck(site.offset, ok, None, b"", "", "", None, 0, problem, site.r_type, name, site.symbol)
    return SiteCheck(site.offset, ok, insn.addr, insn.raw, insn.mnemonic, insn.op_str, None, 0, problem,
                     site.r_type, name, site.symbol)


def precheck(arch: Arch, site: RelocSite, section: str, size: int,
             skipped: Collection[int] = ()) -> SiteCheck | None:
    """Settle a text site that needs no decoding: a NONE the loader applies (`skipped`: nothing to
    patch), a type the loader does not apply, a field outside the section; None for the others."""
    off, r_type = site.offset, site.r_type
    name = arch.reloc_name(r_type)
    if r_type in skipped:
        return SiteCheck(off, True, None, b"", "", "", None, 0, None, r_type, name, site.symbol, skipped=True)
    message = width_problem(arch, site, size)
    return None if message is None else failed(arch, section, site, message)


def import_capstone(arch: str) -> Any:  # capstone has no type stubs
    """capstone, imported when a text site needs decoding; missing, one clear CapstoneUnavailable."""
    try:
        import capstone
    except (ImportError, OSError) as exc:
        raise CapstoneUnavailable(
            f"capstone is needed to check {arch} text relocation sites ({exc}); "
            "install it with: pip install 'capstone>=5,<6'"
        ) from exc
    return capstone


class Decoded(Protocol):
    """An instruction as a checker decoded it: where it is, its bytes, and capstone's text."""

    @property
    def addr(self) -> int: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def mnemonic(self) -> str: ...
    @property
    def op_str(self) -> str: ...
    def shown(self, section: str) -> str: ...


class Checker:
    """What every architecture's checker of one section shares: its failures, and data written into
    code. `check` (each relocation type's rules) and `covering` (the instructions a range of bytes
    overlaps) are the architecture's."""

    def __init__(self, arch: Arch, cs: Any, code: bytes, section: str) -> None:
        self.arch = arch
        self.cs = cs
        self.code = code
        self.section = section

    def check(self, site: RelocSite) -> SiteCheck:
        raise NotImplementedError

    def covering(self, start: int, end: int) -> Sequence[Decoded]:
        raise NotImplementedError

    def fail(self, site: RelocSite, message: str, insn: Decoded | None = None,
             severity: Severity = Severity.ERROR) -> SiteCheck:
        return failed(self.arch, self.section, site, message, insn, severity)

    def data_in_code(self, site: RelocSite, width: int) -> SiteCheck:
        """A whole data value written into an executable section: over instructions it is an error,
        in a zero gap between functions (a literal pool, say) only worth a warning."""
        off = site.offset
        name = self.arch.reloc_name(site.r_type)
        if any(self.code[off:off + width]):
            over = self.covering(off, off + width)
            what = ("the instruction(s) " + ", ".join(insn.shown(self.section) for insn in over) if over
                    else "bytes capstone cannot decode")
            return self.fail(site, f"{name} stores a whole {width}-byte value at "
                                   f"{self.section}+{off:#x}, over {what}: in code "
                                   "only a data word between functions (zero in the object) can take it",
                             over[0] if over else None)
        aligned = "" if off % width == 0 else f", not {width}-byte aligned"
        return self.fail(site, f"{name} writes {width} bytes of data inside code "
                               f"({self.section}+{off:#x}{aligned}): there is no instruction to check them "
                               "against", severity=Severity.WARNING)


def check_each_site(arch: Arch, code: bytes | bytearray | memoryview, section: str,
                    sites: Iterable[SiteInput], checker: Callable[[bytes], Checker],
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
