"""x86_64 text relocation sites, checked against the instructions capstone decodes.

``apply_relocate_add`` writes wherever ``r_offset`` says and only complains when the old bytes are not
zero. So a site in code must be the first byte of an instruction's displacement or immediate field, of
exactly the width the relocation type writes, and, for PC-relative types, its addend must fit the
instruction: the CPU adds a RIP-relative field to the *end* of the instruction, so the addend is
``symbol offset - (instruction end - site)``. (Data sites are checked by ``klp_ld.arch.sites``.)

Instruction boundaries come from capstone.  A sweep may only start at a known instruction start (a
function symbol, the end of a function, or a section start): started anywhere else, x86's variable-length
encoding mis-decodes for dozens of bytes.  The sweep uses ``disasm_lite`` (fast, no detail); only the
instruction holding a site is decoded again with detail, and only once per distinct instruction: the
fields of an instruction depend on its bytes alone (relocation fields are still zero in an object), so
10,000 identical ``call``/``lea`` sites cost one detailed decode, and their text (which names an absolute
branch target) comes from the sweep at each one's own address.

Everything here is a pure function of the bytes and lists it is given: no ELF parsing, no file access, no
caches that outlive a call.  capstone is imported only when a text site needs decoding, so neither
``import klp_ld`` nor a link without text sites pays for it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any, NamedTuple

from klp_ld.arch.sites import (
    CapstoneUnavailable,
    Field,
    FuncRange,
    RelocSite,
    Severity,
    SiteCheck,
    SiteInput,
    SiteProblem,
    as_site,
    describe,
    failed,
    import_capstone,
    plural,
    precheck,
)
from klp_ld.arch.x86_64 import ARCH, PC_RELATIVE, RX86, WIDTHS, spell

# Longest legal x86 instruction; a detail decode never needs more.
_MAX_INSN = 15

class _Insn(NamedTuple):
    """The parts of one detailed decode the checks need, copied out of capstone's objects once."""

    addr: int
    size: int
    raw: bytes
    mnemonic: str
    op_str: str
    is_nop: bool
    disp_off: int
    disp_size: int
    imm_off: int
    imm_size: int
    rip_relative: bool
    rel_branch: bool

    def shown(self, section: str) -> str:
        return describe(section, self.addr, self.raw, self.mnemonic, self.op_str)


class _Sweep(NamedTuple):
    """Instructions of one range (starts, sizes, text), and where decoding stopped (== end when complete)."""

    start: int
    end: int
    starts: list[int]
    sizes: list[int]
    texts: list[tuple[str, str]]
    reached: int


class _Capstone(NamedTuple):
    lite: Any
    det: Any
    nop_id: int
    branch_group: int


def _load_capstone() -> _Capstone:
    """Import capstone on demand; a missing or too old one becomes CapstoneUnavailable."""
    capstone = import_capstone("x86_64")
    cs_x86 = capstone.x86
    major = capstone.cs_version()[0]
    if major < 5:
        raise CapstoneUnavailable(
            f"capstone {major}.x is too old to check x86_64 text relocation sites: it does not report "
            "instruction field offsets; install it with: pip install 'capstone>=5,<6'"
        )
    lite = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    det = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    det.detail = True
    return _Capstone(lite, det, int(cs_x86.X86_INS_NOP), int(capstone.CS_GRP_BRANCH_RELATIVE))


def _segments(size: int, funcs: Iterable[FuncRange]) -> list[int]:
    """Known instruction starts that split the section into independently swept ranges.

    Function starts and ends (a sized function ends where its successor or the padding after it starts)
    plus the section start.  Size 0 means "up to the next start", which the split gives for free.  A
    range never spans a boundary, so an instruction crossing one (a wrong st_size) shows up as a stop.
    """
    points = {0, size}
    for value, fsize in funcs:
        if 0 <= value < size:
            points.add(value)
            if fsize > 0 and value + fsize < size:
                points.add(value + fsize)
    return sorted(points)


def _sweep(cs: _Capstone, code: bytes, start: int, end: int) -> _Sweep:
    starts: list[int] = []
    sizes: list[int] = []
    texts: list[tuple[str, str]] = []
    reached = start
    for addr, size, mnemonic, op_str in cs.lite.disasm_lite(code[start:end], start):
        starts.append(addr)
        sizes.append(size)
        texts.append((mnemonic, op_str))
        reached = addr + size
    return _Sweep(start, end, starts, sizes, texts, reached)


