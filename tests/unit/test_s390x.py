"""s390x: the loader's rules (klp_ld.arch.s390x), the text site checks (klp_ld.arch.s390x_text), the
big-endian ELF reader and writer, annotations and symbol sources in that byte order, and a two-object
livepatch module linked by klp-ld with the cross linker.

The fixtures in testdata/sites-s390x are built at test time with s390x-linux-gnu-gcc, with the code
generation flags kbuild gives a 6.1 s390x module (-fPIC from KBUILD_CFLAGS_MODULE: calls are brasl/jg
through R_390_PLT32DBL, extern objects are read from the GOT with lgrl, R_390_GOTENT). The stand-in
vmlinux is linked from vmlinux.c with the cross ld, and its System.map is what the cross nm says of it.
Without the cross toolchain the tests skip, or fail when CI is set.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klp_ld.annotations import harvest
from klp_ld.arch import for_machine
from klp_ld.arch.arm64 import ARCH as ARM64
from klp_ld.arch.ppc64le import ARCH as PPC
from klp_ld.arch.s390x import ARCH, EM_S390, GOT_TYPES, PLT_TYPES, R390, WIDTHS, klp_type_problem, spell
from klp_ld.arch.s390x_text import check_text_sites
from klp_ld.arch.sites import RelocSite, width_problem
from klp_ld.arch.x86_64 import ARCH as X86
from klp_ld.cmdline import parse
from klp_ld.convert import Conversion
from klp_ld.diag import KlpLdError
from klp_ld.elf.consts import (
    SHF_ALLOC,
    SHF_INFO_LINK,
    SHF_RELA_LIVEPATCH,
    SHN_LIVEPATCH,
    SHT_GROUP,
    SHT_NOBITS,
    SHT_RELA,
    SHT_SYMTAB,
    SHT_SYMTAB_SHNDX,
    STB_LOCAL,
    STT_OBJECT,
)
from klp_ld.elf.headers import read_file_header
from klp_ld.elf.layout import LSB, MSB
from klp_ld.elf.model import ElfObject, Symbol
from klp_ld.elf.model import Section as Section_
from klp_ld.elf.read import _relocatable_size, read_elf, read_elf_file
from klp_ld.elf.write import write_elf
from klp_ld.ksyms.index import SymbolIndex
from klp_ld.ksyms.load import load_source
from klp_ld.ksyms.symtab import parse_vmlinux
from klp_ld.names import VMLINUX, Identity
from klp_ld.validate import check_module, check_sites, check_tables, read_before_klp_enable, reload_caveat

from .conftest import _need, run_klp_ld
from .cross import Cross, Obj, case_check, error_of, one, warning_of
from .cross import load as load_with

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "testdata" / "sites-s390x"
CROSS = "s390x-linux-gnu-"
# What kbuild passes s390x-linux-gnu-gcc for a module of a 6.1 s390x kernel (the top Makefile's and
# arch/s390/Makefile's KBUILD_CFLAGS, and KBUILD_CFLAGS_MODULE, the code-generation part): of -fPIE,
# -fno-PIE and -fPIC the module's -fPIC comes last and wins; ftrace leaves a nop (`brcl 0`, shown as
# jgnop) at each function's entry.
MODULE_CFLAGS = [
    "-m64", "-fPIE", "-mpacked-stack", "-mbackchain", "-msoft-float", "-march=z196", "-mtune=z196",
    "-fno-asynchronous-unwind-tables", "-O2", "-fno-strict-aliasing", "-fno-common", "-fno-PIE",
    "-fno-stack-protector", "-pg", "-mrecord-mcount", "-mnop-mcount", "-mfentry", "-DMODULE", "-fPIC",
    "-nostdinc",
]
PLT32DBL, GOTENT, GOTPLTENT, R64, PC32DBL = R390.PLT32DBL, R390.GOTENT, R390.GOTPLTENT, R390.R64, R390.PC32DBL
SECTION = ".text.sites"
NEEDED = "the s390x fixtures need it: apt-get install binutils-s390x-linux-gnu"


def load(path: Path) -> Obj:
    return load_with(path, check_text_sites)


@pytest.fixture(scope="session")
def cross(tmp_path_factory: pytest.TempPathFactory) -> Cross:
    return Cross("s390x", CROSS, "gcc-s390x-linux-gnu", tmp_path_factory.mktemp("s390x"), FIXTURES,
                 MODULE_CFLAGS)


@pytest.fixture(scope="session")
def sites(cross: Cross) -> Obj:
    return load(cross.build("sites.s"))












# ---------------------------------------------------------------------------------------------------
# The architecture's rules


def test_the_reader_finds_s390x_by_e_machine() -> None:
    assert EM_S390 == 22 and for_machine(22) is ARCH and ARCH.name == "s390x"
    # apply_rela applies R_390_NONE (as a no-op): originals are retyped, as on x86_64; no site must be zero
    assert ARCH.none == int(R390.NONE) == 0 and ARCH.none_applied and not ARCH.zero_sites
    assert ARCH.abs64 == R64 == 22 and (int(PLT32DBL), int(GOTENT), int(PC32DBL)) == (20, 26, 19)
    # every late write goes through s390_kernel_write; nothing checks a site's old bytes
    assert ARCH.plain_store_types == frozenset() and ARCH.rewrite_refused_types == frozenset()
    assert ARCH.counted_in_rela == GOT_TYPES | PLT_TYPES and ARCH.slot_types == GOT_TYPES
    assert GOTENT in ARCH.slot_types and PLT32DBL not in ARCH.slot_types and R64 not in ARCH.slot_types
    assert "check_rela" in ARCH.counted_in_rela_why
    # the field s390x added keeps the other architectures as they were
    for other in (X86, PPC, ARM64):
        assert other.slot_types == frozenset()


def test_names_are_readelfs(cross: Cross, sites: Obj, tmp_path: Path) -> None:
    """spell() agrees with binutils' readelf on every type it names: one relocation of each type,
    written big-endian into the relocation section of an assembled object; and on every relocation
    of the sites fixture."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection

    types = [int(t) for t in R390]
    fields = f"\t.data\nstart:\n\t.rept {len(types)}\n\t.quad 0\n\t.endr\n"
    obj = cross.assemble("all_types", fields + "".join(
        f"\t.reloc start+{8 * i}, R_390_64, ext\n" for i in range(len(types))))
    data = bytearray(obj.read_bytes())
    with obj.open("rb") as fh:
        rela = ELFFile(fh).get_section_by_name(".rela.data")
        assert isinstance(rela, RelocationSection)
        base, count = rela["sh_offset"], rela.num_relocations()
    assert count == len(types)
    entries = sorted(range(count), key=lambda i: int.from_bytes(data[base + 24 * i:base + 24 * i + 8],
                                                                "big"))  # by r_offset
    for r_type, entry in zip(types, entries, strict=True):
        at = base + 24 * entry + 12  # r_info's low word, big-endian: the type
        data[at:at + 4] = r_type.to_bytes(4, "big")
    patched = tmp_path / "patched.o"
    patched.write_bytes(bytes(data))
    out = subprocess.run([cross.readelf, "-rW", str(patched)], capture_output=True, text=True,
                         check=True).stdout
    shown = [line.split()[2] for line in out.splitlines()
             if line[:1] in "0123456789abcdef" and len(line.split()) > 2]
    assert shown == [spell(t) for t in types]
    assert (spell(0), spell(22), spell(66)) == ("R_390_NONE", "R_390_64", "R_390_<unknown 66>")

    fixture = subprocess.run([cross.readelf, "-rW", str(sites.path)], capture_output=True, text=True,
                             check=True).stdout
    listed = {line.split()[2] for line in fixture.splitlines() if " R_390_" in line}
    ours = {spell(s.r_type) for sec in sites.sections.values() for s in sec.sites}
    assert ours == listed and {"R_390_PLT32DBL", "R_390_GOTENT", "R_390_GOTPLTENT", "R_390_64"} <= ours


