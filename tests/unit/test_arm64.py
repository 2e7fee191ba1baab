"""arm64: the loader's rules (klp_ld.arch.arm64), the text site checks (klp_ld.arch.arm64_text), and a
two-object livepatch module linked by klp-ld with the cross linker.

The fixtures in testdata/sites-arm64 are built at test time with aarch64-linux-gnu-gcc, with the code
generation flags kbuild gives a 7.2 arm64 module (the default small code model, -fno-PIE: no GOT).
Without the cross compiler the tests skip, or fail when CI is set.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from klp_ld.arch import for_machine
from klp_ld.arch.arm64 import ARCH, EM_AARCH64, RA64, alternative_code, klp_type_problem, late_stub, spell
from klp_ld.arch.arm64_text import check_text_sites
from klp_ld.arch.ppc64le import ARCH as PPC
from klp_ld.arch.sites import RelocSite, width_problem
from klp_ld.arch.x86_64 import ARCH as X86
from klp_ld.cmdline import parse
from klp_ld.convert import Conversion
from klp_ld.elf.consts import SHF_ALLOC, SHF_INFO_LINK, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH, SHT_RELA
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf, read_elf_file
from klp_ld.names import Identity
from klp_ld.validate import check_sites, check_tables, read_before_klp_enable, reload_caveat

from .conftest import run_klp_ld
from .cross import Cross, Obj, case_check, error_of, warning_of
from .cross import load as load_with

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "testdata" / "sites-arm64"
CROSS = "aarch64-linux-gnu-"
# What kbuild passes aarch64-linux-gnu-gcc for a module of a 7.2 arm64 kernel (the top Makefile's and
# arch/arm64/Makefile's KBUILD_CFLAGS and KBUILD_CPPFLAGS, and KBUILD_CFLAGS_MODULE, the code-generation
# part): with ARM64_BTI_KERNEL (pac-ret+bti) and DYNAMIC_FTRACE_WITH_CALL_OPS (patchable entries 4,2).
MODULE_CFLAGS = [
    "-mlittle-endian", "-O2", "-fno-PIE", "-fno-common", "-fno-strict-aliasing", "-fshort-wchar",
    "-funsigned-char", "-mgeneral-regs-only", "-mabi=lp64", "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables", "-mbranch-protection=pac-ret+bti", "-Wa,-march=armv8.5-a",
    "-fpatchable-function-entry=4,2", "-falign-functions=8", "-fno-stack-protector", "-DMODULE", "-nostdinc",
]
CALL26, JUMP26, ABS64, ABS32 = RA64.CALL26, RA64.JUMP26, RA64.ABS64, RA64.ABS32
SHF_EXECINSTR = 0x4


def load(path: Path) -> Obj:
    return load_with(path, check_text_sites)


@pytest.fixture(scope="session")
def cross(tmp_path_factory: pytest.TempPathFactory) -> Cross:
    return Cross("arm64", CROSS, "gcc-aarch64-linux-gnu", tmp_path_factory.mktemp("arm64"), FIXTURES,
                 MODULE_CFLAGS)


@pytest.fixture(scope="session")
def sites(cross: Cross) -> Obj:
    return load(cross.build("sites.s"))










# ---------------------------------------------------------------------------------------------------
# The architecture's rules


def test_the_reader_finds_arm64_by_e_machine() -> None:
    assert for_machine(EM_AARCH64) is ARCH and ARCH.name == "arm64"
    assert ARCH.none == 0 and ARCH.none_applied and not ARCH.zero_sites
    assert (ARCH.abs64, int(ABS64), int(CALL26), int(JUMP26)) == (257, 257, 283, 282)
    assert ARCH.plain_store_types == frozenset() and ARCH.rewrite_refused_types == frozenset()
    assert ARCH.counted_in_rela == {CALL26, JUMP26}
    # the fields arm64 added keep x86_64 and ppc64le as they were
    for other in (X86, PPC):
        assert other.late_stub(CALL26, 0xFF8) is None and other.consumed_code is None
        assert "(get_stubs_size), so these find none and the module fails to load" in \
            other.counted_in_rela_why


def test_names_are_readelfs(cross: Cross, tmp_path: Path) -> None:
    """spell() agrees with binutils' readelf on every type it names: one relocation of each type,
    written into the relocation section of an assembled object."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection

    types = [int(t) for t in RA64]
    fields = f"\t.data\nstart:\n\t.rept {len(types)}\n\t.quad 0\n\t.endr\n"
    obj = cross.assemble("all_types", fields + "".join(
        f"\t.reloc start+{8 * i}, R_AARCH64_ABS64, ext\n" for i in range(len(types))))
    data = bytearray(obj.read_bytes())
    with obj.open("rb") as fh:
        rela = ELFFile(fh).get_section_by_name(".rela.data")
        assert isinstance(rela, RelocationSection)
        base, count = rela["sh_offset"], rela.num_relocations()
    assert count == len(types)
    entries = sorted(range(count), key=lambda i: int.from_bytes(data[base + 24 * i:base + 24 * i + 8],
                                                                "little"))  # by r_offset
    for r_type, entry in zip(types, entries, strict=True):
        at = base + 24 * entry + 8
        data[at:at + 4] = r_type.to_bytes(4, "little")
    patched = tmp_path / "patched.o"
    patched.write_bytes(bytes(data))
    out = subprocess.run([cross.readelf, "-rW", str(patched)], capture_output=True, text=True,
                         check=True).stdout
    shown = [line.split()[2] for line in out.splitlines()
             if line[:1] in "0123456789abcdef" and len(line.split()) > 2]
    assert shown == [spell(t) for t in types]
    assert (spell(281), spell(0), spell(256)) == ("R_AARCH64_<unknown 281>", "R_AARCH64_NONE",
                                                  "R_AARCH64_NULL")


