"""`klp-ld check` on modules whose conversion never happened, or was undone after the link."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from klp_ld.elf.consts import SHN_ABS
from klp_ld.elf.read import read_elf_file
from klp_ld.validate import check_module

from .conftest import OBJECTS, Toolchain, run_klp_ld

# Elf64_Ehdr: e_shoff at 0x28; Elf64_Shdr fields (offset, size) inside one 64-byte header.
_SHDR_FIELDS = {"sh_type": (4, 4), "sh_flags": (8, 8), "sh_link": (40, 4), "sh_info": (44, 4)}


def _partial(tmp_path: Path, toolchain: Toolchain) -> Path:
    objs = [str(toolchain.build(s)) for s in ("seed_a.c", "seed_b.c")]
    result = run_klp_ld(["-r", "-o", "lp.o", *objs], tmp_path)
    assert result.returncode == 0, result.stderr
    shutil.copy(OBJECTS / "module.lds", tmp_path / "module.lds")
    return tmp_path / "lp.o"


@pytest.fixture
def plain_ko(tmp_path: Path, toolchain: Toolchain) -> Path:
    """The final link done by plain ld: nothing converted, the annotation section still there."""
    lp_o = _partial(tmp_path, toolchain)
    subprocess.run(["ld", "-r", "-T", "module.lds", "-o", "plain.ko", str(lp_o),
                    str(toolchain.build("modinfo.c"))], cwd=tmp_path, check=True)
    return tmp_path / "plain.ko"


@pytest.fixture
def seed_ko(tmp_path: Path, toolchain: Toolchain) -> Path:
    lp_o = _partial(tmp_path, toolchain)
    modinfo = str(toolchain.build("modinfo.c"))
    result = run_klp_ld(["-r", "-T", "module.lds", "-o", "m.ko", str(lp_o), modinfo], tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "m.ko"


def test_check_fails_on_a_module_linked_by_plain_ld(plain_ko: Path) -> None:
    result = run_klp_ld(["check", "plain.ko"], plain_ko.parent)
    assert result.returncode == 1, result.stdout
    assert not result.stdout.rstrip().endswith(": OK")
    site = re.compile(r"^klp-ld: error: plain\.ko: seed_a_pc32\+0x[0-9a-f]+: "
                      r"\.klp\.sym\.vmlinux\.state_show,2: R_X86_64_PC32 relocation against undefined "
                      r"livepatch identity", re.M)
    assert site.search(result.stderr), result.stderr
    assert re.search(r"plain\.ko: seed_b_ptr\+0x0: \.klp\.sym\.vmlinux\.state_show,3: "
                     r"R_X86_64_64 relocation against undefined livepatch identity", result.stderr)
    assert "klp-ld: error: plain.ko: .klp.module_relocs.vmlinux: annotation section left in the module" \
        in result.stderr


def test_final_link_rules_refuse_leftovers_too(plain_ko: Path) -> None:
    """The final link judges its output with the same function: nothing may point at an identity."""
    problems = check_module(read_elf_file(str(plain_ko)), [])
    codes = {p.code for p in problems if p.severity == "error"}
    assert {"unconverted-reloc", "annotation-left"} <= codes
    sites = [p for p in problems if p.code == "unconverted-reloc"]
    assert len(sites) == 8  # the annotation records are reported with their section
    assert all(p.symbol and p.symbol.startswith(".klp.sym.vmlinux.state_show,") for p in sites)


def _shdr_patch(path: Path, section: str, **fields: int) -> Path:
    """Rewrite fields of one section header in place, as a later tool would."""
    model = read_elf_file(str(path))
    index = next(i for i, s in enumerate(model.sections) if s.name == section)
    data = bytearray(path.read_bytes())
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    for field, value in fields.items():
        offset, size = _SHDR_FIELDS[field]
        data[shoff + index * 64 + offset:shoff + index * 64 + offset + size] = value.to_bytes(size, "little")
    out = path.with_name(f"rewritten-{len(fields)}.ko")
    out.write_bytes(bytes(data))
    return out


def test_check_recognises_sections_rewritten_by_objcopy(seed_ko: Path) -> None:
    """binutils 2.47's objcopy --add-section turns .klp.rela.* into type 0x60000004, link = info = 0."""
    name = ".klp.rela.vmlinux..text.seed_a_pc32"
    rewritten = _shdr_patch(seed_ko, name, sh_type=0x60000004, sh_link=0, sh_info=0)
    result = run_klp_ld(["check", str(rewritten)], seed_ko.parent)
    assert result.returncode == 1
    assert f"klp-ld: note: {rewritten}: {name}: section type 0x60000004 and sh_link 0: retyped after the " \
           "link (objcopy)" in result.stderr, result.stderr
    assert f"klp-ld: error: {rewritten}: {name}: sh_info is 0, not the section it relocates" in result.stderr


