"""Tests for klp_ld.arch.x86_64_text against objects the system assembler builds from testdata/sites.

The fixtures are assembled (or compiled) at test time, once per session; pyelftools reads them here, in
the tests only, to get what klp-ld's own ELF layer will hand the checker: section bytes, FUNC symbols and
relocations.  Broken sites are either written into the fixtures with ``.reloc`` or made here by moving,
retyping or re-addending the good relocations gas emitted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # pytest's rootdir is not on sys.path unless klp-ld is installed
    sys.path.insert(0, str(ROOT))

from klp_ld.arch.sites import (  # noqa: E402
    CapstoneUnavailable,
    RelocSite,
    Severity,
    SiteCheck,
    SiteInput,
    check_data_sites,
)
from klp_ld.arch.x86_64 import ARCH, RX86  # noqa: E402
from klp_ld.arch.x86_64 import WIDTHS as RELOC_WIDTH  # noqa: E402
from klp_ld.arch.x86_64_text import check_text_sites, text_site_problems  # noqa: E402

ALIGNED_TABLES = ARCH.aligned_tables

FIXTURES = ROOT / "testdata" / "sites"

# kbuild's code-generation flags for Debian's 6.12 and 6.1 kernels.
KERNEL_CFLAGS = [
    "-O2",
    "-mcmodel=kernel",
    "-fno-pic",
    "-ffunction-sections",
    "-fdata-sections",
    "-mno-red-zone",
    "-fno-asynchronous-unwind-tables",
    "-pg",
    "-mrecord-mcount",
    "-mfentry",
    "-mindirect-branch=thunk-extern",
    "-mindirect-branch-cs-prefix",
    "-mfunction-return=thunk-extern",
    "-mharden-sls=all",
    "-fno-jump-tables",
]
CFLAGS_612 = [*KERNEL_CFLAGS, "-fpatchable-function-entry=16,16", "-fcf-protection=branch"]
CFLAGS_61 = [*KERNEL_CFLAGS, "-fcf-protection=none"]

PC32, PLT32, R32, R32S, R64, PC64 = RX86.PC32, RX86.PLT32, RX86.R32, RX86.R32S, RX86.R64, RX86.PC64
SHF_EXECINSTR = 0x4


# ---------------------------------------------------------------------------------------------------
# Building and reading the fixtures


@dataclass
class Section:
    name: str
    data: bytes
    flags: int
    funcs: list[tuple[int, int]] = field(default_factory=list)
    func_at: dict[str, tuple[int, int]] = field(default_factory=dict)
    sites: list[RelocSite] = field(default_factory=list)

    @property
    def is_text(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)

    def check(self, sites: Sequence[SiteInput] | None = None) -> list[SiteCheck]:
        return check_text_sites(self.data, self.name, self.funcs, self.sites if sites is None else sites)

    def sites_in(self, func: str) -> list[RelocSite]:
        start, size = self.func_at[func]
        return sorted((s for s in self.sites if start <= s.offset < start + size), key=lambda s: s.offset)


@dataclass
class Obj:
    path: Path
    sections: dict[str, Section]

    def func(self, name: str) -> tuple[Section, int]:
        for sec in self.sections.values():
            if name in sec.func_at:
                return sec, sec.func_at[name][0]
        raise KeyError(name)


def load(path: Path) -> Obj:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    with path.open("rb") as fh:
        elf = ELFFile(fh)
        by_index: dict[int, Section] = {}
        sections: dict[str, Section] = {}
        for idx, esec in enumerate(elf.iter_sections()):
            if esec["sh_type"] in ("SHT_PROGBITS", "SHT_NOBITS"):
                data = esec.data() if esec["sh_type"] == "SHT_PROGBITS" else b""
                out = Section(esec.name, data, esec["sh_flags"])
                by_index[idx] = out
                sections[esec.name] = out
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        symbols = list(symtab.iter_symbols())
        for sym in symbols:
            shndx = sym["st_shndx"]
            if sym["st_info"]["type"] == "STT_FUNC" and isinstance(shndx, int) and shndx in by_index:
                owner_sec = by_index[shndx]
                owner_sec.funcs.append((sym["st_value"], sym["st_size"]))
                owner_sec.func_at[sym.name] = (sym["st_value"], sym["st_size"])
        for rel in elf.iter_sections():
            if not isinstance(rel, RelocationSection) or rel["sh_info"] not in by_index:
                continue
            target = by_index[rel["sh_info"]]
            for r in rel.iter_relocations():
                sym = symbols[r["r_info_sym"]]
                if sym["st_info"]["type"] == "STT_SECTION":
                    owner = elf.get_section(sym["st_shndx"])
                    label, is_sec, size = owner.name, True, owner["sh_size"]
                else:
                    label, is_sec, size = sym.name, False, sym["st_size"]
                target.sites.append(
                    RelocSite(r["r_offset"], r["r_info_type"], r["r_addend"], label, is_sec, size)
                )
    for sec in sections.values():
        sec.sites.sort(key=lambda s: s.offset)
    return Obj(path, sections)


Builder = Callable[..., "Obj"]


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    """Assemble or compile a fixture once per session and parse it; skip when there is no toolchain."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no gcc/cc on PATH to assemble the testdata/sites fixtures")
    outdir = tmp_path_factory.mktemp("sites")
    cache: dict[tuple[str, tuple[str, ...]], Obj] = {}

    def _build(name: str, flags: list[str] | None = None) -> Obj:
        key = (name, tuple(flags or ()))
        if key not in cache:
            out = outdir / f"{Path(name).stem}-{len(cache)}.o"
            cmd = [gcc, "-c", *(flags or []), str(FIXTURES / name), "-o", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                pytest.skip(f"cannot build {name} with {' '.join(cmd)}: {proc.stderr.strip()}")
            cache[key] = load(out)
        return cache[key]

    return _build


@pytest.fixture(scope="session")
def enc(build: Builder) -> Obj:
    return build("encodings.s")


@pytest.fixture(scope="session")
def layout(build: Builder) -> Obj:
    return build("layout.s")


@pytest.fixture(scope="session")
def broken(build: Builder) -> Obj:
    return build("broken.s")


def one(sec: Section, site: SiteInput) -> SiteCheck:
    (result,) = sec.check([site])
    return result


def assert_problem(check: SiteCheck, *fragments: str) -> str:
    assert not check.ok, check
    assert check.problem is not None
    assert check.problem.severity is Severity.ERROR
    message = check.problem.message
    assert "\n" not in message
    for frag in fragments:
        assert frag in message, f"{frag!r} not in {message!r}"
    return message


# ---------------------------------------------------------------------------------------------------
# The encoding table: every form is found on the right field, with the right width and target


# case -> [(site offset in the function, instruction offset, type, addend, field, width, mnemonic,
#           symbol offset the site refers to)]
ENCODINGS = {
    "case_call_plt": [(1, 0, PLT32, -4, "imm", 4, "call", 0)],
    "case_jmp_plt": [(1, 0, PLT32, -4, "imm", 4, "jmp", 0)],
    "case_jcc_plt": [(2, 0, PLT32, -4, "imm", 4, "jne", 0)],
    "case_tail_thunk": [(1, 0, PLT32, -4, "imm", 4, "jmp", 0)],
    "case_call_static": [(1, 0, PC32, 0xC, "imm", 4, "call", 0x10)],
    "case_retpoline": [(2, 0, PLT32, -4, "imm", 4, "call", 0)],
    "case_rip_load": [(3, 0, PC32, -4, "disp", 4, "mov", 0)],
    "case_rip_store": [(3, 0, PC32, -4, "disp", 4, "mov", 0)],
    "case_rip_lea": [(3, 0, PC32, -4, "disp", 4, "lea", 0)],
    "case_rip_movb_imm8": [(2, 0, PC32, -5, "disp", 4, "mov", 0)],
    "case_rip_cmpl_imm8": [(2, 0, PC32, -5, "disp", 4, "cmp", 0)],
    "case_rip_addl_imm8": [(2, 0, PC32, -5, "disp", 4, "add", 0)],
    "case_rip_imm16": [(3, 0, PC32, -6, "disp", 4, "mov", 0)],
    "case_rip_movl_imm32": [(2, 0, PC32, -8, "disp", 4, "mov", 0)],
    "case_rip_cmpq_imm32": [(3, 0, PC32, -8, "disp", 4, "cmp", 0)],
    "case_rip_imul_imm32": [(2, 0, PC32, -8, "disp", 4, "imul", 0)],
    "case_movq_fn_var": [(3, 0, PC32, -8, "disp", 4, "mov", 0), (7, 0, R32S, 0, "imm", 4, "mov", 0)],
    "case_store16": [(3, 0, PC32, -4, "disp", 4, "mov", 0)],
    "case_store16_r11w": [(4, 0, PC32, -4, "disp", 4, "mov", 0)],
    "case_field_offset": [(2, 0, PC32, -2, "disp", 4, "test", 3)],
    "case_call_indirect": [(2, 0, PC32, -4, "disp", 4, "call", 0)],
    "case_lock_inc": [(3, 0, PC32, -4, "disp", 4, "inc", 0)],
    "case_mov_imm32s": [(3, 0, R32S, 0, "imm", 4, "mov", 0)],
    "case_mov_imm32": [(1, 0, R32, 0, "imm", 4, "mov", 0)],
    "case_movabs_imm": [(2, 0, R64, 0, "imm", 8, "movabs", 0)],
    "case_movabs_moffs": [(2, 0, R64, 0, "disp", 8, "movabs", 0)],
    "case_sib_abs": [(4, 0, R32S, 0, "disp", 4, "mov", 0)],
    "case_base_disp": [(3, 0, R32S, 0, "disp", 4, "add", 0)],
    "case_switch_table": [(3, 0, R32S, 0, "disp", 4, "jmp", 0)],
    "case_gs_rip_inc": [(4, 0, PC32, -4, "disp", 4, "inc", 0)],
    "case_gs_rip_load": [(3, 0, PC32, -4, "disp", 4, "mov", 0)],
    "case_gs_rip_imm32": [(3, 0, PC32, -8, "disp", 4, "mov", 0)],
    "case_gs_rip_imm16": [(4, 0, PC32, -6, "disp", 4, "mov", 0)],
    "case_gs_pcpu_field": [(3, 0, PC32, 4, "disp", 4, "mov", 8)],
    "case_gs_abs": [(5, 0, R32S, 0, "disp", 4, "mov", 0)],
    "case_jcc_cold": [(4, 2, PC32, -4, "imm", 4, "je", 0)],
}


@pytest.mark.parametrize("case", sorted(ENCODINGS))
def test_encoding_table(enc: Obj, case: str) -> None:
    sec, start = enc.func(case)
    sites = sec.sites_in(case)
    expected = ENCODINGS[case]
    # the fixture really has the relocations of the reference table
    assert [(s.offset - start, s.r_type, s.addend) for s in sites] == [
        (rel, rtype, addend) for rel, _i, rtype, addend, *_ in expected
    ]
    results = sec.check(sites)
    for res, (rel, insn_rel, rtype, _addend, fld, width, mnemonic, target) in zip(
        results, expected, strict=True
    ):
        assert res.ok and res.problem is None, res.problem
        assert res.offset == start + rel
        assert res.insn_addr == start + insn_rel
        assert res.field == fld
        assert res.width == width == RELOC_WIDTH[rtype]
        assert res.mnemonic.split()[-1] == mnemonic
        assert res.target_offset == target
        assert res.insn_bytes == sec.data[res.insn_addr : res.insn_addr + len(res.insn_bytes)]
        assert not res.skipped


def test_disp_size_bug_is_read_as_four(enc: Obj) -> None:
    """capstone says disp_size 2 for `66 89 05 <d32>`; the checker must still accept PC32 there."""
    sec, _ = enc.func("case_store16")
    res = one(sec, sec.sites_in("case_store16")[0])
    assert res.insn_bytes[:3] == bytes.fromhex("66 89 05")
    assert res.ok and (res.field, res.width) == ("disp", 4)


def test_cold_section_jumps(enc: Obj) -> None:
    """The cold part calls out and jumps back into the hot function through a section symbol."""
    cold = enc.sections[".text.unlikely.case_jcc_cold"]
    results = cold.check()
    assert [(r.offset, r.mnemonic, r.ok) for r in results] == [(1, "call", True), (6, "jmp", True)]
    back = cold.sites[1]
    assert back.symbol == ".text" and back.symbol_is_section
    _, hot = enc.func("case_jcc_cold")
    assert results[1].target_offset == hot + 8  # the instruction after the je


def test_whole_encoding_object_passes(enc: Obj) -> None:
    for sec in enc.sections.values():
        if sec.is_text:
            bad = [c.problem for c in sec.check() if not c.ok or c.problem]
            assert bad == []
        else:
            assert check_data_sites(ARCH, sec.name, len(sec.data), sec.sites) == []


# ---------------------------------------------------------------------------------------------------
# Layouts: padding, __pfx_ symbols, R_X86_64_NONE, gaps, sections without FUNC symbols


def test_612_padding_and_endbr(layout: Obj) -> None:
    for name in ("pad_a", "pad_b"):
        sec, start = layout.func(name)
        assert sec.data[:16] == b"\x90" * 16
        assert sec.data[start : start + 4] == bytes.fromhex("f3 0f 1e fa")
        results = sec.check()
        assert results and all(r.ok and r.problem is None for r in results)
        # the first site is `call __fentry__` right after endbr64
        assert (results[0].insn_addr, results[0].mnemonic) == (start + 4, "call")
    sec, _ = layout.func("pad_b")
    assert [r.width for r in sec.check()] == [4, 4, 4, 4, 4]


def test_site_in_padding_nops_is_rejected(layout: Obj) -> None:
    sec, _ = layout.func("pad_a")
    res = one(sec, RelocSite(3, PC32, -4, "var"))
    assert_problem(res, "inside a NOP", "'nop' (90) at .text.pad_a+0x3")


def test_r_none_fentry_nop_is_skipped(layout: Obj) -> None:
    sec, start = layout.func("fentry_nop")
    results = sec.check()
    assert results[0].offset == start + 1 and results[0].r_type == RX86.NONE
    assert results[0].ok and results[0].skipped and results[0].problem is None
    assert all(r.ok for r in results[1:]) and not any(r.skipped for r in results[1:])


def test_code_between_functions_is_swept(layout: Obj) -> None:
    sec = layout.sections[".text.gaps"]
    results = sec.check()
    by_off = {r.offset: r for r in results}
    assert set(by_off) == {0x3, 0x8, 0x11, 0x16, 0x21}
    assert all(r.ok for r in results)
    # the stub with no symbol: call __fentry__ at 0x10 and jmp at 0x15
    assert (by_off[0x11].insn_addr, by_off[0x11].mnemonic) == (0x10, "call")
    assert (by_off[0x16].insn_addr, by_off[0x16].mnemonic) == (0x15, "jmp")


def test_section_without_func_symbols(layout: Obj) -> None:
    sec = layout.sections[".altinstr_replacement"]
    assert sec.funcs == []
    results = sec.check()
    assert [(r.insn_addr, r.mnemonic, r.field) for r in results] == [
        (0, "call", "imm"),
        (5, "lea", "disp"),
        (0xC, "jmp", "imm"),
    ]
    assert all(r.ok for r in results)


# ---------------------------------------------------------------------------------------------------
# Broken sites


def test_site_one_byte_into_displacement(enc: Obj) -> None:
    sec, start = enc.func("case_rip_load")
    good = sec.sites_in("case_rip_load")[0]
    res = one(sec, good._replace(offset=good.offset + 1))
    msg = assert_problem(
        res,
        "site is 1 byte into the displacement of",
        "'mov rax, qword ptr [rip]'",
        "(48 8b 05 00 00 00 00)",
        f"at .text+{start:#x}",
    )
    assert msg.startswith("site is 1 byte into")
    assert res.insn_addr == start and res.mnemonic == "mov"


def test_site_on_opcode(enc: Obj) -> None:
    sec, start = enc.func("case_rip_load")
    res = one(sec, RelocSite(start, PC32, -4, "var"))
    assert_problem(res, "byte 0 of 'mov rax, qword ptr [rip]'", "disp at +3 (4 bytes)")


def test_r64_on_disp32(enc: Obj) -> None:
    sec, _ = enc.func("case_rip_load")
    good = sec.sites_in("case_rip_load")[0]
    res = one(sec, good._replace(r_type=R64))
    assert_problem(
        res, "R_X86_64_64 writes 8 bytes", "displacement of 'mov rax, qword ptr [rip]'", "4 bytes wide"
    )


def test_pc32_on_imm8(enc: Obj) -> None:
    sec, start = enc.func("case_rip_cmpl_imm8")
    res = one(sec, RelocSite(start + 6, PC32, -4, "var"))
    assert_problem(
        res,
        "R_X86_64_PC32 writes 4 bytes",
        "immediate of 'cmp dword ptr [rip], 5'",
        "(83 3d 00 00 00 00 05)",
        "1 byte wide",
    )


def test_relocation_inside_nop(broken: Obj) -> None:
    sec, start = broken.func("broken_nop_reloc")
    (site,) = sec.sites_in("broken_nop_reloc")
    res = one(sec, site)
    assert_problem(res, "inside a NOP", "'nop dword ptr [rax]'", "(0f 1f 80 00 00 00 00)", f"+{start:#x}")


def test_addend_for_imm32_forgotten(enc: Obj) -> None:
    """-4 where -8 is right: the target lands 4 bytes into the symbol, past the end of a 4-byte var."""
    sec, _ = enc.func("case_rip_movl_imm32")
    good = sec.sites_in("case_rip_movl_imm32")[0]
    res = one(sec, good._replace(addend=-4, symbol_size=4))
    assert_problem(
        res,
        "addend -4 puts the target at var+0x4, past the end of var (size 0x4)",
        "addend -8 expected for a field 8 bytes before the instruction end",
        "a trailing imm32 follows the field",
        "'mov dword ptr [rip], 0x12345678'",
        "(c7 05 00 00 00 00 78 56 34 12)",
    )
    # without the symbol's size, var+4 could be a struct field: accepted, and logged as such
    lenient = one(sec, good._replace(addend=-4))
    assert lenient.ok and lenient.target_offset == 4
    assert "-> var+0x4" in lenient.log_line(".text")


def test_addend_too_negative(enc: Obj) -> None:
    sec, _ = enc.func("case_rip_cmpl_imm8")
    good = sec.sites_in("case_rip_cmpl_imm8")[0]
    res = one(sec, good._replace(addend=-9))
    assert_problem(
        res,
        "before the symbol",
        "addend -5 expected for a field 5 bytes before the instruction end",
        "a trailing imm8",
        "'cmp dword ptr [rip], 5'",
    )


def test_branch_must_target_symbol(enc: Obj, broken: Obj) -> None:
    sec, _ = broken.func("broken_call_offset")
    (site,) = sec.sites_in("broken_call_offset")
    assert (site.r_type, site.addend) == (PC32, 0xC)
    assert_problem(one(sec, site), "branch target is ext_func+0x10", "addend -4 expected", "(e8 00 00 00 00)")
    sec, _ = enc.func("case_call_plt")
    good = sec.sites_in("case_call_plt")[0]
    assert_problem(one(sec, good._replace(addend=-5)), "ext_func-0x1 (before the symbol)", "'call ")
    # against a section symbol an offset is expected (static functions, cold parts)
    assert one(sec, good._replace(addend=0xC, symbol_is_section=True)).ok


def test_absolute_type_on_rip_relative(enc: Obj) -> None:
    sec, _ = enc.func("case_rip_load")
    good = sec.sites_in("case_rip_load")[0]
    assert_problem(one(sec, good._replace(r_type=R32S)), "absolute R_X86_64_32S on the RIP-relative")
    sec, _ = enc.func("case_call_plt")
    good = sec.sites_in("case_call_plt")[0]
    assert_problem(one(sec, good._replace(r_type=R32)), "relative branch offset", "'call ")


def test_pc_relative_on_absolute_field_is_a_warning(enc: Obj) -> None:
    sec, _ = enc.func("case_sib_abs")
    good = sec.sites_in("case_sib_abs")[0]
    res = one(sec, good._replace(r_type=PC32))
    assert res.ok and res.problem is not None
    assert res.problem.severity is Severity.WARNING
    assert "not RIP-relative" in res.problem.message
    assert text_site_problems(sec.data, sec.name, sec.funcs, [good._replace(r_type=PC32)]) == [res.problem]


def test_undecodable_bytes_stop_the_sweep(broken: Obj) -> None:
    sec, start = broken.func("broken_enqcmds")
    before, after = sec.sites_in("broken_enqcmds")
    res_before, res_after = sec.check([before, after])
    assert res_before.ok  # decoded before the stop: still trustworthy
    msg = assert_problem(res_after, "decode failure", "cannot decode", "(f3 0f 38 f8 07", f"+{start + 7:#x}")
    assert "the site is 6 bytes further on" in msg
    assert res_after.insn_addr is None


def test_instruction_crossing_function_end(broken: Obj) -> None:
    sec, _ = broken.func("broken_short_size")
    first, second = sec.sites_in("broken_short_size")
    res_first, res_second = sec.check([first, second])
    assert res_first.ok
    assert_problem(
        res_second,
        "decode failure",
        "'call ",
        "(e8 00 00 00 00)",
        "runs past the end of the range swept from .text+0x30",
        "the site lies in it",
    )


def test_site_outside_section_and_unknown_type(enc: Obj) -> None:
    sec, _ = enc.func("case_rip_load")
    size = len(sec.data)
    assert_problem(one(sec, RelocSite(size - 2, PC32, -4, "var")), "does not fit in the section")
    assert_problem(one(sec, RelocSite(-1, PC32, -4, "var")), "does not fit")
    assert_problem(one(sec, RelocSite(3, RX86.GOTPCREL, -4, "var")), "R_X86_64_GOTPCREL has no known")
    assert_problem(one(sec, RelocSite(3, 200, -4, "var")), "R_X86_64_<unknown 200>")


def test_truncated_code(enc: Obj) -> None:
    """Code cut short in the middle of an instruction that holds no site must not hide later sites."""
    sec, start = enc.func("case_rip_load")
    code = sec.data[start : start + 7] + bytes.fromhex("48 8b")  # mov, then half an instruction
    results = check_text_sites(code, ".text.t", [], [RelocSite(3, PC32, -4, "var")])
    assert results[0].ok
    # an 11-byte movq $imm32, disp32(%rip) cut after 9 bytes: the site fits, its instruction does not
    cut = b"\x90\x90" + bytes.fromhex("48 c7 05 00 00 00 00 00 00")
    res = check_text_sites(cut, ".text.t", [(0, 0)], [RelocSite(5, PC32, -8, "var")])
    assert_problem(res[0], "decode failure: the section ends 9 bytes into a 11-byte 'mov'", "(48 c7 05")
    # bytes that are no instruction at all: ud2, then ff ff (ff /7 is undefined)
    res = check_text_sites(b"\x0f\x0b\xff\xff\xff\x00\x00\x00\x00", ".t", [], [RelocSite(5, R32S, 0, "x")])
    assert_problem(res[0], "decode failure: capstone cannot decode the bytes (ff ff ff", "at .t+0x2")


# ---------------------------------------------------------------------------------------------------
# API details


def test_results_follow_input_order_and_accept_plain_tuples(enc: Obj) -> None:
    sec = enc.sections[".text"]
    sites = [(s.offset, s.r_type, s.addend, s.symbol) for s in reversed(sec.sites)]
    results = check_text_sites(memoryview(sec.data), ".text", sec.funcs, sites)
    assert [r.offset for r in results] == [s[0] for s in sites]
    # a plain 4-tuple says nothing about section symbols, so the call to the static function
    # (.text.static_fn+0xc) now reads as a branch into the middle of a named symbol
    _, static_call = enc.func("case_call_static")
    bad = [r for r in results if not r.ok]
    assert [r.offset for r in bad] == [static_call + 1]
    assert bad[0].problem is not None
    assert "branch target is .text.static_fn+0x10" in bad[0].problem.message


def test_log_line(enc: Obj) -> None:
    sec, start = enc.func("case_movq_fn_var")
    disp, imm = sec.check(sec.sites_in("case_movq_fn_var"))
    assert disp.log_line(".text") == (
        f".text+{start + 3:#x} R_X86_64_PC32 var: disp32 of 'mov qword ptr [rip], 0' "
        f"(48 c7 05 00 00 00 00 00 00 00 00) at .text+{start:#x} -> var+0x0"
    )
    assert imm.log_line(".text").startswith(f".text+{start + 7:#x} R_X86_64_32S fn: imm32 of")
    problem = one(sec, RelocSite(start + 4, PC32, -4, "var")).problem
    assert problem is not None
    assert str(problem).startswith(f".text+{start + 4:#x}: error: R_X86_64_PC32 against var: site is 1 byte")


def test_no_sites_needs_no_capstone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "capstone", None)  # makes `import capstone` raise ImportError
    assert check_text_sites(b"\xc3", ".text", [], []) == []
    (skipped,) = check_text_sites(b"\x0f\x1f\x44\x00\x00", ".text", [], [RelocSite(1, RX86.NONE, 0, "f")])
    assert skipped.skipped
    with pytest.raises(CapstoneUnavailable, match="pip install"):
        check_text_sites(b"\xe8\0\0\0\0", ".text", [], [RelocSite(1, PLT32, -4, "f")])


