"""ppc64le: the loader's rules (klp_ld.arch.ppc64le), the text site checks (klp_ld.arch.ppc64le_text), and
a two-object livepatch module linked by klp-ld with the cross linker.

The fixtures in testdata/sites-ppc64le are built at test time with powerpc64le-linux-gnu-gcc, with the
flags kbuild gives a 6.1 ppc64le module (a module gets -mcmodel=large after vmlinux's -mcmodel=medium:
arch/powerpc/Makefile). Without the cross compiler the tests skip, or fail when CI is set.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from klp_ld.arch import for_machine
from klp_ld.arch.ppc64le import ARCH, EM_PPC64, RPPC64, klp_type_problem, spell
from klp_ld.arch.ppc64le_text import check_text_sites
from klp_ld.arch.sites import RelocSite, Severity, check_data_sites, width_problem
from klp_ld.arch.x86_64 import ARCH as X86
from klp_ld.convert import Conversion
from klp_ld.diag import KlpLdError
from klp_ld.elf.consts import SHF_ALLOC, SHF_INFO_LINK, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH, SHT_RELA
from klp_ld.elf.model import ElfObject, Rela
from klp_ld.elf.read import read_elf, read_elf_file
from klp_ld.names import Identity
from klp_ld.validate import check_sites, check_tables, read_before_klp_enable, reload_caveat

from .conftest import run_klp_ld
from .cross import Cross, Obj, case_check, error_of, one
from .cross import load as load_with

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "testdata" / "sites-ppc64le"
CROSS = "powerpc64le-linux-gnu-"
# What kbuild passes powerpc64le-linux-gnu-gcc for a module of Debian's 6.1 (scripts/Makefile.lib's
# c_flags with arch/powerpc/Makefile's KBUILD_CFLAGS and KBUILD_CFLAGS_MODULE, the code-generation part).
MODULE_CFLAGS = [
    "-mlittle-endian", "-m64", "-msoft-float", "-mtraceback=no", "-mabi=elfv2", "-mcmodel=medium",
    "-mno-pointers-to-nested-functions", "-mcpu=power8", "-mno-prefixed", "-mno-pcrel", "-mno-altivec",
    "-mno-vsx", "-mno-mma", "-fno-asynchronous-unwind-tables", "-mno-string", "-O2", "-fno-PIE",
    "-fno-common", "-fno-stack-protector", "-pg", "-mprofile-kernel", "-DMODULE", "-mno-save-toc-indirect",
    "-mcmodel=large", "-nostdinc",
]
REL24, ADDR64, ADDR32, REL64 = RPPC64.REL24, RPPC64.ADDR64, RPPC64.ADDR32, RPPC64.REL64


def load(path: Path) -> Obj:
    return load_with(path, check_text_sites)


@pytest.fixture(scope="session")
def cross(tmp_path_factory: pytest.TempPathFactory) -> Cross:
    return Cross("ppc64le", CROSS, "gcc-powerpc64le-linux-gnu", tmp_path_factory.mktemp("ppc64le"), FIXTURES,
                 MODULE_CFLAGS)


@pytest.fixture(scope="session")
def sites(cross: Cross) -> Obj:
    return load(cross.build("sites.s"))








# ---------------------------------------------------------------------------------------------------
# The architecture's rules


def test_the_reader_finds_ppc64le_by_e_machine() -> None:
    assert for_machine(EM_PPC64) is ARCH and ARCH.name == "ppc64le"
    assert ARCH.none == 0 and not ARCH.none_applied and not ARCH.zero_sites
    assert ARCH.abs64 == ADDR64 == 38 and REL24 == 10
    assert X86.none_applied and X86.zero_sites and X86.data_sections == ()  # x86_64 as before


def test_names_are_readelfs(sites: Obj, cross: Cross) -> None:
    """spell() agrees with binutils' readelf on every relocation of the fixture."""
    out = subprocess.run([cross.readelf, "-rW", str(sites.path)], capture_output=True, text=True,
                         check=True).stdout
    shown = {line.split()[2] for line in out.splitlines() if " R_PPC64_" in line}
    ours = {spell(s.r_type) for sec in sites.sections.values() for s in sec.sites}
    assert ours == shown and {"R_PPC64_REL24", "R_PPC64_TOC16_LO_DS", "R_PPC64_ADDR64"} <= ours
    assert spell(37) == "R_PPC64_REL30" and spell(126) == "R_PPC64_<unknown 126>"