@pytest.mark.parametrize(("r_type", "code", "fragment"), [
    (CALL26, None, None),
    (JUMP26, None, None),
    (ABS64, None, None),
    (RA64.PREL64, None, None),
    (RA64.PREL32, None, None),
    (RA64.ADR_PREL_PG_HI21, None, None),
    (RA64.ADD_ABS_LO12_NC, None, None),
    (RA64.LDST128_ABS_LO12_NC, None, None),
    (RA64.MOVW_UABS_G3, None, None),
    (RA64.MOVW_UABS_G0_NC, None, None),
    (RA64.MOVW_PREL_G1, None, None),
    (RA64.MOVW_SABS_G2, None, None),
    (ABS32, "reloc-32", "refuses an absolute value above 32 unsigned bits"),
    (RA64.ABS16, "reloc-16", "(reloc_data: 'overflow in relocation type 259')"),
    (RA64.PREL16, "reloc-16", "reaches only 32 KiB either way"),
    (RA64.CONDBR19, "reloc-short", "reaches only 1 MiB either way, and unlike a b/bl"),
    (RA64.TSTBR14, "reloc-short", "reaches only 32 KiB"),
    (RA64.LD_PREL_LO19, "reloc-short", "'overflow in relocation type 273'"),
    (RA64.ADR_PREL_LO21, "reloc-short", "reach the symbol with adrp and a :lo12: add or load"),
    (RA64.MOVW_UABS_G0, "reloc-movw", "needs more than 16 bits"),
    (RA64.MOVW_UABS_G2, "reloc-movw", "needs more than 48 bits"),
    (RA64.MOVW_SABS_G1, "reloc-movw", "a kernel address does"),
    (RA64.MOVW_PREL_G0, "reloc-movw", "a PC-relative value does"),
    (RA64.ADR_GOT_PAGE, "reloc-got", "build without -fPIC/-fPIE (kbuild passes -fno-PIE)"),
    (RA64.LD64_GOT_LO12_NC, "reloc-got", "'unsupported RELA relocation'"),
    (RA64.NONE, "reloc-type", "writes nothing"),
    (RA64.NULL, "reloc-type", "writes nothing"),
    (RA64.TLSDESC_CALL, "reloc-type", "the arm64 loader applies only ABS64, ABS32"),
])
def test_which_types_a_livepatch_relocation_can_be(r_type: int, code: str | None,
                                                   fragment: str | None) -> None:
    problem = klp_type_problem(r_type)
    if code is None or fragment is None:
        assert problem is None
    else:
        assert problem is not None and problem[0] == code and fragment in problem[1]