#: Detailed decodes of one call, by the instruction's bytes (exactly the size the sweep found).  Only
#: decodes whose size and text agree with the sweep are kept: then every other instruction with the same
#: bytes has the same fields, and the sweep's text at its address is the text capstone would print there.
_Shapes = dict[bytes, _Insn]


def _decode_at(cs: _Capstone, code: bytes, sweep: _Sweep, i: int, shapes: _Shapes) -> _Insn | None:
    """The detailed decode of the sweep's i-th instruction, reusing one of identical bytes elsewhere."""
    addr = sweep.starts[i]
    size = sweep.sizes[i]
    raw = code[addr : addr + size]
    known = shapes.get(raw)
    if known is not None:
        if known.addr == addr:
            return known
        mnemonic, op_str = sweep.texts[i]
        return known._replace(addr=addr, mnemonic=mnemonic, op_str=op_str)
    insn = _decode(cs, code, addr)
    if insn is not None and insn.size == size and (insn.mnemonic, insn.op_str) == sweep.texts[i]:
        shapes[raw] = insn
    return insn


def _decode(cs: _Capstone, code: bytes, addr: int) -> _Insn | None:
    insn = next(cs.det.disasm(code[addr : addr + _MAX_INSN], addr, 1), None)
    if insn is None:
        return None
    disp_off = insn.disp_offset
    disp_size = insn.disp_size
    # capstone 5 reports a disp32 as 2 bytes whenever operand size 0x66 is in effect; 64-bit mode
    # has no 16-bit displacements, so 2 can only mean 4.
    if disp_size == 2:
        disp_size = 4
    imm_off = insn.imm_offset
    modrm_off = insn.modrm_offset
    # mod=00, rm=101 without SIB is RIP-relative in 64-bit mode (EIP-relative with 0x67: still PC-based).
    rip_relative = bool(disp_off and modrm_off and (insn.modrm & 0xC7) == 0x05)
    rel_branch = bool(imm_off) and cs.branch_group in insn.groups
    return _Insn(
        addr,
        insn.size,
        bytes(insn.bytes),
        insn.mnemonic,
        insn.op_str,
        insn.id == cs.nop_id,
        disp_off,
        disp_size,
        imm_off,
        insn.imm_size,
        rip_relative,
        rel_branch,
    )


def _stop_reason(cs: _Capstone, code: bytes, section: str, sweep: _Sweep, site: int) -> str:
    """Explain why the sweep never reached a site: unknown bytes, or an instruction crossing a boundary."""
    stop = sweep.reached
    origin = f"{section}+{sweep.start:#x}"
    gap = site - stop
    tail = (
        f"the site is {plural(gap, 'byte')} further on and cannot be verified"
        if gap
        else "the site is right there and cannot be verified"
    )
    whole = next(cs.lite.disasm_lite(code[stop : stop + _MAX_INSN], stop, 1), None)
    if whole is not None and stop + whole[1] > sweep.end:
        raw = code[stop : stop + whole[1]]
        if site < stop + whole[1]:
            tail = "the site lies in it and cannot be verified"
        return (
            f"decode failure: {describe(section, stop, raw, whole[2], whole[3])} runs past the end of the "
            f"range swept from {origin} (a function or section boundary at {section}+{sweep.end:#x}, so a "
            f"symbol size disagrees with the code); {tail}"
        )
    left = len(code) - stop
    if whole is None and left < _MAX_INSN:
        padded = code[stop:] + bytes(_MAX_INSN - left)
        guess = next(cs.lite.disasm_lite(padded, stop, 1), None)
        if guess is not None and guess[1] > left:
            return (
                f"decode failure: the section ends {plural(left, 'byte')} into a {guess[1]}-byte "
                f"'{guess[2]}' ({code[stop:].hex(' ')}) at {section}+{stop:#x}, where the sweep from "
                f"{origin} stopped; {tail}"
            )
    raw = code[stop : min(stop + 8, sweep.end)]
    return (
        f"decode failure: capstone cannot decode the bytes ({raw.hex(' ')}) at {section}+{stop:#x}, where "
        f"the sweep from {origin} stopped; {tail}"
    )