@pytest.mark.parametrize(("r_type", "code", "fragment"), [
    (PLT32DBL, None, None),
    (GOTENT, None, None),
    (GOTPLTENT, None, None),
    (R64, None, None),
    (R390.PC64, None, None),
    (R390.R32, "reloc-32", "R_390_32 holds a kernel address only when the symbol lies below 4 GiB"),
    (R390.PC32, "reloc-32", "apply_rela's range check refuses the module ('relocation error for symbol')"),
    (PC32DBL, "reloc-32", "reach it through the GOT (lgrl of sym@GOTENT"),
    (R390.R16, "reloc-16", "R_390_16 is too narrow for a kernel address"),
    (R390.R8, "reloc-16", "R_390_8 is too narrow"),
    (R390.R12, "reloc-16", "R_390_12 is too narrow"),
    (R390.R20, "reloc-16", "R_390_20 is too narrow"),
    (R390.PC16, "reloc-16", "R_390_PC16 is too narrow"),
    (R390.PC16DBL, "reloc-16", "R_390_PC16DBL is too narrow"),
    (R390.PLT16DBL, "reloc-16", "a PLT16DBL branch reaches the module's own PLT only within 64 KiB"),
    (R390.GOT12, "reloc-type", "R_390_GOT12 is an offset within, or from, the module's GOT or PLT"),
    (R390.GOT64, "reloc-type", "a GOT pointer kernel modules do not set up"),
    (R390.PLT32, "reloc-type", "R_390_PLT32 stores the distance from the site to the symbol's PLT entry"),
    (R390.PLT64, "reloc-type", "(always the entry, never the symbol)"),
    (R390.PLTOFF64, "reloc-type", "R_390_PLTOFF64 is an offset"),
    (R390.GOTOFF64, "reloc-type", "R_390_GOTOFF64 is an offset"),
    (R390.GOTPCDBL, "reloc-type", "R_390_GOTPCDBL is an offset"),
    (R390.GOTPLT20, "reloc-type", "R_390_GOTPLT20 is an offset"),
    (R390.TLS_GDCALL, "reloc-type", "R_390_TLS_GDCALL cannot be a livepatch relocation (apply_rela: "
                                    "'unknown relocation')"),
    (R390.PC12DBL, "reloc-type", "R_390_PC12DBL cannot be a livepatch relocation (apply_rela: 'unknown "
                                 "relocation')"),
    (66, "reloc-type", "R_390_<unknown 66> cannot be a livepatch relocation (apply_rela: 'unknown "
                       "relocation'): it can be R_390_PLT32DBL"),
    (0x1234, "reloc-type", "R_390_<unknown 4660> cannot be a livepatch relocation"),
    (R390.NONE, "reloc-type", "R_390_NONE cannot be a livepatch relocation"),
    (R390.COPY, "reloc-type", "R_390_COPY cannot be a livepatch relocation"),
])
def test_which_types_a_livepatch_relocation_can_be(r_type: int, code: str | None,
                                                   fragment: str | None) -> None:
    problem = klp_type_problem(r_type)
    if code is None or fragment is None:
        assert problem is None
    else:
        assert problem is not None and problem[0] == code and fragment in problem[1], problem
        assert "\n" not in problem[1]


@pytest.mark.parametrize("r_type", [R390.NONE, R390.COPY, R390.GLOB_DAT, R390.JMP_SLOT, R390.RELATIVE])
def test_types_apply_rela_knows_are_not_called_unknown(r_type: int) -> None:
    problem = klp_type_problem(r_type)
    assert problem is not None and "'unknown relocation'" not in problem[1]


def test_a_type_the_loader_does_not_apply_has_no_width() -> None:
    message = width_problem(ARCH, RelocSite(0, R390.PC24DBL, 0, "x"), 16)
    assert message == ("R_390_PC24DBL has no known field width here: the kernel's s390x apply_relocate_add "
                       f"does not apply it (it applies {len(WIDTHS)} other types and NONE)")
    assert len(WIDTHS) == 35 and R390.NONE not in WIDTHS
    assert width_problem(ARCH, RelocSite(6, GOTENT, 2, "x"), 10) is None
    assert "does not fit in the section" in (width_problem(ARCH, RelocSite(8, GOTENT, 2, "x"), 10) or "")


def test_init_sections_are_freed_and_a_reloaded_module_is_relocated_again() -> None:
    """The generic module_init_section holds on s390; apply_rela never looks at a site's old bytes, so
    6.1 relocates a reloaded module's sites again (the GOT slot is another matter: see the stale-slot
    warning below)."""
    freed = read_before_klp_enable(".init.text", ARCH)
    assert freed is not None and "freed memory" in freed
    ident = Identity("dummy", "dummy", "f", 0)
    convs = [Conversion(".text", 0x20, r_type, 2, ident, ident.link_name, ident.rela_section(".text"))
             for r_type in (PLT32DBL, GOTENT)]
    assert reload_caveat("6.1.0-50-s390x", convs, "m.ko", ARCH) == []
    assert len(reload_caveat("6.1.0-50-amd64", convs, "m.ko", X86)) == 1


# ---------------------------------------------------------------------------------------------------
# Text sites


def test_what_gcc_emits_passes(sites: Obj) -> None:
    call, jump = case_check(sites, "call_ok")
    for check, mnemonic in ((call, "brasl"), (jump, "jg")):
        assert (check.ok, check.problem, check.skipped) == (True, None, False)
        assert (check.field, check.width, check.mnemonic, check.target_offset) == ("rel", 4, mnemonic, 0)
        assert check.insn_addr == check.offset - 2 and len(check.insn_bytes) == 6
    assert call.r_type == jump.r_type == PLT32DBL
    assert jump.insn_bytes[:2] == b"\xc0\xf4"  # jg is brcl with mask 15
    line = call.log_line(SECTION)
    assert line.startswith(".text.sites+0x8 R_390_PLT32DBL ext: rel32 of 'brasl")
    assert line.endswith(" of 'brasl %r14, 6' (c0 e5 00 00 00 00) at .text.sites+0x6 -> ext+0x0")
    got = case_check(sites, "got_ok")
    assert [(c.ok, c.problem, c.mnemonic, c.type_name, c.field, c.target_offset) for c in got] == [
        (True, None, "lgrl", "R_390_GOTENT", "rel", 0), (True, None, "larl", "R_390_GOTENT", "rel", 0),
        (True, None, "lgrl", "R_390_GOTPLTENT", "rel", 0)]


def test_a_call_after_padding_in_its_function_passes(sites: Obj) -> None:
    """Stepping from the function's start goes through the 2-byte nopr padding before the call."""
    sec = sites.case("padded_call")
    start, _size = sec.func_at["padded_call"]
    assert sec.data[start + 4:start + 16] == b"\x07\x07" * 6
    (call,) = case_check(sites, "padded_call")
    assert call.ok and call.problem is None and call.mnemonic == "brasl" and call.insn_addr == start + 16