def test_a_type_the_loader_does_not_apply_has_no_width() -> None:
    message = width_problem(ARCH, RelocSite(0, RA64.ADR_GOT_PAGE, 0, "x"), 16)
    assert message == ("R_AARCH64_ADR_GOT_PAGE has no known field width here: the kernel's arm64 "
                       "apply_relocate_add does not apply it (it applies 37 other types and NONE)")
    assert "only applies R_X86_64_64" in (width_problem(X86, RelocSite(0, 99, 0, "x"), 16) or "")


def test_late_stubs_are_branches_and_adrps_at_an_erratum_offset() -> None:
    """A late branch may need a PLT entry; a late adrp whose offset ends in 0xff8 or 0xffc may need an
    erratum 843419 veneer: both are stored plainly into .plt. Sites themselves are written safely."""
    call = late_stub(CALL26, 0x24)
    assert call is not None and "(module_emit_plt_entry)" in call and "faults" in call
    assert late_stub(JUMP26, 0) == call
    for offset in (0xFF8, 0xFFC, 0x1FF8):
        veneer = late_stub(RA64.ADR_PREL_PG_HI21, offset)
        assert veneer is not None and "erratum 843419" in veneer and "module_emit_veneer_for_adrp" in veneer
    assert late_stub(RA64.ADR_PREL_PG_HI21, 0xFF0) is None
    assert late_stub(RA64.ADR_PREL_PG_HI21, 0x1000) is None
    assert late_stub(ABS64, 0xFF8) is None and late_stub(RA64.ADD_ABS_LO12_NC, 0xFFC) is None


def test_init_sections_are_freed_and_nothing_waits_for_6_3() -> None:
    """The generic module_init_section holds on arm64; immediates are replaced, so a target module that
    is loaded again is relocated again (and arm64 has livepatch only since 6.17 anyway)."""
    freed = read_before_klp_enable(".init.text", ARCH)
    assert freed is not None and "freed memory" in freed
    ident = Identity("dummy", "dummy", "f", 0)
    conv = Conversion(".text", 0x24, CALL26, 0, ident, ident.link_name, ident.rela_section(".text"))
    assert reload_caveat("6.1.0-50-arm64", [conv], "m.ko", ARCH) == []


def test_the_aarch64_emulations_read_their_options(tmp_path: Path) -> None:
    """aarch64elf.em adds long options and the short `-p`: options with `-m aarch64linux` or
    `-maarch64elf` (what kbuild passes), not with x86's emulation."""
    for emulation in (["-m", "aarch64linux"], ["-maarch64elf"], ["-m", "aarch64elf32b"]):
        cmd = parse([*emulation, "-EL", "-p", "--fix-cortex-a53-843419=adr", "--stub-group=1", "-r", "-o",
                     "m.o", "a.o"], {}, str(tmp_path))
        assert cmd.rejected is None and not cmd.doubts, emulation
        assert (cmd.output, cmd.input_paths(), cmd.relocatable) == ("m.o", ["a.o"], True)
    assert parse(["-m", "elf_x86_64", "--pic-veneer", "a.o"], {}, str(tmp_path)).rejected == \
        "unrecognized option '--pic-veneer'"
    assert parse(["-m", "elf_x86_64", "-p", "a.o"], {}, str(tmp_path)).rejected == "ambiguous option '-p'"


# ---------------------------------------------------------------------------------------------------
# Text sites