def _field_problem(insn: _Insn, rel: int, desc: str) -> str:
    """Say where inside the instruction a site landed when it is not on a field start."""
    if insn.disp_off and insn.disp_off < rel < insn.disp_off + insn.disp_size:
        return f"site is {plural(rel - insn.disp_off, 'byte')} into the displacement of {desc}"
    if insn.imm_off and insn.imm_off < rel < insn.imm_off + insn.imm_size:
        return f"site is {plural(rel - insn.imm_off, 'byte')} into the immediate of {desc}"
    fields = []
    if insn.disp_off:
        fields.append(f"disp at +{insn.disp_off} ({plural(insn.disp_size, 'byte')})")
    if insn.imm_off:
        fields.append(f"imm at +{insn.imm_off} ({plural(insn.imm_size, 'byte')})")
    has = "its fields: " + ", ".join(fields) if fields else "it has no displacement or immediate"
    return f"site is at byte {rel} of {desc}, not on a displacement or immediate field ({has})"


def _tail_reason(insn: _Insn, field_end: int) -> str:
    """Why the distance to the instruction end is what it is, in the terms people mis-count it."""
    trailing = insn.size - field_end
    if trailing <= 0:
        return "the field ends the instruction"
    if insn.imm_off and insn.imm_off >= field_end:
        return f"a trailing imm{insn.imm_size * 8} follows the field"
    return f"{plural(trailing, 'byte')} follow the field"


def _pc_problem(
    site: RelocSite, insn: _Insn, rel: int, width: int, section: str
) -> tuple[int, str | None]:
    """Check the addend of a PC-relative field the CPU really adds to RIP; return (symbol offset, error)."""
    tail = insn.size - rel
    implied = site.addend + tail
    sym = site.symbol
    target = f"{sym}{implied:+#x}" if implied else sym
    if insn.rel_branch:
        if implied == 0 or (site.symbol_is_section and implied >= 0):
            return implied, None
    elif implied >= 0 and not (site.symbol_size > 0 and implied >= site.symbol_size):
        return implied, None
    reason = _tail_reason(insn, rel + width)
    desc = insn.shown(section)
    if insn.rel_branch:
        where = "before the symbol" if implied < 0 else f"{implied:#x} bytes into it"
        return implied, (
            f"branch target is {target} ({where}), not {sym} itself: addend {-tail} expected for "
            f"{desc} ({reason})"
        )
    if implied < 0:
        return implied, (
            f"addend {site.addend} puts the target at {target}, before the symbol: addend {-tail} expected "
            f"for a field {plural(tail, 'byte')} before the instruction end ({reason}), plus any field "
            f"offset, in {desc}"
        )
    if site.symbol_size > 0 and implied >= site.symbol_size:
        return implied, (
            f"addend {site.addend} puts the target at {target}, past the end of {sym} "
            f"(size {site.symbol_size:#x}): addend {-tail} expected for a field {plural(tail, 'byte')} "
            f"before the instruction end ({reason}), plus any field offset, in {desc}"
        )
    return implied, None