def test_code_no_function_covers_is_stepped_from_the_end_of_the_one_before(sites: Obj) -> None:
    """before_gap ends, gas pads with nopr to 32 bytes, then code without a symbol: its sites are
    found by stepping from before_gap's end, through the padding."""
    sec = sites.case("before_gap")
    start, size = sec.func_at["before_gap"]
    uncovered = [s for s in sec.sites
                 if not any(b <= s.offset < b + n for b, n in sec.func_at.values())]
    code = [s for s in uncovered if s.r_type == PLT32DBL]
    assert len(code) == 2 and all(s.offset > start + size for s in code)
    lay = code[0].offset - 8
    assert sec.data[start + size:lay] == b"\x07\x07" * ((lay - start - size) // 2) != b""
    call, jump = sec.check(code)
    assert (call.ok, call.problem, call.mnemonic, call.insn_addr) == (True, None, "brasl", code[0].offset - 2)
    assert (jump.ok, jump.problem, jump.mnemonic, jump.insn_addr) == (True, None, "jg", code[1].offset - 2)
    # Where stepping starts matters: from a made-up function that starts 2 bytes into the lay (whose
    # next bytes, ff f8, read as a 6-byte instruction), the step lands on the call's zero field.
    (wrong,) = check_text_sites(sec.data, SECTION, [(lay + 2, 0x20)], [code[0]])
    error_of(wrong, f"capstone cannot decode the 2-byte instruction (00 00) at {SECTION}+{code[0].offset:#x}")


@pytest.mark.parametrize(("case", "index", "fragments"), [
    ("plt_wrong", 0, ["R_390_PLT32DBL on 'lgrl %r1, 0x48' (c4 18 00 00 00 00) at .text.sites+0x48, which is "
                      "not a call or jump (brasl, or brcl with a nonzero mask)", "PLT entry"]),
    ("plt_wrong", 1, ["R_390_PLT32DBL on 'brcl 0, 0x4e' (c0 04 00 00 00 00) at .text.sites+0x4e, which is "
                      "not a call or jump"]),
    ("plt_wrong", 2, ["odd addend 3 on 'brasl %r14, 0x54'", "the field counts halfwords",
                      "apply_rela refuses an odd value ('relocation error for symbol')"]),
    ("plt_wrong", 3, ["addend 10 on 'brasl %r14, 0x5a'", "to ext's PLT entry+0x8", "addend 2 expected"]),
    ("got_wrong", 0, ["R_390_GOTENT on 'brasl %r14, 0x68'", "addresses ext's GOT slot, a 64-bit address "
                      "that only lgrl loads (or larl addresses)"]),
    ("got_wrong", 1, ["R_390_GOTENT on 'lrl %r1, 0x6e' (c4 1d 00 00 00 00)", "only lgrl loads"]),
    ("got_wrong", 2, ["addend 10 on 'lgrl %r1, 0x74'", "reaches ext's GOT slot+0x8, not the slot that holds "
                      "its address; addend 2 expected"]),
    ("not_ril", 0, ["site is 2 byte(s) into 'lay %r15, -0x18(%r15)' (e3 f0 ff e8 ff 71) at "
                    ".text.sites+0x80, which has no 32-bit relative operand",
                    "writes the I2 field of a RIL instruction"]),
    ("not_ril", 1, ["site is 2 byte(s) into 'lgfi %r1, 0' (c0 11 00 00 00 00)",
                    "which has no 32-bit relative operand: R_390_GOTENT"]),
    ("not_ril", 2, ["site is 2 byte(s) into 'lgr %r1, %r2' (b9 04 00 12) at .text.sites+0x8c, which has "
                    "no 32-bit relative operand"]),
    ("undecodable", 0, ["decode failure: capstone cannot decode the 6-byte instruction (c4 00 00 00 00 00) "
                        "at .text.sites+0x98 that holds the site; the site cannot be verified"]),
    ("abs64_over_code", 0, ["R_390_64 stores a whole 8-byte value at .text.sites+0xa0, over the "
                            "instruction(s) 'lgr %r1, %r2' (b9 04 00 12) at .text.sites+0xa0",
                            "only a data word between functions"]),
])
def test_bad_sites_are_errors(sites: Obj, case: str, index: int, fragments: list[str]) -> None:
    error_of(case_check(sites, case)[index], *fragments)


def test_a_site_must_be_the_i2_field_two_bytes_in(sites: Obj) -> None:
    """r_offset is the instruction's address + 2: a site at the instruction itself, or 4 bytes in, is
    not where apply_rela's field is."""
    sec = sites.case("call_ok")
    call = sec.sites_in("call_ok")[0]
    at = call.offset - 2
    late = one(sec, call._replace(offset=at + 4))
    error_of(late, "site is 4 byte(s) into 'brasl %r14, 6' (c0 e5 00 00 00 00) at .text.sites+0x6",
             "starts 2 bytes into the instruction (r_offset = address + 2)")
    early = one(sec, call._replace(offset=at))
    error_of(early, "site is 0 byte(s) into 'brasl %r14, 6'")
    got = sites.case("got_ok").sites_in("got_ok")[0]
    error_of(one(sites.case("got_ok"), got._replace(offset=got.offset + 2)), "site is 4 byte(s) into 'lgrl")


def test_a_data_word_in_code_is_a_warning(sites: Obj) -> None:
    sec = sites.case("abs64_over_code")
    (word,) = [s for s in sec.sites if s.r_type == R64
               and not any(b <= s.offset < b + n for b, n in sec.func_at.values())]
    assert sec.data[word.offset:word.offset + 8] == bytes(8)
    warning_of(one(sec, word), "R_390_64 writes 8 bytes of data inside code (.text.sites+0xb0)",
               "no instruction to check them against")
    # one halfword on, the word runs over the lgr that opens before_gap: an error
    error_of(one(sec, word._replace(offset=word.offset + 2)), "R_390_64 stores a whole 8-byte value at "
             ".text.sites+0xb2, over bytes capstone cannot decode")


def test_undecodable_bytes_are_never_skipped_and_none_is(sites: Obj) -> None:
    sec = sites.case("undecodable")
    start, _size = sec.func_at["undecodable"]
    bad, none, past, unknown = sec.check([RelocSite(start + 2, GOTENT, 2, "ext"),
                                          RelocSite(start + 2, R390.NONE, 0, ""),
                                          RelocSite(len(sec.data) - 2, PLT32DBL, 2, "ext"),
                                          RelocSite(start + 2, R390.PC24DBL, 2, "ext")])
    error_of(bad, "decode failure: capstone cannot decode the 6-byte instruction (c4 00 00 00 00 00)")
    assert none.ok and none.skipped and none.problem is None
    assert none.log_line(SECTION) == f"{SECTION}+{start + 2:#x} R_390_NONE: skipped (no field to patch)"
    error_of(past, f"field at {len(sec.data) - 2:#x} does not fit in the section (size {len(sec.data):#x})")
    error_of(unknown, "R_390_PC24DBL has no known field width here")


def test_stepping_past_the_end_of_the_code_is_an_error() -> None:
    """A 6-byte instruction cut short by the end of the section: no instruction holds the site."""
    code = b"\x07\x07\xc0\xe5\x00\x00\x00"
    (check,) = check_text_sites(code, ".text", [], [RelocSite(3, PLT32DBL, 2, "ext")])
    error_of(check, "no instruction holds .text+0x3: stepping from .text+0x0 runs past the end of the code")
    # the same bytes with the instruction whole: stepping from 0 (no FUNC symbol) finds it
    (whole,) = check_text_sites(bytearray(code + b"\x00"), ".text", [], [RelocSite(4, PLT32DBL, 2, "ext")])
    assert whole.ok and whole.problem is None and (whole.mnemonic, whole.insn_addr) == ("brasl", 2)


def test_what_gcc_emits_for_extern_calls_and_data(cross: Cross) -> None:
    """gcc 12 with the module flags: brasl (a tail call: jg) to the function with PLT32DBL+2; lgrl of the
    object's GOT slot with GOTENT+2; the pointer in .data.rel is an R_390_64. All pass. The nop ftrace
    patches (`brcl 0`) opens each function."""
    a, b = load(cross.build("lp_a.c")), load(cross.build("lp_b.c"))
    for obj, mnemonic in ((a, "brasl"), (b, "jg")):
        text = obj.sections[".text"]
        calls = [s for s in text.sites if s.symbol == "state_show"]
        assert [(s.r_type, s.addend) for s in calls] == [(PLT32DBL, 2)]
        assert [(c.ok, c.problem, c.mnemonic, c.target_offset) for c in text.check(calls)] == [
            (True, None, mnemonic, 0)]
        assert all(text.data[start:start + 2] == b"\xc0\x04" for start, _ in text.func_at.values())
    text = a.sections[".text"]
    data = [s for s in text.sites if s.symbol in ("saved_count", "jiffies")]
    assert {(s.symbol, s.r_type, s.addend) for s in data} == {("saved_count", GOTENT, 2),
                                                              ("jiffies", GOTENT, 2)}
    assert [(c.ok, c.mnemonic) for c in text.check(data)] == [(True, "lgrl")] * 2
    assert [(s.symbol, s.r_type, s.addend) for s in a.sections[".data.rel"].sites] == [("state_show", R64, 0)]


# ---------------------------------------------------------------------------------------------------
# Big-endian ELF: read, written back, and read as pyelftools reads it


@pytest.fixture(scope="session")
def comdat(cross: Cross) -> Path:
    """A COMDAT group (SHT_GROUP: an array of big-endian words) with relocations in its members."""
    return cross.assemble("comdat", '\t.section .text.f1,"axG",@progbits,f1,comdat\n\t.globl f1\n'
                          "\t.type f1,@function\nf1:\tbrasl %r14,ext@PLT\n\tbr %r14\n\t.size f1,.-f1\n"
                          '\t.section .data.g,"awG",@progbits,f1,comdat\n\t.quad ext\n')


@pytest.fixture(scope="session")
def compressed(cross: Cross) -> Path:
    """gcc -gz: SHF_COMPRESSED .debug_* sections, each opened by a big-endian Elf64_Chdr."""
    return cross.build("lp_a.c", ["-g", "-gz=zlib"], "lp_a-gz.o")


@pytest.mark.parametrize("source", ["lp_a.c", "lp_b.c", "lp_mod.c", "modinfo.c", "sites.s", "-g", "-gz",
                                    "comdat"])
def test_unchanged_objects_round_trip_byte_for_byte(cross: Cross, comdat: Path, compressed: Path,
                                                    source: str) -> None:
    if source == "comdat":
        path = comdat
    elif source == "-gz":
        path = compressed
    elif source == "-g":
        path = cross.build("lp_bad.c", ["-g"], "lp_bad-g.o")
    else:
        path = cross.build(source)
    data = path.read_bytes()
    assert data[5] == 2  # ELFDATA2MSB
    model = read_elf(data, str(path))
    assert model.layout is MSB and model.e_machine == EM_S390
    assert write_elf(model) == data
    if source == "comdat":
        (group,) = [s for s in model.sections if s.type == SHT_GROUP]
        assert [m.name for m in group.members] == [".text.f1", ".rela.text.f1", ".data.g", ".rela.data.g"]
    if source == "-gz":
        # relocations reach into the uncompressed bytes, as far as the big-endian Elf64_Chdr says
        from elftools.elf.elffile import ELFFile

        with path.open("rb") as fh:
            sizes = {s.name: len(s.data()) for s in ELFFile(fh).iter_sections() if s["sh_flags"] & 0x800}
        assert sizes, "gcc did not compress the debug sections"
        for sec in model.sections:
            if sec.name in sizes:
                assert _relocatable_size(sec, model.layout) == sizes[sec.name] > sec.size


@pytest.fixture(scope="session")
def many_sections(cross: Cross) -> Path:
    """70,000 sections: the extended numbering, with a big-endian SHT_SYMTAB_SHNDX table."""
    lines = [f'\t.section .s{i},"a",@progbits\n\t.byte {i % 256}\n' for i in range(70_000)]
    lines.append('\t.section .s69990,"a",@progbits\n\t.globl hi_sym\nhi_sym:\n\t.quad some_extern\n'
                 "local_hi:\n\t.quad local_hi\n")
    lines.append("\t.text\n\t.globl big_fn\nbig_fn:\n\tbrasl %r14,hi_sym@PLT\n\tbr %r14\n")
    return cross.assemble("many", "".join(lines))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8),
       st.booleans())