def test_what_gcc_emits_passes(sites: Obj) -> None:
    call, tail = case_check(sites, "call_ok")
    assert (call.ok, call.field, call.bits, call.mnemonic, call.problem) == (True, "imm", 26, "bl", None)
    assert (tail.ok, tail.field, tail.mnemonic, tail.problem) == (True, "imm", "b", None)
    assert call.log_line(".text.sites").startswith(".text.sites+0x4 R_AARCH64_CALL26 ext: imm26 of 'bl ")
    data = case_check(sites, "data_ok")
    assert all(c.ok and c.problem is None for c in data)
    assert [(c.mnemonic, c.field, c.bits) for c in data] == [
        ("adrp", "page", 21), ("add", "lo", 12), ("adrp", "page", 21), ("ldr", "lo", 12), ("ldrb", "lo", 12),
        ("ldrsh", "lo", 12), ("str", "lo", 12), ("ldr", "lo", 12), ("prfm", "lo", 12)]
    assert [c.target_offset for c in data] == [0, 0, 16, 16, 1, 2, 4, 0, 8]
    assert data[0].log_line(".text.sites") == ".text.sites+0x10 R_AARCH64_ADR_PREL_PG_HI21 ext: page21 of " \
        "'adrp x0, #0' (00 00 00 90) at .text.sites+0x10 -> ext+0x0"
    movw = case_check(sites, "movw_ok")
    assert len(movw) == 6
    assert all(c.ok and c.problem is None and (c.field, c.bits) == ("imm", 16) for c in movw)


def test_short_forms_are_decoded_and_the_types_refused(sites: Obj) -> None:
    """The fields are right (imm19, imm14, immhi:immlo); the loader rule refuses the types themselves."""
    checks = case_check(sites, "short_ok")
    assert [(c.ok, c.mnemonic, c.bits) for c in checks] == [
        (True, "b.eq", 19), (True, "cbz", 19), (True, "tbz", 14), (True, "ldr", 19), (True, "adr", 21)]
    assert all(klp_type_problem(c.r_type) is not None for c in checks)


@pytest.mark.parametrize(("case", "index", "fragments"), [
    ("call_addend", 0, ["addend 8 on 'bl", "PLT entry ending in 'br x16' to ext+0x8", "under BTI",
                        "addend 0 expected"]),
    ("call_wrong", 0, ["site is on 'add x0, x0, #1' (00 04 00 91) at .text.sites+0x80",
                       "not on a branch (b/bl): R_AARCH64_CALL26 replaces imm26 (bits 0-25)"]),
    ("call_wrong", 1, ["site is 2 bytes into 'bl #0x84' (00 00 00 94) at .text.sites+0x84",
                       "its site is the word's address"]),
    ("call_wrong", 2, ["decode failure: capstone cannot decode the word (ff ff ff ff) at .text.sites+0x88"]),
    ("page_wrong", 0, ["R_AARCH64_ADR_PREL_PG_HI21 on 'adr x0, #0x90'", "(R_AARCH64_ADR_PREL_LO21)",
                       "page delta >> 12"]),
    ("page_wrong", 1, ["site is on 'add x0, x0, #0'", "not on adrp"]),
    ("lo12_wrong", 0, ["writes (address & 0xfff) >> 3 into the imm12 of 'ldr w0, [x0]'", "scales by 4",
                       "R_AARCH64_LDST32_ABS_LO12_NC expected"]),
    ("lo12_wrong", 1, ["R_AARCH64_ADD_ABS_LO12_NC writes (address & 0xfff) >> 0", "'ldr x0, [x0]'",
                       "R_AARCH64_LDST64_ABS_LO12_NC expected"]),
    ("lo12_wrong", 2, ["R_AARCH64_LDST64_ABS_LO12_NC writes (address & 0xfff) >> 3 into the imm12 of 'add",
                       "which adds it unscaled: R_AARCH64_ADD_ABS_LO12_NC expected"]),
    ("lo12_wrong", 3, ["'add w0, w0, #0'", "is a 32-bit add"]),
    ("lo12_wrong", 4, ["'add x0, x0, #0, lsl #12'", "shifts its immediate left by 12"]),
    ("lo12_wrong", 5, ["addend 4 on 'ldr x0, [x0]'", "an 8-byte access", "drops the low 3 bits",
                       "would reach ext+0x0", "multiple of 8"]),
    ("lo12_wrong", 6, ["site is on 'ldur x0, [x0, #-8]'", "not on add (immediate)"]),
    ("movw_wrong", 0, ["R_AARCH64_MOVW_UABS_G2_NC writes bits 32-47", "shifts it by 16: 'lsl #32' expected"]),
    ("movw_wrong", 1, ["R_AARCH64_MOVW_PREL_G1 is a signed group", "is a movk"]),
    ("movw_wrong", 2, ["'movn x0, #0, lsl #48'", "is a movn, which inverts its immediate"]),
    ("movw_wrong", 3, ["'movk w0, #0'", "a 32-bit register, which cannot hold a kernel address"]),
    ("short_wrong", 0, ["site is on 'nop'", "not on a conditional branch (b.cond, cbz, cbnz)"]),
    ("short_wrong", 1, ["site is on 'cbz x0, #0xe0'", "not on a test-and-branch (tbz, tbnz)"]),
    ("short_wrong", 2, ["site is on 'ldr x0, [x0]'", "not on a literal load"]),
    ("abs64_over_code", 0, ["stores a whole 8-byte value at .text.sites+0xec",
                            "over the instruction(s) 'nop' (1f 20 03 d5) at .text.sites+0xec, 'nop'"]),
])
def test_bad_sites_are_errors(sites: Obj, case: str, index: int, fragments: list[str]) -> None:
    error_of(case_check(sites, case)[index], *fragments)


