"""Loader rules the final link and `klp-ld check` share: relocation types the kernel would refuse,
and module-specific sites the kernel reads before it writes them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from klp_ld.arch.x86_64 import RX86
from klp_ld.elf.read import read_elf_file
from klp_ld.elf.write import write_elf

from .conftest import OBJECTS, Result, Toolchain, run_klp_ld

R32_WHY = ("no kernel or module address fits in 32 unsigned bits (they are 0xffff...): the loader refuses it "
           "at load with 'overflow in relocation type 10'")


def _final(tmp_path: Path, toolchain: Toolchain, asm: str, out: str = "m.ko") -> Result:
    src = tmp_path / "s.s"
    src.write_text(asm)
    obj = tmp_path / "s.o"
    subprocess.run(["as", "-o", str(obj), str(src)], check=True)
    shutil.copy(OBJECTS / "module.lds", tmp_path / "module.lds")
    return run_klp_ld(["-r", "-T", "module.lds", "-o", out, str(obj), str(toolchain.build("modinfo.c"))],
                      tmp_path)


def _function(section: str, body: str) -> str:
    return f'\t.section {section}\n\t.globl f\n\t.type f,@function\nf:\n\t{body}\n\tret\n\t.size f, .-f\n'


def test_r_x86_64_32_against_a_kernel_symbol_is_refused(tmp_path: Path, toolchain: Toolchain) -> None:
    result = _final(tmp_path, toolchain,
                    _function('.text.f,"ax"', 'movl $".klp.sym.vmlinux.state_show,2", %eax'))
    assert result.returncode == 1, result.stderr
    line = next((x for x in result.stderr.splitlines() if "R_X86_64_32 " in x), "")
    assert line.startswith("klp-ld: error: m.ko: f+0x1: .klp.sym.vmlinux.state_show,2: "), result.stderr
    assert R32_WHY in line
    assert "R_X86_64_32S" in line and "movabs" in line and "lea" in line
    assert not (tmp_path / "m.ko").exists()


def test_r_x86_64_32s_stays_accepted(tmp_path: Path, toolchain: Toolchain) -> None:
    result = _final(tmp_path, toolchain,
                    _function('.text.f,"ax"', 'movq $".klp.sym.vmlinux.state_show,2", %rax'))
    assert result.returncode == 0, result.stderr


EARLY = {
    "module parameters": ('__param,"a"', "parse_args"),
    "struct module": ('.gnu.linkonce.this_module,"aw"', "struct module"),
    "constructors": ('.ctors,"aw"', "do_mod_ctors"),
    "init data": ('.init.data,"aw"', "init memory"),
}


@pytest.mark.parametrize("case", sorted(EARLY))
def test_module_specific_site_read_before_it_is_written(tmp_path: Path, toolchain: Toolchain,
                                                        case: str) -> None:
    """The kernel writes .klp.rela.<module>.* only inside klp_enable_patch or when the module loads."""
    section, why = EARLY[case]
    name = section.split(",")[0]
    result = _final(tmp_path, toolchain,
                    f'\t.section {section}\n\t.p2align 3\n\t.quad ".klp.sym.dummy.thing,0"\n')
    assert result.returncode == 1, result.stderr
    line = next((x for x in result.stderr.splitlines() if "module-specific relocation for dummy" in x), "")
    assert line.startswith(f"klp-ld: error: m.ko: {name}+0x0: .klp.sym.dummy.thing,0: "), result.stderr
    assert why in line and "klp_enable_patch" in line


@pytest.mark.parametrize("section", ['__param,"a"', '.gnu.linkonce.this_module,"aw"', '.init.data,"aw"'])
def test_vmlinux_site_in_early_data_is_written_at_load(tmp_path: Path, toolchain: Toolchain,
                                                        section: str) -> None:
    """load_module's apply_relocations writes .klp.rela.vmlinux.* before any of the module runs."""
    result = _final(tmp_path, toolchain,
                    f'\t.section {section}\n\t.p2align 3\n\t.quad ".klp.sym.vmlinux.state_show,2"\n')
    assert result.returncode == 0, result.stderr


def test_vmlinux_call_from_init_code_is_written_at_load(tmp_path: Path, toolchain: Toolchain) -> None:
    result = _final(tmp_path, toolchain,
                    _function('.init.text,"ax"', 'call ".klp.sym.vmlinux.state_show,2"'))
    assert result.returncode == 0, result.stderr


@pytest.fixture
def seed_ko(tmp_path: Path, toolchain: Toolchain) -> Path:
    objs = [str(toolchain.build(s)) for s in ("seed_a.c", "seed_b.c")]
    assert run_klp_ld(["-r", "-o", "lp.o", *objs], tmp_path).returncode == 0
    shutil.copy(OBJECTS / "module.lds", tmp_path / "module.lds")
    result = run_klp_ld(["-r", "-T", "module.lds", "-o", "m.ko", "lp.o", str(toolchain.build("modinfo.c"))],
                        tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "m.ko"


def test_check_refuses_r_x86_64_32(seed_ko: Path) -> None:
    model = read_elf_file(str(seed_ko))
    klp = next(s for s in model.sections if s.name == ".klp.rela.vmlinux..text.seed_a_abs")
    assert klp.relocs[0].type == RX86.R32S
    klp.relocs[0].type = RX86.R32
    broken = seed_ko.with_name("r32.ko")
    broken.write_bytes(write_elf(model))
    result = run_klp_ld(["check", str(broken)], seed_ko.parent)
    assert result.returncode == 1
    assert any(x.startswith(f"klp-ld: error: {broken}: seed_a_abs+0x") and R32_WHY in x
               for x in result.stderr.splitlines()), result.stderr


def test_check_refuses_a_module_specific_site_in_module_parameters(tmp_path: Path,
                                                                   toolchain: Toolchain) -> None:
    result = _final(tmp_path, toolchain, '\t.section .data.p,"aw"\n\t.p2align 3\n'
                                         '\t.quad ".klp.sym.dummy.param_ops_thing,0"\n')
    assert result.returncode == 0, result.stderr
    model = read_elf_file(str(tmp_path / "m.ko"))
    target = next(s for s in model.sections if s.name == ".data.p")
    target.name = "__param"
    moved = tmp_path / "param.ko"
    moved.write_bytes(write_elf(model))
    check = run_klp_ld(["check", str(moved)], tmp_path)
    assert check.returncode == 1
    assert (f"klp-ld: error: {moved}: __param+0x0: .klp.sym.dummy.param_ops_thing,0: module-specific "
            "relocation for dummy in __param") in check.stderr, check.stderr