@pytest.mark.parametrize(("r_type", "code", "fragment"), [
    (REL24, None, None),
    (ADDR64, None, None),
    (REL64, None, None),
    (ADDR32, "reloc-32", "R_PPC64_ADDR32 cannot hold a kernel address"),
    (RPPC64.REL32, "reloc-32", "'REL32 ... out of range!'"),
    (RPPC64.TOC16_HA, "reloc-toc", "computes it against this module's own TOC (my_r2)"),
    (RPPC64.TOC16_LO_DS, "reloc-toc", "reach kernel data through a .toc entry holding its address"),
    (RPPC64.TOC16, "reloc-toc", "'bad TOC16 relocation'"),
    (RPPC64.TOC, "reloc-toc", "stores this module's TOC pointer"),
    (RPPC64.REL16_HA, "reloc-16", "no kernel symbol is within 2 GiB"),
    (RPPC64.ENTRY, "reloc-type", "writes no symbol's address"),
    (RPPC64.ADDR16_HA, "reloc-type", "the ppc64 loader applies only ADDR32, ADDR64, TOC"),
    (RPPC64.NONE, "reloc-type", "'Unknown ADD relocation'"),
])
def test_which_types_a_livepatch_relocation_can_be(r_type: int, code: str | None,
                                                   fragment: str | None) -> None:
    problem = klp_type_problem(r_type)
    if code is None or fragment is None:
        assert problem is None
    else:
        assert problem is not None and problem[0] == code and fragment in problem[1]


def test_none_is_not_a_type_this_loader_applies() -> None:
    message = width_problem(ARCH, RelocSite(0, RPPC64.NONE, 0, "x"), 16)
    assert message is not None and "only applies" in message and "(not even NONE)" in message
    assert "and NONE" in (width_problem(X86, RelocSite(0, 99, 0, "x"), 16) or "")


def test_init_sections_are_kept_with_the_core() -> None:
    """module_init_section() is false on ppc64: the reason names init code, not freed memory."""
    kept = read_before_klp_enable(".init.text", ARCH)
    freed = read_before_klp_enable(".init.text", X86)
    assert kept is not None and "keeps `.init*` with the core" in kept
    assert freed is not None and "freed memory" in freed and freed == read_before_klp_enable(".init.text")


def _conv(rela_obj: str, r_type: int) -> Conversion:
    ident = Identity(rela_obj, rela_obj, "f", 0)
    return Conversion(".text", 0x24, r_type, 0, ident, ident.link_name, ident.rela_section(".text"))


def test_reload_caveat_names_the_calls_only() -> None:
    """6.1's restore_r2 refuses a second application of a REL24 (its nop is gone); data is rewritten."""
    calls = reload_caveat("6.1.0-50-powerpc64le", [_conv("dummy", REL24)], "m.ko", ARCH)
    assert len(calls) == 1 and "'Expected nop after call'; fixed in 6.3" in calls[0].message
    assert reload_caveat("6.1.0-50-powerpc64le", [_conv("dummy", ADDR64)], "m.ko", ARCH) == []
    assert reload_caveat("6.12.117", [_conv("dummy", REL24)], "m.ko", ARCH) == []
    x86 = reload_caveat("6.1.0-50-amd64", [_conv("dummy", 2)], "m.ko")
    assert len(x86) == 1 and "the loader refuses the nonzero sites; fixed in 6.3" in x86[0].message


# ---------------------------------------------------------------------------------------------------
# Text sites


def test_bl_nop_is_a_call_the_loader_can_relocate(sites: Obj) -> None:
    (check,) = case_check(sites, "call_ok")
    assert check.ok and check.problem is None
    shape = (check.field, check.width, check.bits, check.mnemonic, check.target_offset)
    assert shape == ("li", 4, 24, "bl", 0)
    assert check.log_line(".text.sites").startswith(".text.sites+0xc R_PPC64_REL24 ext: li24 of 'bl 0xc'")


