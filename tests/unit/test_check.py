"""`klp-ld check`: verify a finished livepatch module, whoever built it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from klp_ld.arch.x86_64 import RX86
from klp_ld.elf.read import read_elf_file
from klp_ld.elf.write import write_elf

from .conftest import OBJECTS, Toolchain, run_klp_ld


@pytest.fixture
def seed_ko(tmp_path: Path, toolchain: Toolchain) -> Path:
    objs = [str(toolchain.build(s)) for s in ("seed_a.c", "seed_b.c")]
    assert run_klp_ld(["-r", "-o", "m.o", *objs], tmp_path).returncode == 0
    shutil.copy(OBJECTS / "module.lds", tmp_path / "module.lds")
    result = run_klp_ld(["-r", "-T", "module.lds", "-o", "m.ko", "m.o", str(toolchain.build("modinfo.c"))],
                        tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "m.ko"


def test_check_passes_on_what_klp_ld_built(seed_ko: Path) -> None:
    result = run_klp_ld(["check", str(seed_ko), f"--klp-symbols={OBJECTS / 'kallsyms.txt'}"], seed_ko.parent)
    assert result.returncode == 0, result.stderr
    assert f"{seed_ko}: 8 livepatch relocation(s) in 8 section(s), 2 symbol(s)" in result.stdout
    assert ".klp.sym.vmlinux.state_show,3     4 site(s)  ok" in result.stdout
    assert result.stdout.rstrip().endswith(": OK")


def test_check_fails_on_a_position_the_kernel_does_not_have(seed_ko: Path, tmp_path: Path) -> None:
    fewer = tmp_path / "kallsyms"
    fewer.write_text("ffffffff81000000 t state_show\nffffffff81000100 t state_show\n")
    result = run_klp_ld(["check", str(seed_ko), f"--klp-symbols={fewer}"], tmp_path)
    assert result.returncode == 1
    assert ".klp.sym.vmlinux.state_show,3: state_show has 2 copies in vmlinux; position 3 does not exist" \
        in result.stderr


@pytest.mark.parametrize(("shift", "r_type", "expect"), [
    (1, None, "byte into the displacement of 'lea"),
    (0, RX86.R64, "lea"),
])
def test_hand_broken_site_shows_the_instruction(seed_ko: Path, shift: int, r_type: int | None,
                                                expect: str) -> None:
    model = read_elf_file(str(seed_ko))
    klp = next(s for s in model.sections if s.name == ".klp.rela.vmlinux..text.seed_a_pc32")
    rela = klp.relocs[0]
    rela.offset += shift
    if r_type is not None:
        rela.type = r_type
    broken = seed_ko.with_name("broken.ko")
    broken.write_bytes(write_elf(model))
    result = run_klp_ld(["check", str(broken)], seed_ko.parent)
    assert result.returncode == 1
    lines = [x for x in result.stderr.splitlines() if expect in x]
    assert lines, result.stderr
    assert lines[0].startswith(f"klp-ld: error: {broken}: seed_a_pc32+0x")
    assert "48 8d 05 00 00 00 00" in lines[0], lines[0]


def test_check_rejects_a_site_written_twice(seed_ko: Path) -> None:
    model = read_elf_file(str(seed_ko))
    target = next(s for s in model.sections if s.name == ".text.seed_a_pc32")
    klp = next(s for s in model.sections if s.name == ".klp.rela.vmlinux..text.seed_a_pc32")
    ordinary = model.rela_for(target)
    assert ordinary is not None
    none = next(r for r in ordinary.relocs if r.offset == klp.relocs[0].offset)
    none.type, none.symbol = RX86.PC32, next(s for s in model.symbols if s.name == "jiffies")
    broken = seed_ko.with_name("twice.ko")
    broken.write_bytes(write_elf(model))
    result = run_klp_ld(["check", str(broken)], seed_ko.parent)
    assert result.returncode == 1
    assert "2 relocations write the same site; the loader allows one" in result.stderr