def test_check_accepts_a_retyped_section_whose_sh_info_survived(seed_ko: Path) -> None:
    """What objcopy 2.47 leaves of a section flagged SHF_GNU_MBIND: the loader reads it as it was."""
    name = ".klp.rela.vmlinux..text.seed_a_pc32"
    rewritten = _shdr_patch(seed_ko, name, sh_type=0x60000004, sh_link=0)
    result = run_klp_ld(["check", str(rewritten)], seed_ko.parent)
    assert result.returncode == 0, result.stderr
    assert f"{rewritten}: OK" in result.stdout
    assert "klp-ld: error" not in result.stderr


@pytest.mark.parametrize(("fields", "expect"), [
    ({"sh_flags": 0x40 | 0x00100000}, "flags 0x100040 lack SHF_ALLOC"),
    ({"sh_flags": 0x2 | 0x40}, "flags 0x42 lack SHF_RELA_LIVEPATCH"),
])
def test_check_names_each_header_field_the_kernel_needs(seed_ko: Path, fields: dict[str, int],
                                                        expect: str) -> None:
    name = ".klp.rela.vmlinux..data.seed_b_ptr"
    result = run_klp_ld(["check", str(_shdr_patch(seed_ko, name, **fields))], seed_ko.parent)
    assert result.returncode == 1
    assert any(f": {name}: " in x and expect in x for x in result.stderr.splitlines()), result.stderr


def test_check_refuses_a_klp_symbol_that_lost_shn_livepatch(seed_ko: Path) -> None:
    """ld -r over a converted module turns SHN_LIVEPATCH into SHN_ABS."""
    model = read_elf_file(str(seed_ko))
    assert model.symtab is not None and model.symtab.file_offset is not None
    index = next(i for i, s in enumerate(model.symbols) if s.name == ".klp.sym.vmlinux.state_show,2")
    data = bytearray(seed_ko.read_bytes())
    struct.pack_into("<H", data, model.symtab.file_offset + index * 24 + 6, SHN_ABS)
    broken = seed_ko.with_name("abs.ko")
    broken.write_bytes(bytes(data))
    result = run_klp_ld(["check", str(broken)], seed_ko.parent)
    assert result.returncode == 1
    assert (f"klp-ld: error: {broken}: .klp.sym.vmlinux.state_show,2: livepatch symbol is SHN_ABS (0xfff1), "
            "not SHN_LIVEPATCH (0xff20)") in result.stderr, result.stderr


def _kallsyms_and_symvers(tmp_path: Path) -> tuple[Path, Path]:
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text((OBJECTS / "kallsyms.txt").read_text()
                        + "ffffffffa0001000 t dummy_export\t[dummy]\n")
    symvers = tmp_path / "exports.symvers"
    symvers.write_text((OBJECTS / "exports.symvers").read_text()
                       + "0x3456789a\tdummy_export\tdrivers/net/dummy\tEXPORT_SYMBOL_GPL\t\n")
    return kallsyms, symvers


def test_check_flags_a_vmlinux_export_behind_a_klp_relocation(tmp_path: Path, toolchain: Toolchain) -> None:
    src = tmp_path / "exp.s"
    src.write_text('\t.section .text.f,"ax"\n\t.globl f\n\t.type f,@function\nf:\n'
                   '\tmov ".klp.sym.vmlinux.jiffies,0"(%rip), %rax\n'
                   '\tcall ".klp.sym.dummy.dummy_export,0"\n\tret\n\t.size f, .-f\n')
    obj = tmp_path / "exp.o"
    subprocess.run(["as", "-o", str(obj), str(src)], check=True)
    shutil.copy(OBJECTS / "module.lds", tmp_path / "module.lds")
    modinfo = str(toolchain.build("modinfo.c"))
    linked = run_klp_ld(["-r", "-T", "module.lds", "-o", "exp.ko", str(obj), modinfo], tmp_path)
    assert linked.returncode == 0, linked.stderr
    kallsyms, symvers = _kallsyms_and_symvers(tmp_path)
    result = run_klp_ld(["check", "exp.ko", f"--klp-symbols={kallsyms}", f"--klp-symvers={symvers}"],
                        tmp_path)
    assert result.returncode == 1, result.stdout
    assert re.search(r"klp-ld: error: exp\.ko: f\+0x3: \.klp\.sym\.vmlinux\.jiffies,0: jiffies is "
                     r"exported by vmlinux", result.stderr), result.stderr
    # An export of a module stays allowed: the patch may load before that module does.
    assert "dummy_export" not in result.stderr
    # Without the exports the same module passes: nothing to hold it to.
    plain = run_klp_ld(["check", "exp.ko", f"--klp-symbols={kallsyms}"], tmp_path)
    assert plain.returncode == 0, plain.stderr


def test_a_wrong_sh_link_is_a_warning_since_the_loader_does_not_read_it(seed_ko: Path) -> None:
    name = ".klp.rela.vmlinux..data.seed_b_ptr"
    result = run_klp_ld(["check", str(_shdr_patch(seed_ko, name, sh_link=1))], seed_ko.parent)
    assert result.returncode == 0, result.stderr
    assert any(x.startswith("klp-ld: warning: ") and f": {name}: sh_link is 1 (" in x
               for x in result.stderr.splitlines()), result.stderr