@pytest.mark.parametrize(("case", "fragments"), [
    ("call_no_nop", ["no nop after 'bl", "('Expected nop after call, got 38630001')", "'addi r3, r3, 1'"]),
    ("call_reloaded", ["('Expected nop after call, got e8410018')",
                       "what restore_r2 writes there: this word was relocated before"]),
    ("sibcall", ["sibling call 'b 0x3c'", "restore_r2 leaves a non-link branch alone",
                 "only 'bl' followed by 'nop' can call a kernel function"]),
    ("call_addend", ["addend 8 on 'bl", "the loader's stub enters ext at ext+0x8",
                     "global entry point, ext itself", "addend 0 expected"]),
    ("rel24_addi", ["site is on 'addi r3, r3, 0'", "not on a branch (b/bl)", "24 bits of its operands"]),
    ("rel24_misaligned", ["site is 2 bytes into 'bl 0x54' (01 00 00 48) at .text.sites+0x54",
                          "'REL24 ... out of range!'"]),
    ("rel24_bc", ["conditional branch 'beq", "R_PPC64_REL14, which the ppc64 loader does not apply"]),
    ("rel24_bla", ["absolute branch 'bla 0' (03 00 00 48) at .text.sites+0x68 (AA=1)"]),
    ("rel24_garbage", ["decode failure: capstone cannot decode the word (00 00 00 00) at .text.sites+0x74"]),
])
def test_bad_calls_are_errors(sites: Obj, case: str, fragments: list[str]) -> None:
    (check,) = case_check(sites, case)
    error_of(check, *fragments)


def test_bl_at_the_end_of_its_section_has_no_room_for_the_nop(sites: Obj) -> None:
    (check,) = case_check(sites, "tail_call")
    error_of(check, "is the last word of .text.tail", "'Expected nop after call'")


def test_toc_fields_are_the_right_halfword(sites: Obj) -> None:
    """The fields are decoded right (d16 of addis, ds14 of ld); the loader rule refuses the type itself."""
    ha, lo = case_check(sites, "toc_direct")
    assert ha.ok and (ha.field, ha.bits, ha.mnemonic) == ("d", 16, "addis")
    assert lo.ok and (lo.field, lo.bits, lo.mnemonic) == ("ds", 14, "ld")
    assert klp_type_problem(ha.r_type) is not None and klp_type_problem(lo.r_type) is not None


def test_toc_fields_of_the_wrong_form_or_place_are_errors(sites: Obj) -> None:
    lo_on_ds, ds_on_d, at_plus_2, on_mflr = case_check(sites, "toc_wrong_form")
    error_of(lo_on_ds, "R_PPC64_TOC16_LO writes all 16 bits", "'ld r9, 0(r9)'", "extended opcode (DS-form)")
    error_of(ds_on_d, "R_PPC64_TOC16_LO_DS keeps the low 2 bits", "'addi r9, r9, 0'", "is D-form")
    error_of(at_plus_2, "site is 2 bytes into 'addis r9, r2, 0'", "+2 is where big-endian keeps it")
    error_of(on_mflr, "site is on 'mflr r0' (a6 02 08 7c) at .text.sites+0x94, which has no 16-bit immediate")


def test_a_data_word_in_code_is_a_warning_and_over_code_an_error(sites: Obj) -> None:
    sec = sites.case("addr64_over_code")
    error_of(one(sec, sec.sites_in("addr64_over_code")[0]), "stores a whole 8-byte value",
             "over the instruction(s) 'nop' (00 00 00 60) at .text.sites+0x9c, 'nop'")
    (data,) = [s for s in sec.sites if s.offset == 0xA8]
    warned = one(sec, data)
    assert warned.ok and warned.problem is not None and warned.problem.severity is Severity.WARNING
    assert "writes 8 bytes of data inside code (.text.sites+0xa8)" in warned.problem.message


def test_sites_outside_the_section_and_unknown_types(sites: Obj) -> None:
    sec = sites.case("call_ok")
    past, unknown = sec.check([RelocSite(len(sec.data), REL24, 0, "ext"),
                               RelocSite(0, RPPC64.ADDR16_HA, 0, "ext")])
    error_of(past, "does not fit in the section")
    error_of(unknown, "R_PPC64_ADDR16_HA has no known field width here")


