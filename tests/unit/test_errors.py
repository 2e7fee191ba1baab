"""Every user mistake ends in ld-style `klp-ld: error:` lines, exit status 1 and no output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klp_ld.elf.consts import SHT_NOBITS
from klp_ld.elf.read import read_elf_file
from klp_ld.elf.write import write_elf

from .conftest import Toolchain, run_klp_ld


def _fails(tmp_path: Path, toolchain: Toolchain, source: str, watch) -> str:
    obj = toolchain.build(source)
    watch(obj)
    result = run_klp_ld(["-r", "-o", "out.o", str(obj)], tmp_path)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.o").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary output either
    lines = [line for line in result.stderr.splitlines() if not line.startswith(">>> ")]
    assert lines and all(line.startswith("klp-ld: error: ") for line in lines), result.stderr
    return result.stderr


def test_conflicting_positions_in_one_object(tmp_path, toolchain, watch_inputs):
    err = _fails(tmp_path, toolchain, "conflict-FAIL.c", watch_inputs)
    assert "conflict-FAIL.o: .klp.module_relocs.vmlinux: state_show: state_show is annotated more " \
           "than once with different meanings (vmlinux position 2, vmlinux position 3)" in err
    assert ">>> .klp.module_relocs.vmlinux+0x0: vmlinux position 2" in err
    assert ">>> .klp.module_relocs.vmlinux+0xc: vmlinux position 3" in err


def test_annotation_of_a_defined_symbol(tmp_path, toolchain, watch_inputs):
    err = _fails(tmp_path, toolchain, "defined-FAIL.c", watch_inputs)
    assert "defined-FAIL.o: .klp.module_relocs.vmlinux+0x0: local_helper: annotation names local_helper, " \
           "which is defined in this object" in err


def test_object_name_with_a_dash_suggests_the_module_name(tmp_path, toolchain, watch_inputs):
    err = _fails(tmp_path, toolchain, "badobj-FAIL.c", watch_inputs)
    assert "badobj-FAIL.o: .klp.module_relocs.dummy-net+0x0: numdummies: object name 'dummy-net' is not " \
           "the kernel's module name: mod->name uses '_' for '-', so write 'dummy_net'" in err


def test_truncated_record(tmp_path, toolchain, watch_inputs):
    err = _fails(tmp_path, toolchain, "truncated-FAIL.s", watch_inputs)
    assert "truncated-FAIL.o: .klp.module_relocs.vmlinux+0x0: state_show: annotation record at 0x0 is " \
           "cut off: the section has 0x8 bytes, a record needs 12" in err


def test_record_with_the_wrong_relocation(tmp_path, toolchain, watch_inputs):
    err = _fails(tmp_path, toolchain, "badreloc-FAIL.s", watch_inputs)
    assert "badreloc-FAIL.o: .klp.module_relocs.vmlinux+0x0: state_show: annotation record relocation " \
           "has type R_X86_64_32; expected R_X86_64_64" in err


def test_failure_keeps_a_previous_good_output(tmp_path, toolchain):
    obj = toolchain.build("conflict-FAIL.c")
    previous = tmp_path / "out.o"
    previous.write_bytes(b"previous good output")
    result = run_klp_ld(["-r", "-o", "out.o", str(obj)], tmp_path)
    assert result.returncode == 1
    assert previous.read_bytes() == b"previous good output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.o"]


def test_ld_failure_passes_its_status_and_words(tmp_path, toolchain):
    obj = toolchain.build("seed_a.c")
    result = run_klp_ld(["-r", "-o", "out.o", str(obj), "--no-such-ld-option"], tmp_path)
    assert result.returncode == 1
    assert "ld: unrecognized option '--no-such-ld-option'" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize("cut", [0, 10, 63, 64, 200, -1])
def test_truncated_elf_is_one_line(tmp_path, toolchain, cut):
    data = toolchain.build("seed_a.c").read_bytes()
    bad = tmp_path / "bad.o"
    bad.write_bytes(data[:cut] if cut >= 0 else data[: len(data) - 100])
    result = run_klp_ld(["-r", "-o", "out.o", "bad.o"], tmp_path)
    if 0 <= cut < 4:
        # Without the ELF magic there is nothing livepatch about it: ld judges it alone.
        plain = subprocess.run(["ld", "-r", "-o", "plain.o", "bad.o"], cwd=tmp_path, capture_output=True,
                               text=True, check=False)
        assert (result.returncode, result.stderr) == (plain.returncode, plain.stderr)
        return
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.o").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_annotated_object_never_tracebacks(tmp_path_factory, toolchain, data):
    """Flip bytes anywhere in an annotated object: klp-ld either links or says one clear thing."""
    original = bytearray(toolchain.build("seed_a.c").read_bytes())
    count = data.draw(st.integers(1, 8))
    for _ in range(count):
        at = data.draw(st.integers(0, len(original) - 1))
        original[at] = data.draw(st.integers(0, 255))
    work = tmp_path_factory.mktemp("fuzz")
    (work / "in.o").write_bytes(bytes(original))
    result = run_klp_ld(["-r", "-o", "out.o", "in.o"], work)
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    if result.returncode != 0:
        assert not (work / "out.o").exists()
        klp_lines = [line for line in result.stderr.splitlines() if line.startswith("klp-ld:")]
        assert all(line.startswith("klp-ld: error: ") for line in klp_lines), result.stderr


def test_annotation_section_without_contents(tmp_path, toolchain):
    """Found by fuzzing: an annotation section turned SHT_NOBITS has a size but no bytes."""
    model = read_elf_file(str(toolchain.build("seed_a.c")))
    sec = next(s for s in model.sections if s.name == ".klp.module_relocs.vmlinux")
    sec.type, sec.nobits_size, sec.data = SHT_NOBITS, len(sec.data), b""
    (tmp_path / "nobits.o").write_bytes(write_elf(model))
    result = run_klp_ld(["-r", "-o", "out.o", "nobits.o"], tmp_path)
    assert result.returncode == 1
    assert "nobits.o: .klp.module_relocs.vmlinux: annotation section has no contents (SHT_NOBITS)" \
        in result.stderr
    assert not (tmp_path / "out.o").exists()