def test_damaged_big_endian_objects_raise_only_klp_errors(cross: Cross, changes: list[tuple[int, int]],
                                                          in_header: bool) -> None:
    """Bytes changed anywhere in a big-endian object (or in its ELF header): the reader, the annotation
    harvest and the writer either work or say one KlpLdError, never another exception."""
    data = bytearray(cross.build("lp_a.c").read_bytes())
    for at, value in changes:
        data[at % (64 if in_header else len(data))] = value
    try:
        write_elf(read_elf(bytes(data), "lp_a.o"))
        harvest(read_elf(bytes(data), "lp_a.o"))
    except KlpLdError:
        pass


def test_extended_numbering_round_trips_byte_for_byte(many_sections: Path) -> None:
    data = many_sections.read_bytes()
    assert struct.unpack_from(">H", data, 0x3C)[0] == 0  # e_shnum: the count is in section 0
    model = read_elf(data, "many.o")
    assert len(model.sections) > 70_000
    assert [s.name for s in model.sections if s.type == SHT_SYMTAB_SHNDX] == [".symtab_shndx"]
    syms = {s.name: s for s in model.symbols if s.name}
    for name in ("hi_sym", "local_hi"):
        found = syms[name].section
        assert found is not None and found.name == ".s69990"
    assert write_elf(model) == data


# (symbols, relocations, section contents) of an object, as one reader sees them
View = tuple[list[tuple[object, ...]], list[tuple[object, ...]], dict[str, bytes]]
_BINDS = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK"}
_TYPES = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE"}


def _pyelftools_view(path: Path) -> View:
    """Symbols, relocations and section contents of `path` as pyelftools reads them."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    special = {"SHN_UNDEF": 0, "SHN_ABS": 0xFFF1, "SHN_COMMON": 0xFFF2}
    skipped = ("SHT_NULL", "SHT_NOBITS", "SHT_SYMTAB", "SHT_RELA", "SHT_GROUP", "SHT_SYMTAB_SHNDX")
    with path.open("rb") as fh:
        elf = ELFFile(fh)
        assert not elf.little_endian
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        symbols: list[tuple[object, ...]] = [
            (s.name, s["st_value"], s["st_size"], s["st_info"]["bind"], s["st_info"]["type"],
             special.get(s["st_shndx"], s["st_shndx"])) for s in symtab.iter_symbols()]
        relocs: list[tuple[object, ...]] = [
            (elf.get_section(rel["sh_info"]).name, r["r_offset"], r["r_info_type"],
             symbols[r["r_info_sym"]][0], r["r_addend"])
            for rel in elf.iter_sections() if isinstance(rel, RelocationSection)
            for r in rel.iter_relocations()]
        contents = {s.name: s.data() for s in elf.iter_sections()
                    if s["sh_type"] not in skipped and not s["sh_flags"] & 0x800}  # SHF_COMPRESSED
    return symbols, relocs, contents


def _klp_ld_view(obj: ElfObject) -> View:
    """The same, as klp-ld's reader has them."""
    symbols: list[tuple[object, ...]] = [
        (s.name, s.value, s.size, _BINDS[s.bind], _TYPES[s.type],
         obj.sections.index(s.section) if s.section is not None else s.special) for s in obj.symbols]
    relocs: list[tuple[object, ...]] = [
        (sec.info_section.name if sec.info_section else "", r.offset, r.type,
         r.symbol.name if r.symbol is not None else "", r.addend)
        for sec in obj.sections if sec.type == SHT_RELA for r in sec.relocs]
    contents = {s.name: s.data for s in obj.sections[1:]
                if s.type not in (SHT_NOBITS, SHT_SYMTAB, SHT_RELA, SHT_GROUP, SHT_SYMTAB_SHNDX)
                and not s.flags & 0x800}
    return symbols, relocs, contents


@pytest.mark.parametrize("source", ["lp_a.c", "sites.s"])
def test_the_reader_reads_what_pyelftools_reads(cross: Cross, source: str) -> None:
    path = cross.build(source)
    ours, theirs = _klp_ld_view(read_elf_file(str(path))), _pyelftools_view(path)
    assert ours == theirs
    if source == "lp_a.c":
        assert ("state_show", 0, 0, "STB_GLOBAL", "STT_NOTYPE", 0) in ours[0]
        assert (".text", 0x1E, PLT32DBL, "state_show", 2) in ours[1]  # lp_a_call's brasl, at 0x1c
        assert (".data.rel", 0, R64, "state_show", 0) in ours[1]