@pytest.mark.parametrize("model", ["-mcmodel=large", "-mcmodel=medium"])
def test_what_gcc_emits_for_extern_calls_and_data(cross: Cross, model: str) -> None:
    """Every call to the extern function is bl + nop and passes; the extern object is reached through
    .toc (TOC16 against the .toc section) whose entry is an ADDR64 to the symbol."""
    obj = load(cross.build("lp_a.c", [model], f"lp_a{model}.o"))
    text = obj.sections[".text"]
    calls = [s for s in text.sites if s.symbol == "state_show"]
    assert calls and all(s.r_type == REL24 for s in calls)
    assert all(c.ok and c.problem is None for c in text.check(calls))
    toc_refs = [s for s in text.sites if s.r_type in (RPPC64.TOC16_HA, RPPC64.TOC16_LO_DS)]
    assert toc_refs and all(s.symbol == ".toc" and s.symbol_is_section for s in toc_refs)
    entries = obj.sections[".toc"].sites
    assert {(s.symbol, s.r_type) for s in entries} >= {("saved_count", ADDR64), ("jiffies", ADDR64)}
    assert check_data_sites(ARCH, ".toc", len(obj.sections[".toc"].data), entries) == []


# ---------------------------------------------------------------------------------------------------
# A module linked by klp-ld with the cross linker


# KBUILD_LDFLAGS of a ppc64le kernel (arch/powerpc/Makefile: -EL, -m elf64lppc) and the final link's
# KBUILD_LDFLAGS_MODULE (--save-restore-funcs, an option of the ppc64 emulation), as 6.1's kbuild runs them.
LDFLAGS = ["-EL", "-m", "elf64lppc", "-z", "noexecstack", "--no-warn-rwx-segments"]


def _link(tmp_path: Path, cross: Cross, partial: list[Path],
          extra: list[Path] | None = None) -> tuple[int, str]:
    """kbuild's two links with klp-ld as $(LD) and CROSS_COMPILE naming the real one; (status, stderr)
    of the final link."""
    env = {"CROSS_COMPILE": CROSS}
    result = run_klp_ld([*LDFLAGS, "-r", "-o", "m.o", *map(str, partial)], tmp_path, env)
    assert result.returncode == 0, result.stderr
    shutil.copy(FIXTURES / "module.lds", tmp_path / "module.lds")
    modinfo = cross.build("modinfo.c")
    final = run_klp_ld(["-r", *LDFLAGS, "--save-restore-funcs", "--build-id=sha1", "-T", "module.lds",
                        "-o", "m.ko", "m.o", *map(str, extra or []), str(modinfo)], tmp_path, env)
    return final.returncode, final.stderr


def _klp_entries(ko: ElfObject) -> dict[str, list[tuple[int, str, str]]]:
    return {s.name: [(r.offset, spell(r.type), r.symbol.name if r.symbol else "") for r in s.relocs]
            for s in ko.sections if s.name.startswith(".klp.rela.")}


@pytest.fixture
def module_ko(tmp_path: Path, cross: Cross, watch_inputs: Callable[..., None]) -> Path:
    objs = [cross.build("lp_a.c"), cross.build("lp_b.c")]
    watch_inputs(*objs)
    status, stderr = _link(tmp_path, cross, objs)
    assert status == 0, stderr
    return tmp_path / "m.ko"


def test_two_objects_become_klp_relocations(module_ko: Path) -> None:
    ko = read_elf_file(str(module_ko))
    assert ko.e_machine == EM_PPC64
    entries = _klp_entries(ko)
    assert set(entries) == {".klp.rela.vmlinux..text", ".klp.rela.vmlinux..toc",
                            ".klp.rela.vmlinux..data.rel"}
    assert sorted((t, s) for _o, t, s in entries[".klp.rela.vmlinux..text"]) == [
        ("R_PPC64_REL24", ".klp.sym.vmlinux.state_show,2"),
        ("R_PPC64_REL24", ".klp.sym.vmlinux.state_show,3")]
    assert [(t, s) for _o, t, s in entries[".klp.rela.vmlinux..toc"]] == [
        ("R_PPC64_ADDR64", ".klp.sym.vmlinux.saved_count,1")]
    assert [(t, s) for _o, t, s in entries[".klp.rela.vmlinux..data.rel"]] == [
        ("R_PPC64_ADDR64", ".klp.sym.vmlinux.state_show,2")]
    for sec in ko.sections:
        if sec.name.startswith(".klp.rela."):
            assert sec.type == SHT_RELA and sec.flags == SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH
            assert sec.link is ko.symtab and sec.info_section is not None
            assert all(r.symbol is not None and r.symbol.special == SHN_LIVEPATCH for r in sec.relocs)
    # The loader has no case for R_PPC64_NONE: the originals are gone, not retyped.
    klp_sites = {(s.info_section.name, r.offset) for s in ko.sections if s.name.startswith(".klp.rela.")
                 and s.info_section is not None for r in s.relocs}
    for rsec in ko.rela_sections():
        if rsec.name.startswith(".klp.rela.") or rsec.info_section is None:
            continue
        for rela in rsec.relocs:
            assert rela.type != RPPC64.NONE
            assert (rsec.info_section.name, rela.offset) not in klp_sites
            assert rela.symbol is None or not rela.symbol.name.startswith(".klp.")
    assert any(s.name == "jiffies" and s.is_undefined for s in ko.symbols)  # an export stays ordinary
    assert check_tables(ko) == []