def test_importing_does_not_import_capstone() -> None:
    code = "import sys, klp_ld.arch.x86_64_text; assert 'capstone' not in sys.modules, 'capstone imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------------------
# Kernel-style C: everything gcc emits must pass


@pytest.mark.parametrize("flags", [CFLAGS_612, CFLAGS_61], ids=["6.12-flags", "6.1-flags"])
def test_kernel_style_object(build: Builder, flags: list[str]) -> None:
    obj = build("kernel_style.c", flags)
    text_sites = 0
    fields = set()
    for sec in obj.sections.values():
        if sec.is_text:
            for res in sec.check():
                assert res.ok and res.problem is None, res.problem
                fields.add((res.field, res.width))
                text_sites += 1
        else:
            assert check_data_sites(ARCH, sec.name, len(sec.data), sec.sites) == [], sec.name
    assert text_sites > 30
    assert {("imm", 4), ("disp", 4)} <= fields
    assert "__mcount_loc" in obj.sections


# ---------------------------------------------------------------------------------------------------
# Data sites


def test_data_sites(build: Builder) -> None:
    obj = build("data.s")
    problems = {name: check_data_sites(ARCH, name, len(sec.data), sec.sites)
                for name, sec in obj.sections.items()}
    found = {name: [(p.offset, p.severity) for p in found] for name, found in problems.items()}
    assert found["__jump_table"] == [(0x11, Severity.ERROR)]
    assert found["__ex_table"] == []
    assert found[".altinstructions"] == [(0x17, Severity.ERROR)]  # 0xe and 0x12 are 2-byte aligned: fine
    assert found["__mcount_loc"] == [(0xC, Severity.ERROR)]
    assert found[".data"] == [(9, Severity.WARNING)]
    assert found[".debug_info"] == []
    (jt,) = problems["__jump_table"]
    assert "__jump_table+0x11 is not 4-byte aligned" in jt.message
    assert problems[".data"][0].message.endswith("fine for a packed struct, suspicious otherwise")