def test_the_reader_reads_a_linked_module_as_pyelftools_does(module_ko: Path) -> None:
    """The partial link's output and the final module, as ld wrote them and klp-ld converted them."""
    for path in (module_ko.with_name("m.o"), module_ko):
        data = path.read_bytes()
        assert write_elf(read_elf(data, str(path))) == data
    ours, theirs = _klp_ld_view(read_elf_file(str(module_ko))), _pyelftools_view(module_ko)
    assert ours == theirs
    assert (".klp.sym.vmlinux.state_show,2", 0, 0, "STB_GLOBAL", "STT_NOTYPE", SHN_LIVEPATCH) in ours[0]
    assert (".text", 0x1E, PLT32DBL, ".klp.sym.vmlinux.state_show,1", 2) in ours[1]


def test_a_changed_object_is_written_big_endian(cross: Cross, tmp_path: Path) -> None:
    """What the writer regenerates (symbols moved by a new local, relocations renumbered, an addend)
    comes out in the file's byte order: pyelftools and the cross ld read it back."""
    model = read_elf_file(str(cross.build("lp_a.c")))
    text = next(s for s in model.sections if s.name == ".text")
    model.symbols.append(Symbol("added_local", value=4, bind=STB_LOCAL, type=STT_OBJECT, section=text))
    rela = next(r for _s, r in model.relocs_against() if r.type == GOTENT)
    rela.addend = -0x80000000
    out = tmp_path / "changed.o"
    out.write_bytes(write_elf(model))
    symbols, relocs, _ = _pyelftools_view(out)
    assert ("added_local", 4, 0, "STB_LOCAL", "STT_OBJECT", model.sections.index(text)) in symbols
    assert (".text", rela.offset, GOTENT, rela.symbol.name if rela.symbol else "", -0x80000000) in relocs
    assert _klp_ld_view(read_elf_file(str(out)))[:2] == (symbols, relocs)
    subprocess.run([cross.ld, "-m", "elf64_s390", "-r", "-o", str(tmp_path / "linked.o"), str(out)],
                   check=True)


def test_the_file_header_of_a_big_endian_file(cross: Cross) -> None:
    data = cross.build("lp_b.c").read_bytes()
    ehdr = read_file_header(data, "lp_b.o")
    assert ehdr.layout is MSB and MSB.byteorder == "big" and ehdr.e_ident[5] == 2
    assert (ehdr.e_type, ehdr.e_machine, ehdr.e_version, ehdr.e_ehsize, ehdr.e_shentsize) == \
        (1, 22, 1, 64, 64)
    assert ehdr.e_shoff == int.from_bytes(data[0x28:0x30], "big") and 0 < ehdr.e_shoff < len(data)
    # read little-endian, the same bytes are nonsense: the byte order is taken from e_ident
    assert LSB.ehdr.unpack_from(data)[2] == 22 << 8


@pytest.mark.parametrize("reader", ["read_elf", "read_file_header", "parse_vmlinux", "link", "check"])
def test_an_unknown_byte_order_is_one_clear_error(cross: Cross, tmp_path: Path, reader: str) -> None:
    """EI_DATA 3 (neither ELFDATA2LSB nor ELFDATA2MSB): one error line, never a traceback."""
    data = bytearray(cross.build("lp_b.c").read_bytes())
    data[5] = 3
    odd = tmp_path / "odd.o"
    odd.write_bytes(bytes(data))
    expected = "not a 64-bit ELF file of a known byte order"
    if reader in ("link", "check"):
        args = ["-m", "elf64_s390", "-r", "-o", "m.o", str(odd)] if reader == "link" else ["check", str(odd)]
        done = run_klp_ld(args, tmp_path, {"CROSS_COMPILE": CROSS})
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.splitlines() == [f"klp-ld: error: {odd}: {expected}"]
        assert not (tmp_path / "m.o").exists()
        return
    call: Callable[[bytes, str], object] = {"read_elf": read_elf, "read_file_header": read_file_header,
                                            "parse_vmlinux": parse_vmlinux}[reader]
    with pytest.raises(KlpLdError) as caught:
        call(bytes(data), "odd.o")
    (diag,) = caught.value.diagnostics
    assert diag.obj == "odd.o" and diag.message == expected and "\n" not in diag.render()


# ---------------------------------------------------------------------------------------------------
# Annotations and symbol sources in big-endian


def test_klp_convert_records_are_read_big_endian(cross: Cross) -> None:
    """struct klp_module_reloc's u32 sympos is big-endian here: position 2, not 2 << 24."""
    obj = read_elf_file(str(cross.build("lp_b.c")))
    sec = obj.section(".klp.module_relocs.vmlinux")
    assert sec is not None and sec.data[8:12] == b"\0\0\0\2"
    assert LSB.klp_module_reloc.unpack_from(sec.data)[1] == 2 << 24
    found = harvest(obj)
    assert found.problems == ()
    assert [(a.symbol, a.identity, a.dialect) for a in found.annotations] == [
        ("state_show", Identity("vmlinux", "vmlinux", "state_show", 2), "klp-convert")]
    module = harvest(read_elf_file(str(cross.build("lp_mod.c"))))
    assert module.problems == ()
    assert {(a.symbol, a.identity.rela_obj, a.identity.sympos) for a in module.annotations} == {
        ("dummy_fn", "dummy", 0), ("dummy_state", "dummy", 0)}


@pytest.fixture(scope="session")
def kernel_symbols(cross: Cross) -> tuple[Path, Path]:
    """(vmlinux, System.map): the stand-in vmlinux, a big-endian ET_EXEC, and `nm -n` of it."""
    parts = [cross.build("vmlinux.c", [f"-DPART={n}"], f"vmlinux{n}.o") for n in (1, 2)]
    vmlinux = cross.directory / "vmlinux"
    system_map = cross.directory / "System.map"
    subprocess.run([cross.ld, "-m", "elf64_s390", "-Ttext=0x100000", "-e", "0x100000", "--build-id=none",
                    "-o", str(vmlinux), *map(str, parts)], check=True)
    nm = _need(CROSS + "nm", NEEDED)
    system_map.write_text(subprocess.run([nm, "-n", str(vmlinux)], capture_output=True, text=True,
                                         check=True).stdout)
    return vmlinux, system_map


def test_a_big_endian_vmlinux_counts_as_its_system_map(kernel_symbols: tuple[Path, Path]) -> None:
    vmlinux, system_map = kernel_symbols
    assert vmlinux.read_bytes()[5] == 2 and read_file_header(vmlinux.read_bytes(), "vmlinux").e_type == 2
    by_elf = SymbolIndex.from_sources([load_source(str(vmlinux))])
    by_map = SymbolIndex.from_sources([load_source(str(system_map))])
    copies = [(c.address, c.type) for c in by_elf.candidates(VMLINUX, "state_show")]
    first, second = (address for address, _type in copies)
    assert first is not None and second is not None and 0x100000 < first < second < 0x200000
    assert copies == [(c.address, c.type) for c in by_map.candidates(VMLINUX, "state_show")]
    assert [c.file for c in by_elf.candidates(VMLINUX, "state_show")] == ["vmlinux.c", "vmlinux.c"]
    for name in ("saved_count", "jiffies", "_stext"):
        assert [c.address for c in by_elf.candidates(VMLINUX, name)] == \
            [c.address for c in by_map.candidates(VMLINUX, name)] != []


# ---------------------------------------------------------------------------------------------------
# A module linked by klp-ld with the cross linker