def test_the_loader_counts_a_stub_for_each_klp_call(module_ko: Path) -> None:
    """get_stubs_size counts REL24 (symbol, addend) pairs in every SHT_RELA section: the converted calls,
    now only in .klp.rela sections, still get their stubs."""
    ko = read_elf_file(str(module_ko))
    counted = {(id(r.symbol), r.addend) for s in ko.sections if s.type == SHT_RELA
               for r in s.relocs if r.type == REL24}
    klp_calls = {(id(r.symbol), r.addend) for s in ko.sections if s.name.startswith(".klp.rela.")
                 for r in s.relocs if r.type == REL24}
    assert len(klp_calls) == 2 and klp_calls <= counted


def test_every_converted_site_is_checked_with_capstone(module_ko: Path, tmp_path: Path) -> None:
    ko = read_elf_file(str(module_ko))
    conversions = [Conversion(s.info_section.name, r.offset, r.type, r.addend,
                              Identity("vmlinux", "vmlinux", r.symbol.name.split(".")[4].split(",")[0], 0),
                              r.symbol.name, s.name)
                   for s in ko.sections if s.name.startswith(".klp.rela.") and s.info_section is not None
                   for r in s.relocs if r.symbol is not None]
    problems, records = check_sites(ko, conversions)
    assert problems == [] and len(records) == 4 and all(r.ok for r in records)
    text = [r.detail for r in records if r.section == ".text"]
    assert len(text) == 2 and all(" li24 of 'bl " in line for line in text)
    assert run_klp_ld(["check", "m.ko"], tmp_path).returncode == 0


def test_what_this_loader_cannot_apply_fails_the_final_link(tmp_path: Path, cross: Cross) -> None:
    status, stderr = _link(tmp_path, cross, [cross.build("lp_bad.c")])
    assert status == 1, stderr
    assert not (tmp_path / "m.ko").exists()
    assert "R_PPC64_TOC16_HA is relative to the TOC pointer" in stderr
    assert "R_PPC64_TOC16_LO is relative to the TOC pointer" in stderr
    assert "R_PPC64_ADDR32 cannot hold a kernel address" in stderr
    assert "sibling call 'b " in stderr and "restore_r2 leaves a non-link branch alone" in stderr


def test_module_specific_relocations(tmp_path: Path, cross: Cross) -> None:
    """A call and a pointer in writable data are fine; a pointer in __ro_after_init data is not (a
    plain store after the patch's init made it read-only); alternative code is consumed too early."""
    alt = tmp_path / "alt.s"
    alt.write_text('\t.section __ftr_alt_97,"ax",@progbits\n\tbl ".klp.sym.rela.dummy.dummy.dummy_fn,0"\n'
                   "\tnop\n")
    alt_o = tmp_path / "alt.o"
    subprocess.run([cross.gcc, "-c", "-o", str(alt_o), str(alt)], check=True)
    status, stderr = _link(tmp_path, cross, [cross.build("lp_mod.c"), alt_o])
    assert status == 1, stderr
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 2, stderr
    assert any(".data..ro_after_init" in e and "module-specific R_PPC64_ADDR64 relocation" in e
               and "plain store" in e and "read-only after the patch's init returns" in e for e in errors)
    assert any("module-specific klp relocation in __ftr_alt_97, which the loader consumes" in e
               for e in errors)


def test_a_none_left_in_an_applied_section_is_an_error(module_ko: Path) -> None:
    """What a converter that retypes originals (as on x86_64) leaves behind fails the ppc64 load."""
    ko = read_elf_file(str(module_ko))
    rela_text = next(s for s in ko.rela_sections() if s.name == ".rela.text")
    rela_text.relocs.append(Rela(0x24, RPPC64.NONE, None, 0))
    problems = check_tables(ko)
    assert [p.code for p in problems] == ["reloc-none"]
    assert "R_PPC64_NONE in .rela.text: the ppc64le loader does not apply NONE" in problems[0].message
    assert "'Unknown ADD relocation: 0'" in problems[0].message