def test_what_the_loader_applies_alike_is_a_warning(sites: Obj) -> None:
    call_on_b, jump_on_bl = case_check(sites, "branch_swapped")
    warning_of(call_on_b, "R_AARCH64_CALL26 on 'b ", "marks b with R_AARCH64_JUMP26", "so this works")
    warning_of(jump_on_bl, "R_AARCH64_JUMP26 on 'bl ", "marks bl with R_AARCH64_CALL26")
    byte_on_add, add_on_byte = case_check(sites, "lo12_alike")
    warning_of(byte_on_add, "R_AARCH64_LDST8_ABS_LO12_NC on 'add x0, x0, #0'", "R_AARCH64_ADD_ABS_LO12_NC")
    warning_of(add_on_byte, "on 'ldrb w0, [x0]'", "a 1-byte access with R_AARCH64_LDST8_ABS_LO12_NC")


def test_a_data_word_in_code_is_a_warning(sites: Obj) -> None:
    sec = sites.case("call_ok")
    (word,) = [s for s in sec.sites if s.offset == 0xF8]
    (check,) = sec.check([word])
    warning_of(check, "R_AARCH64_ABS64 writes 8 bytes of data inside code (.text.sites+0xf8)")


def test_sites_outside_the_section_none_and_unknown_types(sites: Obj) -> None:
    sec = sites.case("call_ok")
    past, unknown, none, null = sec.check([RelocSite(len(sec.data), CALL26, 0, "ext"),
                                           RelocSite(0, RA64.ADR_GOT_PAGE, 0, "ext"),
                                           RelocSite(4, RA64.NONE, 0, ""), RelocSite(4, RA64.NULL, 0, "")])
    error_of(past, "does not fit in the section")
    error_of(unknown, "R_AARCH64_ADR_GOT_PAGE has no known field width here")
    assert none.skipped and null.skipped and none.ok and null.ok


def test_what_gcc_emits_for_extern_calls_and_data(cross: Cross) -> None:
    """gcc 12 with the module flags: bl (CALL26) and, for a tail call, b (JUMP26) to the function; adrp
    with a :lo12: load or add to the object, never a GOT; the pointer in .data is an ABS64. All pass."""
    a, b = load(cross.build("lp_a.c")), load(cross.build("lp_b.c"))
    for obj, wanted in ((a, {CALL26}), (b, {JUMP26})):
        text = obj.sections[".text"]
        calls = [s for s in text.sites if s.symbol == "state_show"]
        assert {s.r_type for s in calls} == wanted
        assert all(c.ok and c.problem is None for c in text.check(calls))
    text = a.sections[".text"]
    data = [s for s in text.sites if s.symbol == "saved_count"]
    assert {spell(s.r_type) for s in data} == {"R_AARCH64_ADR_PREL_PG_HI21", "R_AARCH64_LDST64_ABS_LO12_NC",
                                               "R_AARCH64_ADD_ABS_LO12_NC"}
    assert all(c.ok and c.problem is None for c in text.check(data))
    assert [(s.symbol, s.r_type) for s in a.sections[".data"].sites] == [("state_show", ABS64)]


# ---------------------------------------------------------------------------------------------------
# A module linked by klp-ld with the cross linker