# KBUILD_LDFLAGS of a 6.1 s390x kernel (arch/s390/Makefile: -m elf64_s390) and the top Makefile's
# -z noexecstack and --no-warn-rwx-segments; the final link adds KBUILD_LDFLAGS_MODULE (--build-id=sha1).
LDFLAGS = ["-m", "elf64_s390", "-z", "noexecstack", "--no-warn-rwx-segments"]


def _sources(tmp_path: Path, symbols: Path | None) -> tuple[list[str], dict[str, str]]:
    """klp-ld's options naming the kernel's symbols and exports, and the environment of a link."""
    env = {"CROSS_COMPILE": CROSS, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if symbols is None:
        return [], env
    return [f"--klp-symbols={symbols}", f"--klp-symvers={FIXTURES / 'Module.symvers'}"], env


def _link(tmp_path: Path, cross: Cross, partial: list[Path], symbols: Path | None = None,
          flags: list[str] = LDFLAGS, final_extra: list[str] | None = None) -> tuple[int, str]:
    """kbuild's two links with klp-ld as $(LD) and CROSS_COMPILE naming the real one; (status, stderr)
    of the final link."""
    sources, env = _sources(tmp_path, symbols)
    result = run_klp_ld([*sources, *flags, "-r", "-o", "m.o", *map(str, partial)], tmp_path, env)
    assert result.returncode == 0, result.stderr
    shutil.copy(FIXTURES / "module.lds", tmp_path / "module.lds")
    final = run_klp_ld([*sources, "-r", *flags, *(final_extra or []), "--build-id=sha1", "-T", "module.lds",
                        "-o", "m.ko", "m.o", str(cross.build("modinfo.c"))], tmp_path, env)
    return final.returncode, final.stderr


def _klp_entries(ko: ElfObject) -> dict[str, list[tuple[int, str, str, int]]]:
    return {s.name: [(r.offset, spell(r.type), r.symbol.name if r.symbol else "", r.addend) for r in s.relocs]
            for s in ko.sections if s.name.startswith(".klp.rela.")}


def _report(path: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads(path.read_text().splitlines()[-1])
    return record


def _codes(record: dict[str, object]) -> list[tuple[str, str]]:
    diagnostics = record["diagnostics"]
    assert isinstance(diagnostics, list)
    return [(d["severity"], d["code"]) for d in diagnostics]


@pytest.fixture
def module_ko(tmp_path: Path, cross: Cross, kernel_symbols: tuple[Path, Path],
              watch_inputs: Callable[..., None]) -> Path:
    objs = [cross.build("lp_a.c"), cross.build("lp_b.c")]
    watch_inputs(*objs)
    status, stderr = _link(tmp_path, cross, objs, kernel_symbols[1])
    assert status == 0 and stderr == "", stderr
    return tmp_path / "m.ko"


def test_two_objects_become_klp_relocations(module_ko: Path) -> None:
    ko = read_elf_file(str(module_ko))
    assert ko.e_machine == EM_S390 and ko.layout is MSB
    entries = _klp_entries(ko)
    assert set(entries) == {".klp.rela.vmlinux..text", ".klp.rela.vmlinux..data.rel"}
    text = sorted((t, s, a) for _o, t, s, a in entries[".klp.rela.vmlinux..text"])
    assert text == [("R_390_GOTENT", ".klp.sym.vmlinux.saved_count,1", 2),
                    ("R_390_PLT32DBL", ".klp.sym.vmlinux.state_show,1", 2),
                    ("R_390_PLT32DBL", ".klp.sym.vmlinux.state_show,2", 2)]
    assert [(t, s, a) for _o, t, s, a in entries[".klp.rela.vmlinux..data.rel"]] == [
        ("R_390_64", ".klp.sym.vmlinux.state_show,1", 0)]
    # each entry is the partial link's relocation of its weak identity, at the same place (the
    # annotation records, which name the identities too, are gone)
    partial = read_elf_file(str(module_ko.with_name("m.o")))
    before = sorted((t.name, r.offset, spell(r.type), r.symbol.name, r.addend)
                    for t, r in partial.relocs_against()
                    if r.symbol is not None and r.symbol.name.startswith(".klp.sym.")
                    and not t.name.startswith(".klp.module_relocs."))
    after = sorted((name.removeprefix(".klp.rela.vmlinux."), *entry) for name, found in entries.items()
                   for entry in found)
    assert before == after and len(after) == 4
    for sec in ko.sections:
        if sec.name.startswith(".klp.rela."):
            assert sec.type == SHT_RELA and sec.flags == SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH
            assert sec.link is ko.symtab and sec.info_section is not None
            assert all(r.symbol is not None and r.symbol.special == SHN_LIVEPATCH == 0xFF20
                       for r in sec.relocs)
    klp_symbols = {s.name: s.special for s in ko.symbols if s.name.startswith(".klp.sym.")}
    assert klp_symbols == {".klp.sym.vmlinux.state_show,1": SHN_LIVEPATCH,
                           ".klp.sym.vmlinux.state_show,2": SHN_LIVEPATCH,
                           ".klp.sym.vmlinux.saved_count,1": SHN_LIVEPATCH}
    # apply_rela applies R_390_NONE: the originals are retyped, against no symbol, as on x86_64
    klp_sites = {(s.info_section.name, r.offset) for s in ko.sections if s.name.startswith(".klp.rela.")
                 and s.info_section is not None for r in s.relocs}
    retyped = {(rsec.info_section.name, r.offset) for rsec in ko.rela_sections()
               if not rsec.name.startswith(".klp.rela.") and rsec.info_section is not None
               for r in rsec.relocs if r.type == R390.NONE and r.symbol is None}
    assert retyped == klp_sites and len(retyped) == 4
    # jiffies is exported (Module.symvers): an ordinary reference through the module's GOT
    assert any(s.name == "jiffies" and s.is_undefined for s in ko.symbols)
    assert any(r.type == GOTENT and r.symbol is not None and r.symbol.name == "jiffies"
               for _s, r in ko.relocs_against())
    assert not any(s.name.startswith(".klp.module_relocs") for s in ko.sections)
    assert check_tables(ko) == []


def test_the_loader_counts_a_got_slot_or_plt_entry_for_each_klp_site(module_ko: Path) -> None:
    """module_frob_arch_sections -> check_rela reads every SHT_RELA section, `.klp.rela.*` included:
    each klp symbol a GOT or PLT type names gets its slot or entry."""
    ko = read_elf_file(str(module_ko))
    got: set[str] = set()
    plt: set[str] = set()
    for rsec in ko.sections:
        if rsec.type != SHT_RELA:
            continue
        for r in rsec.relocs:
            if r.symbol is not None and r.type in GOT_TYPES:
                got.add(r.symbol.name)
            if r.symbol is not None and r.type in PLT_TYPES:
                plt.add(r.symbol.name)
    assert got == {".klp.sym.vmlinux.saved_count,1", "jiffies"}
    assert plt == {".klp.sym.vmlinux.state_show,1", ".klp.sym.vmlinux.state_show,2"}


def test_every_converted_site_is_checked_with_capstone(module_ko: Path, tmp_path: Path) -> None:
    ko = read_elf_file(str(module_ko))
    conversions = [Conversion(s.info_section.name, r.offset, r.type, r.addend,
                              Identity("vmlinux", "vmlinux", r.symbol.name.split(".")[4].split(",")[0], 0),
                              r.symbol.name, s.name)
                   for s in ko.sections if s.name.startswith(".klp.rela.") and s.info_section is not None
                   for r in s.relocs if r.symbol is not None]
    problems, records = check_sites(ko, conversions)
    assert problems == [] and len(records) == 4 and all(r.ok for r in records)
    text = sorted(r.detail.split(" of '")[1].split(" ")[0] for r in records if r.section == ".text")
    assert text == ["brasl", "jg", "lgrl"]
    done = run_klp_ld(["check", "m.ko"], tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "m.ko: OK", done.stdout + done.stderr
    assert ".klp.sym.vmlinux.state_show,2      1 site(s)  ok" in done.stdout


@pytest.mark.parametrize("source", ["System.map", "vmlinux"])
def test_positions_are_counted_in_the_kernels_symbols(tmp_path: Path, cross: Cross,
                                                      kernel_symbols: tuple[Path, Path], source: str) -> None:
    """Both copies of state_show exist, in either source (the text map, or the big-endian vmlinux)."""
    symbols = kernel_symbols[0] if source == "vmlinux" else kernel_symbols[1]
    sources, env = _sources(tmp_path, symbols)
    objs = [str(cross.build("lp_a.c")), str(cross.build("lp_b.c"))]
    done = run_klp_ld([*sources, "--klp-verbose", *LDFLAGS, "-r", "-o", "m.o", *objs], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert "lp_a.o: .text+0x1e R_390_PLT32DBL state_show+2 -> .klp.sym.vmlinux.state_show,1 (annotated at " \
           ".klp.module_relocs.vmlinux+0x0; 1 of 2 in vmlinux)" in done.stderr
    assert "lp_b.o: .text+0x8 R_390_PLT32DBL state_show+2 -> .klp.sym.vmlinux.state_show,2 (annotated at " \
           ".klp.module_relocs.vmlinux+0x0; 2 of 2 in vmlinux)" in done.stderr
    # a third copy does not exist
    third = cross.assemble("third", '\t.text\n\tbrasl %r14,".klp.sym.vmlinux.state_show,3"@PLT\n'
                           '\t.section .modinfo,"a"\n\t.asciz "livepatch=Y"\n')
    done = run_klp_ld([*sources, *LDFLAGS, "-r", "-o", "t.o", str(third)], tmp_path, env)
    assert done.returncode == 1 and "state_show has 2 copies in vmlinux; position 3 does not exist" in \
        done.stderr, done.stderr
    assert not (tmp_path / "t.o").exists()


def test_a_module_specific_got_slot_warns_and_vmlinux_ones_do_not(tmp_path: Path, cross: Cross) -> None:
    """dummy's symbols: the call (PLT32DBL) and the pointer (R_390_64) are written at each load of dummy;
    the lgrl reads a GOT slot filled once (got_initialized), stale once dummy is loaded again."""
    report = tmp_path / "report.jsonl"
    status, stderr = _link(tmp_path, cross, [cross.build("lp_mod.c")], final_extra=[f"--klp-report={report}"])
    assert status == 0, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("klp-ld: warning: m.ko: lp_mod_read+0x8: "
                                                   ".klp.sym.dummy.dummy_state,0: module-specific "
                                                   "R_390_GOTENT relocation for dummy: "), stderr
    assert "applies .klp.rela.dummy.* again but leaves the slot as it was (got_initialized)" in lines[0]
    assert "R_390_PLT32DBL" not in stderr and "dummy_fn" not in stderr
    assert _codes(_report(report)) == [("warning", "stale-slot")]
    ko = read_elf_file(str(tmp_path / "m.ko"))
    assert {(spell(r.type), r.addend) for s in ko.sections if s.name.startswith(".klp.rela.dummy.")
            for r in s.relocs} == {("R_390_GOTENT", 2), ("R_390_PLT32DBL", 2), ("R_390_64", 0)}
    # warnings made fatal: the same link writes nothing
    (tmp_path / "m.ko").unlink()
    status, stderr = _link(tmp_path, cross, [cross.build("lp_mod.c")], final_extra=["--klp-fatal-warnings"])
    assert status == 1 and "warnings are fatal (--klp-fatal-warnings): nothing was written" in stderr, stderr
    assert not (tmp_path / "m.ko").exists()


def test_a_vmlinux_got_slot_does_not_warn(tmp_path: Path, cross: Cross) -> None:
    """vmlinux is never loaded again: its GOTENT (saved_count) links without a word, warnings fatal."""
    report = tmp_path / "report.jsonl"
    status, stderr = _link(tmp_path, cross, [cross.build("lp_a.c"), cross.build("lp_b.c")],
                           final_extra=["--klp-fatal-warnings", f"--klp-report={report}"])
    assert status == 0 and stderr == "", stderr
    assert _codes(_report(report)) == []
    ko = read_elf_file(str(tmp_path / "m.ko"))
    got = [r.symbol.name for s in ko.sections if s.name.startswith(".klp.rela.vmlinux.")
           for r in s.relocs if r.type == GOTENT and r.symbol is not None]
    assert got == [".klp.sym.vmlinux.saved_count,1"]


def test_a_32_bit_pc_relative_klp_relocation_fails_the_final_link(tmp_path: Path, cross: Cross) -> None:
    """lp_bad.c without -fPIC (and with -g): larl and lgrl of saved_count are R_390_PC32DBL."""
    obj = cross.build("lp_bad.c", ["-fno-PIC", "-g"], "lp_bad-nopic.o")
    assert {(s.symbol, s.r_type) for s in load(obj).sections[".text"].sites} == {("saved_count", PC32DBL)}
    report = tmp_path / "report.jsonl"
    status, stderr = _link(tmp_path, cross, [obj], final_extra=[f"--klp-report={report}"])
    assert status == 1, stderr
    assert not (tmp_path / "m.ko").exists()
    assert _codes(_report(report)) == [("error", "reloc-32"), ("error", "reloc-32")]
    errors = [line for line in stderr.splitlines() if line.startswith("klp-ld: error: ")]
    wanted = ": R_390_PC32DBL reaches a kernel symbol only within 4 GiB of the site"
    assert len(errors) == 2 and all(wanted in e for e in errors)
    assert errors[0].startswith("klp-ld: error: m.ko: lp_bad_addr+0x8: .klp.sym.vmlinux.saved_count,1: ")
    # the source line is read from the big-endian DWARF, as addr2line reads it
    addr2line = _need(CROSS + "addr2line", NEEDED)
    larl = min(s.offset for s in load(obj).sections[".text"].sites) - 2
    where = subprocess.run([addr2line, "-e", str(obj), "-j", ".text", hex(larl)], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert where.startswith(str(FIXTURES / "lp_bad.c") + ":")
    assert f">>> referenced by {where} (lp_bad_addr)" in stderr.splitlines()


def test_a_klp_section_retyped_after_the_link_loses_its_got_slots(module_ko: Path, tmp_path: Path) -> None:
    """objcopy from binutils 2.46 on retypes livepatch sections (0x60000004); s390's loader counts GOT
    slots and PLT entries in SHT_RELA sections only, so `klp-ld check` fails."""
    data = bytearray(module_ko.read_bytes())
    ehdr = read_file_header(bytes(data), "m.ko")
    names = [s.name for s in read_elf(bytes(data), "m.ko").sections]
    at = ehdr.e_shoff + names.index(".klp.rela.vmlinux..text") * ehdr.e_shentsize + 4  # sh_type
    assert int.from_bytes(data[at:at + 4], "big") == SHT_RELA
    data[at:at + 4] = (0x60000004).to_bytes(4, "big")
    (tmp_path / "retyped.ko").write_bytes(bytes(data))
    done = run_klp_ld(["check", "retyped.ko"], tmp_path)
    assert done.returncode == 1
    assert "(module_frob_arch_sections -> check_rela)" in done.stderr, done.stderr
    assert "apply_rela writes the slot or entry one byte before the module's memory" in done.stderr


def test_expoline_thunks_are_the_final_links_own(tmp_path: Path, cross: Cross,
                                                  kernel_symbols: tuple[Path, Path]) -> None:
    obj = cross.build("lp_a.c", ["-mindirect-branch=thunk-extern", "-mfunction-return=thunk-extern",
                                 "-mindirect-branch-table"], "lp_a-expoline.o")
    assert any(s.symbol == "__s390_indirect_jump_r14" for s in load(obj).sections[".text"].sites)
    system_map = tmp_path / "System.map"
    system_map.write_text(kernel_symbols[1].read_text() + "0000000000100f00 t __s390_indirect_jump_r14\n")
    sources, env = _sources(tmp_path, system_map)
    done = run_klp_ld([*sources, *LDFLAGS, "-r", "-o", "m.o", str(obj)], tmp_path, env)
    assert done.returncode == 0, done.stderr
    names = {s.name for s in read_elf_file(str(tmp_path / "m.o")).symbols}
    assert "__s390_indirect_jump_r14" in names, sorted(n for n in names if "indirect" in n)


# ---------------------------------------------------------------------------------------------------
# The command line


def test_the_s390x_emulation_reads_its_option(tmp_path: Path) -> None:
    """s390.em adds `--s390-pgste` to elf64_s390 (what kbuild passes): an option there, not with x86's
    emulation."""
    for emulation in (["-m", "elf64_s390"], ["-melf64_s390"]):
        cmd = parse([*emulation, "--s390-pgste", "-r", "-o", "m.o", "a.o"], {}, str(tmp_path))
        assert cmd.rejected is None and not cmd.doubts, emulation
        assert (cmd.emulation, cmd.output, cmd.input_paths(), cmd.relocatable) == (
            "elf64_s390", "m.o", ["a.o"], True)
    assert parse(["-m", "elf64_s390", "--s390-pg", "-r", "a.o"], {}, str(tmp_path)).rejected is None
    assert parse(["-m", "elf_x86_64", "--s390-pgste", "a.o"], {}, str(tmp_path)).rejected == \
        "unrecognized option '--s390-pgste'"


@pytest.mark.parametrize("emulation", [
    "elf64_s390",
    "elf_s390",
])
def test_klp_ld_and_the_cross_ld_agree_on_the_s390_option(cross: Cross, tmp_path: Path,
                                                          emulation: str) -> None:
    """Whether `-m EMULATION --s390-pgste` is a command line: as the cross ld parses it (`--help`
    lists every emulation's options, so the option is given to a link that fails on its input
    later, if at all), and as klp-ld reads it."""
    from klp_ld import cmdline

    added = [name for name in cmdline._LONG_BY_EMULATION[emulation] if name not in cmdline._LONG]
    done = subprocess.run([cross.ld, "-m", emulation, "--s390-pgste", "-r", "-o", str(tmp_path / "x.o"),
                           str(cross.build("modinfo.c"))], capture_output=True, text=True, check=False)
    ld_takes = "unrecognized option '--s390-pgste'" not in done.stderr
    klp_ld_takes = parse(["-m", emulation, "--s390-pgste", "-r", "a.o"], {}, str(tmp_path)).rejected is None
    assert (klp_ld_takes, added == ["s390-pgste"]) == (ld_takes, ld_takes), done.stderr


def test_without_m_an_s390_option_names_the_m_to_add(tmp_path: Path, cross: Cross) -> None:
    """With no -m, klp-ld reads the command line with x86's options, where `--s390-pgste` is unknown;
    the cross ld's default emulation (elf64_s390) knows it and would link an unconverted module. So the
    link stops, naming the -m to add, and writes nothing; with the -m, the same link goes through."""
    objs = [str(cross.build("lp_a.c")), str(cross.build("lp_b.c"))]
    _, env = _sources(tmp_path, None)
    flags = [f for f in LDFLAGS if f not in ("-m", "elf64_s390")]
    for args in ([*flags, "--s390-pgste", "-r", "-o", "m.o", *objs],
                 [*LDFLAGS, "--s390-pgste", "-r", "-o", "m.o", *objs]):
        done = run_klp_ld(args, tmp_path, env)
        if "-m" in args:
            assert done.returncode == 0 and done.stderr == "", done.stderr
            assert (tmp_path / "m.o").exists()
        else:
            assert done.returncode == 1
            assert done.stderr.splitlines() == [
                f"klp-ld: error: this command line has no -m, and {cross.ld} reads it with the options of "
                "its default emulation elf64_s390, which klp-ld reads only when -m names it: add -m "
                "elf64_s390 (kbuild passes it)"]
            assert not (tmp_path / "m.o").exists()
    status, stderr = _link(tmp_path, cross, list(map(Path, objs)), flags=flags, final_extra=["--s390-pgste"])
    assert status == 1
    assert "add -m elf64_s390 (kbuild passes it)" in stderr and len(stderr.splitlines()) == 1, stderr
    assert not (tmp_path / "m.ko").exists()


# lgrl %r1,0; llilf %r2,0xc0e50000 (whose immediate looks like a brasl); a zero halfword; br %r14; nopr
STEPPING_CODE = bytes.fromhex("c41800000000" "c02fc0e50000" "0000" "07fe" "0707")


def test_an_overlapping_function_symbol_cannot_shift_the_stepping() -> None:
    """A FUNC symbol inside another one that ends mid-instruction ([2, 8) inside [0, 0x14)) must not
    make stepping start there: from 8 the bytes c0 e5 ... would read as a brasl holding the site."""
    site = RelocSite(10, PLT32DBL, 2, "foo")
    for funcs in ([(0, len(STEPPING_CODE))], [(0, len(STEPPING_CODE)), (2, 6)],
                  [(2, 6), (0, len(STEPPING_CODE))]):
        (check,) = check_text_sites(STEPPING_CODE, SECTION, funcs, [site])
        error_of(check, "site is 4 byte(s) into 'llilf %r2, 0xc0e50000'")


def test_stepping_from_an_odd_function_start_is_an_error() -> None:
    """s390 instructions are halfword aligned: a FUNC symbol at an odd offset cannot start an instruction,
    so a site it covers is an error, not a brasl decoded from the wrong bytes."""
    code = b"\x07" + bytes.fromhex("c0e500000000") + b"\x07"
    (check,) = check_text_sites(code, SECTION, [(1, 6)], [RelocSite(3, PLT32DBL, 2, "foo")])
    error_of(check, "an odd address", "halfword aligned")


def _module_with(section: str, flags: int = SHF_ALLOC) -> ElfObject:
    """A minimal s390x object holding one 16-byte section."""
    return ElfObject("t.o", 1, EM_S390, 1, 0, b"\x02\x02\x01" + bytes(9),
                     [Section_("", 0), Section_(section, 1, flags, data=bytes(16))], [Symbol("")])


@pytest.mark.parametrize("section", [".s390_indirect_jump", ".s390_indirect_call", ".s390_return_reg",
                                     ".s390_return_mem", "__stack_protector_loc", "__ex_table",
                                     "__mcount_loc"])
@pytest.mark.parametrize("rela_obj", [VMLINUX, "dummy"])
def test_tables_of_the_modules_own_code_take_no_klp_relocation(section: str, rela_obj: str) -> None:
    """nospec_revert's expoline tables (by prefix), 7.2's stack protector sites and the other own-code
    tables describe only the module's own code: no klp relocation, whatever object it is for."""
    ident = Identity(rela_obj, VMLINUX if rela_obj == VMLINUX else rela_obj, "thing", 0)
    conv = Conversion(section, 8, R64, 0, ident, ident.link_name, ident.rela_section(section))
    found = [(d.code, d.message) for d in check_module(_module_with(section), [conv])]
    assert ("special-section", f"klp relocation in {section}, a table that may only describe the module's "
            "own code") in found, found


def test_a_little_endian_s390_object_is_refused(cross: Cross) -> None:
    """s390x objects are big-endian; one written little-endian (every field, as the writer does for the
    byte order its header names) is refused in one line."""
    model = read_elf_file(str(cross.build("lp_a.c")))
    model.e_ident_tail = model.e_ident_tail[:1] + b"\x01" + model.e_ident_tail[2:]
    with pytest.raises(KlpLdError) as caught:
        read_elf(write_elf(model), "lp_a.o")
    assert str(caught.value) == ("klp-ld: error: lp_a.o: little-endian s390x object: s390x objects are "
                                 "big-endian")