def test_without_m_the_cross_ld_options_are_not_guessed(tmp_path: Path, cross: Cross) -> None:
    """With no -m, klp-ld reads the command line with x86's options, where `--save-restore-funcs`
    is unknown; the cross ld's default emulation knows it and would link an unconverted module.
    So the link stops, naming the -m to add, and writes nothing."""
    objs = [cross.build("lp_a.c"), cross.build("lp_b.c")]
    env = {"CROSS_COMPILE": CROSS}
    flags = [f for f in LDFLAGS if f not in ("-m", "elf64lppc")]
    done = run_klp_ld([*flags, "-r", "-o", "m.o", *map(str, objs)], tmp_path, env)
    assert done.returncode == 0, done.stderr
    shutil.copy(FIXTURES / "module.lds", tmp_path / "module.lds")
    final = run_klp_ld(["-r", *flags, "--save-restore-funcs", "--build-id=sha1", "-T", "module.lds", "-o",
                        "m.ko", "m.o", str(cross.build("modinfo.c"))], tmp_path, env)
    assert final.returncode == 1
    assert "add -m elf64lppc" in final.stderr and len(final.stderr.splitlines()) == 1, final.stderr
    assert not (tmp_path / "m.ko").exists()


def test_names_the_final_link_defines_are_never_resolved_into_the_kernel(tmp_path: Path,
                                                                         cross: Cross) -> None:
    """vmlinux has its own (unexported) `.TOC.` and `_savegpr0_14`; a module's references to them
    are the module's own, defined by its final link, and must not become klp relocations."""
    from klp_ld.annotations import harvest
    from klp_ld.ksyms.cache import load_cached
    from klp_ld.ksyms.index import SymbolIndex
    from klp_ld.resolve import Resolver, resolve_unannotated

    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text("c000000000000100 T _stext\nc000000000001000 t _savegpr0_14\n"
                        "c000000000002000 d .TOC.\nc000000000003000 t cmdline_proc_show\n")
    obj = read_elf_file(str(cross.build("linker_defined.s")))
    resolver = Resolver(SymbolIndex.from_sources([load_cached(str(kallsyms), use_cache=False)]),
                        (str(kallsyms),), None)
    wanted, problems = resolve_unannotated(obj, harvest(obj), set(), resolver)
    assert problems == []
    assert sorted(wanted) == ["cmdline_proc_show"]


def test_an_elfv1_object_is_refused(tmp_path: Path, cross: Cross) -> None:
    data = bytearray(cross.build("lp_a.c").read_bytes())
    assert int.from_bytes(data[48:52], "little") & 3 == 2  # e_flags: ELFv2
    data[48:52] = (1).to_bytes(4, "little")
    with pytest.raises(KlpLdError, match=r"ABI version 1 .*ELFv2 \(ppc64le\) only"):
        read_elf(bytes(data), "v1.o")


def test_a_klp_section_retyped_after_the_link_loses_its_stubs(module_ko: Path, tmp_path: Path) -> None:
    """objcopy from binutils 2.46 on retypes livepatch sections (0x60000004). x86_64's loader never
    reads the type; ppc64's counts call stubs in SHT_RELA sections only, so `klp-ld check` fails."""
    from klp_ld.elf.headers import read_file_header, read_section_headers

    data = bytearray(module_ko.read_bytes())
    ehdr = read_file_header(bytes(data), "m.ko")
    names = [s.name for s in read_elf(bytes(data), "m.ko").sections]
    index = names.index(".klp.rela.vmlinux..text")
    assert read_section_headers(bytes(data), ehdr, "m.ko")  # the table is where e_shoff says
    at = ehdr.e_shoff + index * ehdr.e_shentsize + 4  # sh_type
    data[at:at + 4] = (0x60000004).to_bytes(4, "little")
    (tmp_path / "retyped.ko").write_bytes(bytes(data))
    done = run_klp_ld(["check", "retyped.ko"], tmp_path)
    assert done.returncode == 1
    assert "R_PPC64_REL24 entries" in done.stderr and "get_stubs_size" in done.stderr, done.stderr