# KBUILD_LDFLAGS of a 7.2 arm64 kernel: `-EL -maarch64elf` when ld has that emulation (else
# `-maarch64linux -z norelro`, arch/arm64/Makefile), and the top Makefile's -z noexecstack and
# --no-warn-rwx-segments; the final link adds KBUILD_LDFLAGS_MODULE (--build-id=sha1).
LDFLAGS = ["-EL", "-maarch64elf", "-z", "noexecstack", "--no-warn-rwx-segments"]
LDFLAGS_LINUX = ["-EL", "-maarch64linux", "-z", "norelro", "-z", "noexecstack", "--no-warn-rwx-segments"]


def _link(tmp_path: Path, cross: Cross, partial: list[Path], flags: list[str] = LDFLAGS,
          final_extra: list[str] | None = None) -> tuple[int, str]:
    """kbuild's two links with klp-ld as $(LD) and CROSS_COMPILE naming the real one; (status, stderr)
    of the final link."""
    env = {"CROSS_COMPILE": CROSS}
    result = run_klp_ld([*flags, "-r", "-o", "m.o", *map(str, partial)], tmp_path, env)
    assert result.returncode == 0, result.stderr
    shutil.copy(FIXTURES / "module.lds", tmp_path / "module.lds")
    final = run_klp_ld(["-r", *flags, *(final_extra or []), "--build-id=sha1", "-T", "module.lds", "-o",
                        "m.ko", "m.o", str(cross.build("modinfo.c"))], tmp_path, env)
    return final.returncode, final.stderr


def _klp_entries(ko: ElfObject) -> dict[str, list[tuple[int, str, str]]]:
    return {s.name: [(r.offset, spell(r.type), r.symbol.name if r.symbol else "") for r in s.relocs]
            for s in ko.sections if s.name.startswith(".klp.rela.")}


@pytest.fixture
def module_ko(tmp_path: Path, cross: Cross, watch_inputs: Callable[..., None]) -> Path:
    objs = [cross.build("lp_a.c"), cross.build("lp_b.c")]
    watch_inputs(*objs)
    status, stderr = _link(tmp_path, cross, objs)
    assert status == 0 and stderr == "", stderr
    return tmp_path / "m.ko"


def test_two_objects_become_klp_relocations(module_ko: Path) -> None:
    ko = read_elf_file(str(module_ko))
    assert ko.e_machine == EM_AARCH64
    entries = _klp_entries(ko)
    assert set(entries) == {".klp.rela.vmlinux..text", ".klp.rela.vmlinux..data"}
    text = sorted((t, s) for _o, t, s in entries[".klp.rela.vmlinux..text"])
    assert text == [("R_AARCH64_ADD_ABS_LO12_NC", ".klp.sym.vmlinux.saved_count,1"),
                    ("R_AARCH64_ADR_PREL_PG_HI21", ".klp.sym.vmlinux.saved_count,1"),
                    ("R_AARCH64_ADR_PREL_PG_HI21", ".klp.sym.vmlinux.saved_count,1"),
                    ("R_AARCH64_CALL26", ".klp.sym.vmlinux.state_show,2"),
                    ("R_AARCH64_JUMP26", ".klp.sym.vmlinux.state_show,3"),
                    ("R_AARCH64_LDST64_ABS_LO12_NC", ".klp.sym.vmlinux.saved_count,1")]
    assert [(t, s) for _o, t, s in entries[".klp.rela.vmlinux..data"]] == [
        ("R_AARCH64_ABS64", ".klp.sym.vmlinux.state_show,2")]
    for sec in ko.sections:
        if sec.name.startswith(".klp.rela."):
            assert sec.type == SHT_RELA and sec.flags == SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH
            assert sec.link is ko.symtab and sec.info_section is not None
            assert all(r.symbol is not None and r.symbol.special == SHN_LIVEPATCH for r in sec.relocs)
    # The loader applies R_AARCH64_NONE (type 0, its R_ARM_NONE): the originals are retyped, as on x86_64.
    klp_sites = {(s.info_section.name, r.offset) for s in ko.sections if s.name.startswith(".klp.rela.")
                 and s.info_section is not None for r in s.relocs}
    retyped = {(rsec.info_section.name, r.offset) for rsec in ko.rela_sections()
               if not rsec.name.startswith(".klp.rela.") and rsec.info_section is not None
               for r in rsec.relocs if r.type == RA64.NONE}
    assert retyped == klp_sites
    assert any(s.name == "jiffies" and s.is_undefined for s in ko.symbols)  # an export stays ordinary
    assert check_tables(ko) == []


