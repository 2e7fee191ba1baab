"""The final link: a .ko in the kernel's livepatch format, checked against the loader's rules."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from klp_ld.arch.x86_64 import RX86
from klp_ld.elf.consts import SHF_ALLOC, SHF_INFO_LINK, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH, SHT_RELA
from klp_ld.elf.read import read_elf_file

from .conftest import OBJECTS, Toolchain, run_klp_ld


def _partial(tmp_path: Path, toolchain: Toolchain, sources: list[str]) -> Path:
    objs = [toolchain.build(s) for s in sources]
    result = run_klp_ld(["-r", "-o", "m.o", *map(str, objs)], tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "m.o"


def _final(tmp_path: Path, toolchain: Toolchain, inputs: list[Path], extra: list[str] | None = None):
    shutil.copy(OBJECTS / "module.lds", tmp_path / "module.lds")
    modinfo = toolchain.build("modinfo.c")
    return run_klp_ld(["-r", "-m", "elf_x86_64", "--build-id=sha1", "-T", "module.lds", *(extra or []),
                       "-o", "m.ko", *map(str, inputs), str(modinfo)], tmp_path)


@pytest.fixture
def seed_ko(tmp_path, toolchain, watch_inputs):
    m_o = _partial(tmp_path, toolchain, ["seed_a.c", "seed_b.c"])
    watch_inputs(m_o)
    result = _final(tmp_path, toolchain, [m_o])
    assert result.returncode == 0, result.stderr
    return tmp_path / "m.ko"


def test_conversion_follows_the_kernel_format(seed_ko):
    ko = read_elf_file(str(seed_ko))
    klp = {s.name: s for s in ko.sections if s.name.startswith(".klp.rela.")}
    assert set(klp) == {f".klp.rela.vmlinux..{kind}.seed_{o}_{f}" for o in "ab"
                        for kind, f in (("text", "pc32"), ("text", "abs"), ("text", "call"), ("data", "ptr"))}
    for name, sec in klp.items():
        assert sec.type == SHT_RELA
        assert sec.flags == SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH
        assert sec.link is ko.symtab and sec.entsize == 24 and sec.addralign == 8
        assert sec.info_section is not None and name == ".klp.rela.vmlinux." + sec.info_section.name
        for rela in sec.relocs:
            assert rela.symbol is not None and rela.symbol.special == SHN_LIVEPATCH
            assert rela.symbol.name in (".klp.sym.vmlinux.state_show,2", ".klp.sym.vmlinux.state_show,3")
            owner = ko.symbol_at(sec.info_section, rela.offset)
            assert owner is not None
            expected = ",2" if owner[0].name.startswith("seed_a") else ",3"
            assert rela.symbol.name.endswith(expected)
    # The originals are R_X86_64_NONE against nothing, one per converted site.
    converted = {(s.info_section.name, r.offset) for s in klp.values() if s.info_section for r in s.relocs}
    for rsec in ko.rela_sections():
        if rsec.name.startswith(".klp.rela.") or rsec.info_section is None:
            continue
        for rela in rsec.relocs:
            if (rsec.info_section.name, rela.offset) in converted:
                assert rela.type == RX86.NONE and rela.symbol is None
            assert rela.symbol is None or rela.symbol.special != SHN_LIVEPATCH
    assert len(converted) == 8
    assert not any(s.name.startswith(".klp.module_relocs") for s in ko.sections)
    assert not any(s.name.startswith(("seed_a_relocs", "seed_b_relocs")) for s in ko.symbols)
    # Exports stay ordinary undefined references.
    assert any(s.name == "jiffies" and s.is_undefined for s in ko.symbols)


def test_binutils_accept_the_module(seed_ko, tmp_path):
    for tool in (["readelf", "-W", "-a"], ["objdump", "-d", "-r"]):
        proc = subprocess.run([*tool, str(seed_ko)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and "Error" not in proc.stderr, proc.stderr
    stripped = tmp_path / "stripped.ko"
    subprocess.run(["strip", "--strip-debug", "-o", str(stripped), str(seed_ko)], check=True)
    after = read_elf_file(str(stripped))
    klp = [s for s in after.sections if s.name.startswith(".klp.rela.")]
    assert klp and all(s.flags & SHF_RELA_LIVEPATCH for s in klp)
    assert all(r.symbol is not None and r.symbol.special == SHN_LIVEPATCH for s in klp for r in s.relocs)


def test_output_is_deterministic(tmp_path, toolchain):
    m_o = _partial(tmp_path, toolchain, ["seed_a.c", "seed_b.c"])
    assert _final(tmp_path, toolchain, [m_o]).returncode == 0
    first = (tmp_path / "m.ko").read_bytes()
    (tmp_path / "m.ko").unlink()
    assert _final(tmp_path, toolchain, [m_o]).returncode == 0
    assert (tmp_path / "m.ko").read_bytes() == first


def test_single_object_module_is_converted_at_the_final_link(tmp_path, toolchain, watch_inputs):
    obj = toolchain.build("seed_a.c")
    watch_inputs(obj)
    result = _final(tmp_path, toolchain, [obj])
    assert result.returncode == 0, result.stderr
    assert "KBUILD_MODPOST_WARN=1" in result.stderr  # the hint for single-object modules
    ko = read_elf_file(str(tmp_path / "m.ko"))
    syms = {s.name for s in ko.symbols if s.special == SHN_LIVEPATCH}
    assert syms == {".klp.sym.vmlinux.state_show,2"}


def test_module_without_identities_passes_through_byte_identical(tmp_path, toolchain):
    shutil.copy(OBJECTS / "module.lds", tmp_path / "module.lds")
    plain = toolchain.build("plain.c")
    args = ["-r", "--build-id=sha1", "-T", "module.lds", "-o"]
    assert run_klp_ld([*args, "klp.ko", str(plain)], tmp_path).returncode == 0
    subprocess.run(["ld", *args, "ld.ko", str(plain)], cwd=tmp_path, check=True)
    assert (tmp_path / "klp.ko").read_bytes() == (tmp_path / "ld.ko").read_bytes()


def test_missing_livepatch_modinfo_is_an_error(tmp_path, toolchain):
    m_o = _partial(tmp_path, toolchain, ["seed_a.c"])
    shutil.copy(OBJECTS / "module.lds", tmp_path / "module.lds")
    result = run_klp_ld(["-r", "-T", "module.lds", "-o", "m.ko", str(m_o)], tmp_path)
    assert result.returncode == 1
    assert "m.ko: .modinfo: module has livepatch relocations but no MODULE_INFO(livepatch, \"Y\")" \
        in result.stderr
    assert not (tmp_path / "m.ko").exists()


def test_vmlinux_symbol_in_module_section_is_refused(tmp_path, toolchain):
    bad = tmp_path / "bad.s"
    bad.write_text('\t.text\n\t.globl f\n\t.type f,@function\nf:\n'
                   '\tmov ".klp.sym.rela.dummy.vmlinux.saved_command_line,0"(%rip), %rax\n\tret\n')
    obj = tmp_path / "bad.o"
    subprocess.run(["as", "-o", str(obj), str(bad)], check=True)
    result = _final(tmp_path, toolchain, [obj])
    assert result.returncode == 1
    assert "module-specific relocation section .klp.rela.dummy.* refers to vmlinux symbol " \
           "'saved_command_line'" in result.stderr


def test_report_and_verbose(tmp_path, toolchain):
    m_o = _partial(tmp_path, toolchain, ["seed_a.c", "seed_b.c"])
    report = tmp_path / "report.jsonl"
    result = _final(tmp_path, toolchain, [m_o], ["--klp-verbose", f"--klp-report={report}"])
    assert result.returncode == 0, result.stderr
    assert "-> .klp.rela.vmlinux..text.seed_a_pc32 .klp.sym.vmlinux.state_show,2 (converted)" in result.stderr
    record = json.loads(report.read_text().splitlines()[-1])
    assert record["schema"] == "klp-ld-report/1" and record["kind"] == "final"
    assert len(record["sites"]) == 8 and all(c["ok"] for c in record["checks"])
    assert record["removed_sections"] == [".klp.module_relocs.vmlinux"]


SPECIAL = {
    "module key in __jump_table": ('__jump_table,"aw"', ".klp.sym.rela.dummy.dummy.key,0",
                                   "module-specific klp relocation in __jump_table"),
    "vmlinux key in __jump_table": ('__jump_table,"aw"', ".klp.sym.vmlinux.key,0", None),
    "exception table": ('__ex_table,"a"', ".klp.sym.vmlinux.fixup,0",
                        "klp relocation in __ex_table, a table that may only describe the module's own code"),
    "unknown section": ('.mystery,"aw"', ".klp.sym.vmlinux.thing,0",
                        "klp relocation in .mystery, a section klp-ld does not know to be safe"),
    "init text for a module": ('.init.text,"ax"', ".klp.sym.dummy.thing,0",
                               "module-specific relocation for dummy in init section .init.text"),
    "unsupported type": ('.data,"aw"', ".klp.sym.vmlinux.thing,0",
                         "relocation type R_X86_64_PC16 cannot be a livepatch relocation"),
}


@pytest.mark.parametrize("case", sorted(SPECIAL))
def test_special_section_policy(tmp_path, toolchain, case):
    section, symbol, message = SPECIAL[case]
    directive = ".word" if "type" in case else ".quad"
    reloc = f'{directive} "{symbol}" - .' if "type" in case else f'.quad "{symbol}"'
    if "init text" in case:
        reloc = f'movabs $"{symbol}", %rax\n\tret'
    src = tmp_path / "s.s"
    src.write_text(f"\t.section {section}\n\t.p2align 3\n\t{reloc}\n")
    obj = tmp_path / "s.o"
    subprocess.run(["as", "-o", str(obj), str(src)], check=True)
    result = _final(tmp_path, toolchain, [obj])
    if message is None:
        assert result.returncode == 0, result.stderr
        ko = read_elf_file(str(tmp_path / "m.ko"))
        assert any(s.name == ".klp.rela.vmlinux.__jump_table" for s in ko.sections)
    else:
        assert result.returncode == 1, result.stderr
        assert message in result.stderr
        assert not (tmp_path / "m.ko").exists()


def test_object_without_section_symbols_and_every_dialect(tmp_path, toolchain):
    """dotted.s has no section symbols; it mixes klp-convert records, a SUSE name and a raw name."""
    obj = toolchain.build("dotted.s")
    assert not any(s.type == 3 for s in read_elf_file(str(obj)).symbols[1:])  # STT_SECTION
    m_o = _partial(tmp_path, toolchain, ["dotted.s"])
    result = _final(tmp_path, toolchain, [m_o])
    assert result.returncode == 0, result.stderr
    ko = read_elf_file(str(tmp_path / "m.ko"))
    by_section = {s.name: sorted(r.symbol.name for r in s.relocs if r.symbol)
                  for s in ko.sections if s.name.startswith(".klp.rela.")}
    assert by_section == {
        ".klp.rela.vmlinux..text": [".klp.sym.vmlinux.bar.cold,0", ".klp.sym.vmlinux.foo.isra.0,2",
                                    ".klp.sym.vmlinux.saved_command_line,0"],
        ".klp.rela.dummy..text": [".klp.sym.dummy.numdummies,0"],
    }


@pytest.mark.parametrize(("release", "expected"), [("6.1.0-50-amd64", True), ("6.12.117+deb12-amd64", False)])
def test_reload_caveat_before_6_3(tmp_path, toolchain, release, expected):
    """kbuild runs LD in the headers directory; before 6.3 a patched module cannot be reloaded."""
    generated = tmp_path / "include" / "generated"
    generated.mkdir(parents=True)
    (generated / "utsrelease.h").write_text(f'#define UTS_RELEASE "{release}"\n')
    m_o = _partial(tmp_path, toolchain, ["dotted.s"])
    result = _final(tmp_path, toolchain, [m_o], ["--klp-no-discover"])
    assert result.returncode == 0, result.stderr
    line = (f"klp-ld: note: m.ko: kernel {release} does not clear livepatch relocations when a module is "
            "removed: while this patch is loaded, dummy cannot be unloaded and loaded again")
    assert (line in result.stderr) is expected, result.stderr
