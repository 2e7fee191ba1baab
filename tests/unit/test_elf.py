"""The ELF model: exact round trips, and the writer's invariants when the model changes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klp_ld.diag import KlpLdError
from klp_ld.elf.consts import SHN_ABS, SHN_COMMON, SHN_LIVEPATCH, STB_GLOBAL, STB_LOCAL, STT_OBJECT
from klp_ld.elf.model import Symbol
from klp_ld.elf.read import read_elf, read_elf_file
from klp_ld.elf.write import write_elf

from .conftest import Toolchain

SOURCES = ["seed_a.c", "seed_b.c", "plain.c", "dotted.s", "modinfo.c"]


def _readelf(path: Path) -> str:
    text = subprocess.run(["readelf", "-W", "-S", "-s", "-r", "-g", str(path)], capture_output=True,
                          text=True, check=True).stdout
    # Offsets in the file may move; everything else must match.
    return re.sub(r"(?m)^(\s+\[\s*\d+\]\s+\S+\s+\S+\s+\S+\s+)\S+", r"\1OFF", text)


@pytest.mark.parametrize("source", SOURCES)
def test_unchanged_object_round_trips_byte_for_byte(toolchain: Toolchain, source):
    path = toolchain.build(source)
    data = path.read_bytes()
    assert write_elf(read_elf(data, str(path))) == data


def test_comdat_groups_round_trip(tmp_path):
    src = tmp_path / "g.cc"
    src.write_text("template<int N> int f() { return N; }\nint use() { return f<1>() + f<2>(); }\n")
    obj = tmp_path / "g.o"
    if subprocess.run(["g++", "-c", "-O0", "-o", str(obj), str(src)], capture_output=True).returncode:
        pytest.skip("g++ is not installed")
    model = read_elf_file(str(obj))
    assert any(s.is_group for s in model.sections)
    # Adding a local symbol moves every global: groups and relocations must follow.
    model.symbols.append(Symbol("added_local", bind=STB_LOCAL, type=STT_OBJECT, section=model.sections[1]))
    out = tmp_path / "g2.o"
    out.write_bytes(write_elf(model))
    assert "added_local" in _readelf(out)
    subprocess.run(["ld", "-r", "-o", str(tmp_path / "linked.o"), str(out)], check=True)
    assert _readelf(obj).count("COMDAT") == _readelf(out).count("COMDAT")


def test_locals_first_and_indices_remapped(toolchain: Toolchain, tmp_path):
    path = toolchain.build("seed_a.c")
    model = read_elf_file(str(path))
    text = next(s for s in model.sections if s.name == ".text.seed_a_pc32")
    model.symbols.append(Symbol("late_local", value=0, bind=STB_LOCAL, type=STT_OBJECT, section=text))
    model.symbols.append(Symbol("abs_sym", value=0x1234, bind=STB_GLOBAL, special=SHN_ABS))
    model.symbols.append(Symbol("common_sym", value=8, size=8, bind=STB_GLOBAL, special=SHN_COMMON))
    model.symbols.append(Symbol("lp_sym", bind=STB_GLOBAL, special=SHN_LIVEPATCH))
    out = tmp_path / "x.o"
    out.write_bytes(write_elf(model))
    again = read_elf_file(str(out))
    binds = [s.bind for s in again.symbols[1:]]
    assert binds == sorted(binds, key=lambda b: b != STB_LOCAL)
    assert again.symtab is not None and again.symtab.info == 1 + binds.count(STB_LOCAL)
    by_name = {s.name: s for s in again.symbols}
    assert by_name["abs_sym"].special == SHN_ABS and by_name["common_sym"].special == SHN_COMMON
    assert by_name["lp_sym"].special == SHN_LIVEPATCH
    # Relocations still name the same symbols after renumbering.
    before = sorted((t.name, r.offset, r.symbol.name if r.symbol else "") for t, r in model.relocs_against())
    after = sorted((t.name, r.offset, r.symbol.name if r.symbol else "") for t, r in again.relocs_against())
    assert before == after
    subprocess.run(["ld", "-r", "-o", str(tmp_path / "y.o"), str(out)], check=True)
    readelf = subprocess.run(["readelf", "-W", "-a", str(out)], capture_output=True, text=True, check=True)
    assert "Warning" not in readelf.stderr


def test_signed_64_bit_addends_survive(tmp_path):
    src = tmp_path / "a.s"
    src.write_text(".data\n.quad ext+0x80000000\n.quad ext-0x80000000\n.quad ext+0x7fffffffffffffff\n")
    obj = tmp_path / "a.o"
    subprocess.run(["as", "-o", str(obj), str(src)], check=True)
    model = read_elf_file(str(obj))
    addends = [r.addend for _, r in model.relocs_against()]
    assert addends == [0x80000000, -0x80000000, 0x7FFFFFFFFFFFFFFF]
    assert write_elf(model) == obj.read_bytes()


def test_removing_a_section_drops_its_relocations_and_symbols(toolchain: Toolchain):
    model = read_elf_file(str(toolchain.build("seed_a.c")))
    doomed = {s for s in model.sections if s.name == ".klp.module_relocs.vmlinux"}
    assert not model.remove_sections(doomed)
    assert not any(s.name.endswith("klp.module_relocs.vmlinux") for s in model.sections)
    assert not any(s.name == "seed_a_relocs" for s in model.symbols)
    read_elf(write_elf(model), "again")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_reader_rejects_corruption_with_one_clear_error(toolchain: Toolchain, data):
    original = toolchain.build("seed_b.c").read_bytes()
    blob = bytearray(original)
    choice = data.draw(st.sampled_from(["truncate", "flip", "header"]))
    if choice == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif choice == "flip":
        for _ in range(data.draw(st.integers(1, 16))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    else:  # aim at the headers, where offsets and sizes live
        shoff = int.from_bytes(original[0x28:0x30], "little")
        at = data.draw(st.one_of(st.integers(0x10, 0x3F), st.integers(shoff, len(blob) - 1)))
        blob[at] = data.draw(st.integers(0, 255))
    try:
        model = read_elf(bytes(blob), "fuzz.o")
    except KlpLdError as exc:
        (diag,) = exc.diagnostics
        assert diag.obj == "fuzz.o" and "\n" not in diag.render()
        return
    write_elf(model)  # whatever parsed must also write