def _count_plts(ko: ElfObject) -> dict[str, int]:
    """PLT entries module_frob_arch_sections makes room for (count_plts), per relocation section: the
    CALL26/JUMP26 entries of every SHT_RELA section of an executable target whose symbol is not in that
    target, entries with addend 0 counted once per (type, symbol)."""
    counted: dict[str, int] = {}
    for rsec in ko.sections:
        target = rsec.info_section
        if rsec.type != SHT_RELA or target is None or not target.flags & SHF_EXECINSTR:
            continue
        seen: set[tuple[int, int]] = set()
        for r in rsec.relocs:
            if r.type not in (CALL26, JUMP26) or r.symbol is None or r.symbol.section is target:
                continue
            if r.addend or (r.type, id(r.symbol)) not in seen:
                counted[rsec.name] = counted.get(rsec.name, 0) + 1
            seen.add((r.type, id(r.symbol)))
    return counted


def test_the_loader_counts_a_plt_entry_for_each_klp_branch(module_ko: Path) -> None:
    """count_plts reads every SHT_RELA section, `.klp.rela.*` included, and an SHN_LIVEPATCH symbol is
    never in the branch's section: both klp branches get a PLT entry; the module has the .plt and
    .init.plt that module_frob_arch_sections sizes ("module PLT section(s) missing" otherwise)."""
    ko = read_elf_file(str(module_ko))
    assert _count_plts(ko) == {".klp.rela.vmlinux..text": 2}
    assert {".plt", ".init.plt"} <= {s.name for s in ko.sections}


