"""Annotations held to the target's symbols; unannotated references resolved when unique."""

from __future__ import annotations

import subprocess
from pathlib import Path

from klp_ld.elf.read import read_elf_file

from .conftest import OBJECTS, Toolchain, run_klp_ld

SOURCES = [f"--klp-symbols={OBJECTS / 'kallsyms.txt'}", f"--klp-symvers={OBJECTS / 'exports.symvers'}"]


def _link(tmp_path: Path, toolchain: Toolchain, *sources: str, extra: tuple[str, ...] = ()):
    """A partial link of a livepatch module: modinfo.o carries MODULE_INFO(livepatch, "Y")."""
    objs = [str(toolchain.build(s)) for s in (*sources, "modinfo.c")]
    return run_klp_ld([*SOURCES, *extra, "-r", "-o", "m.o", *objs], tmp_path)


def test_positions_are_checked_and_explained(tmp_path, toolchain):
    result = _link(tmp_path, toolchain, "seed_a.c", "seed_b.c", extra=("--klp-verbose",))
    assert result.returncode == 0, result.stderr
    assert ("seed_a.o: rename state_show -> .klp.sym.vmlinux.state_show,2 (annotated at "
            ".klp.module_relocs.vmlinux+0x0; 2 of 5 in vmlinux)") in result.stderr
    assert "seed_b.o: .text.seed_b_pc32+0x3 R_X86_64_PC32 state_show-4 -> .klp.sym.vmlinux.state_show,3 " \
           "(annotated at .klp.module_relocs.vmlinux+0x0; 3 of 5 in vmlinux)" in result.stderr



def test_a_module_that_is_not_a_livepatch_passes_through(tmp_path, toolchain):
    objs = [str(toolchain.build("auto.c"))]
    result = run_klp_ld([*SOURCES, "--klp-verbose", "-r", "-o", "m.o", *objs], tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert "saved_command_line" in {s.name for s in read_elf_file(str(tmp_path / "m.o")).symbols}


def test_unique_unannotated_reference_is_resolved_and_exports_stay(tmp_path, toolchain):
    result = _link(tmp_path, toolchain, "auto.c", extra=("--klp-verbose",))
    assert result.returncode == 0, result.stderr
    assert "rename saved_command_line -> .klp.sym.vmlinux.saved_command_line,0 (not exported; unique " \
           "in vmlinux)" in result.stderr
    names = {s.name for s in read_elf_file(str(tmp_path / "m.o")).symbols if s.is_undefined}
    assert ".klp.sym.vmlinux.saved_command_line,0" in names and "jiffies" in names


def test_ambiguous_unannotated_reference_lists_every_candidate(tmp_path, toolchain):
    result = _link(tmp_path, toolchain, "ambiguous-FAIL.c")
    assert result.returncode == 1
    assert "klp-ld: error: " in result.stderr and "state_show is not exported and not annotated, and it " \
           "is not unique: vmlinux (5 copies)" in result.stderr
    for pos, addr in enumerate(["ffffffff826a29c0", "ffffffff827130d0", "ffffffff82c644e0",
                                "ffffffff82c70dc0", "ffffffff82d14e30"], 1):
        assert f">>> KLP_MODULE_RELOC(vmlinux): KLP_SYMPOS(state_show, {pos})  /* {addr} t, vmlinux */" \
            in result.stderr
    assert not (tmp_path / "m.o").exists()


def test_names_with_dots_are_counted_exactly(tmp_path, toolchain):
    result = _link(tmp_path, toolchain, "dotted.s")
    # foo.isra.0 has two copies and position 2 exists; bar.cold is unique; saved_command_line too.
    # The SUSE name for module 'dummy' has no source: it is not held to anything.
    assert result.returncode == 0, result.stderr


def test_global_that_shadows_an_export_is_refused(tmp_path, toolchain):
    result = _link(tmp_path, toolchain, "shadow-FAIL.c")
    assert result.returncode == 1
    assert "shadow-FAIL.o: __kmalloc: " in result.stderr
    assert "defines global __kmalloc, also exported by vmlinux" in result.stderr


def test_wrong_position_suggests_what_exists(tmp_path, toolchain):
    asm = tmp_path / "w.s"
    asm.write_text('\t.section .klp.module_relocs.vmlinux,"aw"\n\t.quad foo.isra.0\n\t.long 3\n'
                   '\t.quad uncond.48011\n\t.long 0\n\t.text\n\tcall foo.isra.0\n\tcall uncond.48011\n')
    result = run_klp_ld([*SOURCES, "-r", "-o", "m.o", str(_assemble(asm)), str(toolchain.build("modinfo.c"))],
                        tmp_path)
    assert result.returncode == 1
    assert "w.o: .klp.module_relocs.vmlinux+0x0: foo.isra.0: foo.isra.0 has 2 copies in vmlinux; " \
           "position 3 does not exist" in result.stderr
    assert "uncond.48011 is not a symbol of vmlinux" in result.stderr


def _assemble(source: Path) -> Path:
    out = source.with_suffix(".o")
    subprocess.run(["as", "-o", str(out), str(source)], check=True)
    return out