def test_data_site_width() -> None:
    problems = check_data_sites(ARCH, "__ex_table", 6, [(4, PC32, 0, "fixup"), (0, RX86.NONE, 0, "x")])
    assert [(p.offset, p.severity) for p in problems] == [(4, Severity.ERROR)]
    assert "does not fit" in problems[0].message
    assert check_data_sites(ARCH, ".rodata", 16, [(8, R64, 0, "p"), (0, PC64, 0, "k")]) == []
    (bad,) = check_data_sites(ARCH, ".rodata", 16, [(0, RX86.GOTPCREL, 0, "g")])
    assert bad.severity is Severity.ERROR


@pytest.mark.parametrize("table", sorted(ALIGNED_TABLES))
def test_every_known_table_is_strict(table: str) -> None:
    (p,) = check_data_sites(ARCH, table, 64, [(3, PC32, 0, "x")])
    assert p.severity is Severity.ERROR and p.section == table


# ---------------------------------------------------------------------------------------------------
# Properties


# Functions whose unrelocated imm32 would be a legal field for a random 4-byte relocation.
_UNRELOCATED_IMM32 = {
    "case_rip_movl_imm32",
    "case_rip_cmpq_imm32",
    "case_rip_imul_imm32",
    "case_gs_rip_imm32",
}
_TYPES = [PC32, PLT32, R32, R32S, R64, PC64]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), r_type=st.sampled_from(_TYPES), addend=st.integers(-16, 16))
def test_random_offsets_are_flagged_unless_a_real_field(
    enc: Obj, data: st.DataObject, r_type: int, addend: int
) -> None:
    sec = enc.sections[".text"]
    excluded: set[int] = set()
    for name in _UNRELOCATED_IMM32:
        start, size = sec.func_at[name]
        excluded.update(range(start, start + size))
    offset = data.draw(st.integers(0, len(sec.data) - 1).filter(lambda o: o not in excluded))
    real = {s.offset: s for s in sec.sites}
    (res,) = sec.check([RelocSite(offset, r_type, addend, "sym")])
    assert res.offset == offset
    assert (res.problem is None) == (res.ok and res.problem is None)
    if offset not in real:
        assert not res.ok, res
        assert res.problem is not None and "\n" not in res.problem.message
    elif res.ok:
        assert RELOC_WIDTH[r_type] == RELOC_WIDTH[RX86(real[offset].r_type)]


@settings(max_examples=200, deadline=None)
@given(
    code=st.binary(min_size=1, max_size=96),
    funcs=st.lists(st.tuples(st.integers(-4, 100), st.integers(0, 40)), max_size=4),
    sites=st.lists(
        st.tuples(
            st.integers(-2, 100),
            st.sampled_from([*_TYPES, RX86.NONE, RX86.GOTPCREL]),
            st.integers(-20, 20),
            st.just("s"),
        ),
        max_size=8,
    ),
)
def test_random_bytes_never_raise(
    code: bytes, funcs: list[tuple[int, int]], sites: list[tuple[int, int, int, str]]
) -> None:
    results = check_text_sites(code, ".text.rand", funcs, sites)
    assert [r.offset for r in results] == [s[0] for s in sites]
    for res in results:
        if not res.ok:
            assert res.problem is not None and "\n" not in res.problem.message
        if res.ok and not res.skipped:
            assert res.width == RELOC_WIDTH[RX86(res.r_type)]