def test_every_converted_site_is_checked_with_capstone(module_ko: Path, tmp_path: Path) -> None:
    ko = read_elf_file(str(module_ko))
    conversions = [Conversion(s.info_section.name, r.offset, r.type, r.addend,
                              Identity("vmlinux", "vmlinux", r.symbol.name.split(".")[4].split(",")[0], 0),
                              r.symbol.name, s.name)
                   for s in ko.sections if s.name.startswith(".klp.rela.") and s.info_section is not None
                   for r in s.relocs if r.symbol is not None]
    problems, records = check_sites(ko, conversions)
    assert problems == [] and len(records) == 7 and all(r.ok for r in records)
    text = sorted(r.detail.split(": ", 1)[1].split(" of ")[0] for r in records if r.section == ".text")
    assert text == ["imm26", "imm26", "lo12", "lo12", "page21", "page21"]
    done = run_klp_ld(["check", "m.ko"], tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "m.ko: OK", done.stdout + done.stderr


def test_the_linux_emulation_links_the_same_module(tmp_path: Path, cross: Cross) -> None:
    """kbuild's fallback when ld lacks aarch64elf: `-maarch64linux -z norelro`."""
    status, stderr = _link(tmp_path, cross, [cross.build("lp_a.c"), cross.build("lp_b.c")], LDFLAGS_LINUX)
    assert status == 0 and stderr == "", stderr
    ko = read_elf_file(str(tmp_path / "m.ko"))
    assert sum(len(e) for e in _klp_entries(ko).values()) == 7 and check_tables(ko) == []


def test_what_this_loader_cannot_apply_fails_the_final_link(tmp_path: Path, cross: Cross) -> None:
    status, stderr = _link(tmp_path, cross, [cross.build("lp_bad.c")])
    assert status == 1, stderr
    assert not (tmp_path / "m.ko").exists()
    assert "R_AARCH64_ABS32 cannot hold a kernel address" in stderr
    assert "R_AARCH64_ADR_GOT_PAGE goes through a GOT" in stderr
    assert "R_AARCH64_LD64_GOT_LO12_NC goes through a GOT" in stderr
    assert "R_AARCH64_CONDBR19 reaches only 1 MiB either way" in stderr
    assert "lp_bad_addend+0x18: .klp.sym.vmlinux.state_show,2: addend 8 on 'bl " in stderr
    # sites are named by their function, never by an AArch64 mapping symbol ($x, $d)
    assert "$x" not in stderr and "$d" not in stderr and "m.ko: .data+0x0: " in stderr


def test_module_specific_relocations(tmp_path: Path, cross: Cross) -> None:
    """A pointer in __ro_after_init data is fine (written through aarch64_insn_copy); a call warns (its
    PLT entry is a plain store into read-only .plt); a call in an alternative's replacement fails."""
    status, stderr = _link(tmp_path, cross, [cross.build("lp_mod.c")])
    assert status == 1, stderr
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    warnings = [line for line in stderr.splitlines() if ": warning: " in line]
    assert len(errors) == 1 and len(warnings) == 1, stderr
    assert ".klp.sym.dummy.dummy_fn,0: module-specific klp relocation inside the replacement code of an " \
           "alternative (.altinstructions+0x0)" in errors[0]
    assert "before dummy relocations are written" in errors[0]
    assert "lp_mod_call+0x18: .klp.sym.dummy.dummy_fn,0: module-specific R_AARCH64_CALL26 relocation for " \
           "dummy: when the branch is out of direct range" in warnings[0]
    assert ">>> also at .text+0x" in stderr and "ro_after_init" not in stderr


def test_alternatives_name_the_code_module_finalize_rewrites(tmp_path: Path, cross: Cross) -> None:
    """The original range and the replacement, which sits in a subsection of the same section."""
    ko = read_elf(cross.build("lp_mod.c").read_bytes(), "lp_mod.o")
    ranges = alternative_code(ko)
    (orig, repl) = ranges[".text"]
    assert orig[1] - orig[0] == 4 and repl[1] - repl[0] == 4 and repl[0] > orig[0]
    assert "code an alternative replaces" in orig[2] and "the replacement code" in repl[2]
    call = next(r for _s, r in ko.relocs_against() if r.symbol is not None and r.offset == repl[0])
    assert call.type == CALL26 and call.symbol is not None and "dummy_fn" in call.symbol.name


def test_without_m_an_aarch64_option_names_the_m_to_add(tmp_path: Path, cross: Cross) -> None:
    """With no -m, klp-ld reads the command line with x86's options, where the aarch64 emulation's are
    unknown; the cross ld's default emulation knows them and would link an unconverted module. So the
    link stops, naming the -m to add, and writes nothing. (kbuild always passes -maarch64elf.)"""
    flags = [f for f in LDFLAGS if f != "-maarch64elf"]
    status, stderr = _link(tmp_path, cross, [cross.build("lp_a.c"), cross.build("lp_b.c")], flags,
                           ["--fix-cortex-a53-843419"])
    assert status == 1
    assert "add -m aarch64linux" in stderr and len(stderr.splitlines()) == 1, stderr
    assert not (tmp_path / "m.ko").exists()


def test_a_klp_section_retyped_after_the_link_loses_its_plt_entries(module_ko: Path, tmp_path: Path) -> None:
    """objcopy from binutils 2.46 on retypes livepatch sections (0x60000004); arm64's loader counts PLT
    entries in SHT_RELA sections only, so `klp-ld check` fails."""
    from klp_ld.elf.headers import read_file_header

    data = bytearray(module_ko.read_bytes())
    ehdr = read_file_header(bytes(data), "m.ko")
    names = [s.name for s in read_elf(bytes(data), "m.ko").sections]
    at = ehdr.e_shoff + names.index(".klp.rela.vmlinux..text") * ehdr.e_shentsize + 4  # sh_type
    data[at:at + 4] = (0x60000004).to_bytes(4, "little")
    (tmp_path / "retyped.ko").write_bytes(bytes(data))
    done = run_klp_ld(["check", "retyped.ko"], tmp_path)
    assert done.returncode == 1
    assert "a PLT entry per R_AARCH64_JUMP26, R_AARCH64_CALL26 entry" in done.stderr, done.stderr
    assert "(module_frob_arch_sections -> count_plts)" in done.stderr