def _check_one(
    cs: _Capstone,
    code: bytes,
    section: str,
    site: RelocSite,
    sweep: _Sweep,
    decoded: dict[int, _Insn | None],
    shapes: _Shapes,
) -> SiteCheck:
    off = site.offset
    r_type = site.r_type
    width = WIDTHS[r_type]  # an IntEnum key is found by its int

    def fail(message: str, insn: _Insn | None = None) -> SiteCheck:
        return failed(ARCH, section, site, message, insn)

    i = bisect.bisect_right(sweep.starts, off) - 1
    if i < 0 or off >= sweep.starts[i] + sweep.sizes[i]:
        return fail(_stop_reason(cs, code, section, sweep, off))
    addr = sweep.starts[i]
    if addr not in decoded:
        decoded[addr] = _decode_at(cs, code, sweep, i, shapes)
    insn = decoded[addr]
    if insn is None or insn.size != sweep.sizes[i]:
        raw = code[addr : addr + sweep.sizes[i]]
        return fail(
            f"decode failure: capstone decodes the instruction ({raw.hex(' ')}) at {section}+{addr:#x} "
            "differently with detail on; the site cannot be verified"
        )
    if insn.is_nop:
        desc = insn.shown(section)
        return fail(f"site is inside a NOP, {desc}: nothing reads this field", insn)
    rel = off - addr
    field: Field
    if insn.disp_off and rel == insn.disp_off:
        field, have = "disp", insn.disp_size
        kind = "displacement"
    elif insn.imm_off and rel == insn.imm_off:
        field, have = "imm", insn.imm_size
        kind = "immediate"
    else:
        desc = insn.shown(section)
        return fail(_field_problem(insn, rel, desc), insn)

    if have != width:
        desc = insn.shown(section)
        return fail(
            f"{spell(r_type)} writes {plural(width, 'byte')} but the {kind} of {desc} is "
            f"{plural(have, 'byte')} wide",
            insn,
        )

    pc_field = insn.rip_relative if field == "disp" else insn.rel_branch
    target: int | None = site.addend
    message: str | None = None
    severity = Severity.ERROR
    if r_type in PC_RELATIVE:
        if pc_field:
            target, message = _pc_problem(site, insn, rel, width, section)
        else:
            desc = insn.shown(section)
            what = "displacement (not RIP-relative)" if field == "disp" else "immediate"
            message = (
                f"PC-relative {spell(r_type)} on the {what} of {desc}: the CPU does not add RIP to "
                "this field, so the value stays relative to the site itself"
            )
            severity = Severity.WARNING
    elif pc_field:
        desc = insn.shown(section)
        what = "RIP-relative displacement" if field == "disp" else "relative branch offset"
        message = (
            f"absolute {spell(r_type)} on the {what} of {desc}: the CPU adds the instruction end to "
            "this field, so a PC-relative type (R_X86_64_PC32 or R_X86_64_PLT32) is expected"
        )
    problem = None
    if message is not None:
        problem = SiteProblem(off, r_type, spell(r_type), site.symbol, message, severity, section)
    return SiteCheck(
        off,
        problem is None or severity is Severity.WARNING,
        addr,
        insn.raw,
        insn.mnemonic,
        insn.op_str,
        field,
        have,
        problem,
        r_type,
        spell(r_type),
        site.symbol,
        target,
    )


def check_text_sites(
    code: bytes | bytearray | memoryview,
    section: str,
    funcs: Iterable[FuncRange],
    sites: Iterable[SiteInput],
) -> list[SiteCheck]:
    """Check each relocation site of an executable section against its decoded instruction.

    ``funcs`` holds ``(st_value, st_size)`` of the section's FUNC symbols; they anchor the sweeps, which
    also cover the gaps between functions (code without a symbol exists, e.g. in ``kvm.ko``) and the
    whole section when there are none.  Only the ranges holding sites are decoded.  Returns one
    ``SiteCheck`` per site, in input order; every failure, including "could not decode", is reported,
    never skipped.

    :raises CapstoneUnavailable: capstone is missing or older than 5 (only if a site needs decoding).
    """
    data = code if isinstance(code, bytes) else bytes(code)
    size = len(data)
    items = [as_site(s) for s in sites]
    results: list[SiteCheck | None] = [None] * len(items)
    pending: list[tuple[int, RelocSite]] = []
    for idx, site in enumerate(items):
        early = precheck(ARCH, site, section, size, (RX86.NONE,))
        if early is None:
            pending.append((idx, site))
            continue
        results[idx] = early
    if pending:
        cs = _load_capstone()
        bounds = _segments(size, funcs)
        by_segment: dict[int, list[tuple[int, RelocSite]]] = {}
        for idx, site in pending:
            by_segment.setdefault(bisect.bisect_right(bounds, site.offset) - 1, []).append((idx, site))
        decoded: dict[int, _Insn | None] = {}
        shapes: _Shapes = {}
        # one range's sweep at a time: holding every instruction's text of a large section at once
        # cost several megabytes
        for seg, sites_here in by_segment.items():
            sweep = _sweep(cs, data, bounds[seg], bounds[seg + 1])
            for idx, site in sites_here:
                results[idx] = _check_one(cs, data, section, site, sweep, decoded, shapes)
    return [r for r in results if r is not None]


def text_site_problems(
    code: bytes | bytearray | memoryview,
    section: str,
    funcs: Iterable[FuncRange],
    sites: Iterable[SiteInput],
) -> list[SiteProblem]:
    """Only the problems (errors and warnings) of ``check_text_sites``, for callers that just report."""
    return [c.problem for c in check_text_sites(code, section, funcs, sites) if c.problem is not None]
