"""The core problem: per-object annotations survive `ld -r` as distinct identities."""

from __future__ import annotations

import subprocess
from pathlib import Path

from klp_ld.elf.consts import STB_WEAK, STT_NOTYPE
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf_file

from .conftest import Toolchain, run_klp_ld


def _link(tmp_path: Path, toolchain: Toolchain, sources: list[str], out: str = "m.o",
          extra: list[str] | None = None):
    objs = [toolchain.build(s) for s in sources]
    result = run_klp_ld(["-m", "elf_x86_64", "-z", "noexecstack", *(extra or []), "-r", "-o", out,
                         *map(str, objs)], tmp_path)
    return objs, result


def _function_of(obj: ElfObject, section_name: str, offset: int) -> str:
    sec = next(s for s in obj.sections if s.name == section_name)
    hit = obj.symbol_at(sec, offset)
    assert hit is not None
    return hit[0].name


def test_two_objects_keep_two_positions(tmp_path, toolchain, watch_inputs):
    objs = [toolchain.build("seed_a.c"), toolchain.build("seed_b.c")]
    watch_inputs(*objs)
    result = run_klp_ld(["-m", "elf_x86_64", "-r", "-o", "m.o", *map(str, objs)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = read_elf_file(str(tmp_path / "m.o"))
    identities = {s.name: s for s in out.symbols if s.name.startswith(".klp.sym.")}
    assert set(identities) == {".klp.sym.vmlinux.state_show,2", ".klp.sym.vmlinux.state_show,3"}
    for sym in identities.values():
        assert sym.is_undefined and sym.bind == STB_WEAK and sym.type == STT_NOTYPE
    assert not any(s.name == "state_show" for s in out.symbols)

    # Every relocation of a's code points at ,2 and every one of b's at ,3.
    seen: dict[str, set[str]] = {"a": set(), "b": set()}
    types: set[int] = set()
    for target, rela in out.relocs_against():
        if rela.symbol is None or not rela.symbol.name.startswith(".klp.sym."):
            continue
        if target.name.startswith(".klp.module_relocs."):
            continue
        owner = _function_of(out, target.name, rela.offset)
        seen[owner.split("_")[1]].add(rela.symbol.name)
        types.add(rela.type)
    assert seen == {"a": {".klp.sym.vmlinux.state_show,2"}, "b": {".klp.sym.vmlinux.state_show,3"}}
    assert types == {1, 2, 4, 11}  # R_X86_64_64, PC32, PLT32, 32S

    # The merged annotation section still describes both; each input section keeps its alignment,
    # so the second record does not follow the first at a 12-byte stride.
    ann = next(s for s in out.rela_sections() if s.name == ".rela.klp.module_relocs.vmlinux")
    records = sorted((r.offset, r.symbol.name if r.symbol else "") for r in ann.relocs)
    assert [name for _, name in records] == [".klp.sym.vmlinux.state_show,2", ".klp.sym.vmlinux.state_show,3"]
    assert records[0][0] == 0 and records[1][0] >= 12
    # The exported symbol is still an ordinary reference.
    assert any(s.name == "jiffies" and s.is_undefined and s.bind != STB_WEAK for s in out.symbols)


def test_unannotated_object_keeps_its_own_meaning(tmp_path, toolchain):
    _, result = _link(tmp_path, toolchain, ["seed_a.c", "plain.c"])
    assert result.returncode == 0, result.stderr
    out = read_elf_file(str(tmp_path / "m.o"))
    names = {s.name for s in out.symbols if s.is_undefined}
    assert "state_show" in names  # plain.o's reference is not annotated
    assert ".klp.sym.vmlinux.state_show,2" in names


def test_link_without_annotations_is_byte_identical_to_ld(tmp_path, toolchain):
    plain = toolchain.build("plain.c")
    result = run_klp_ld(["-r", "-o", "klp.o", str(plain)], tmp_path)
    assert result.returncode == 0
    subprocess.run(["ld", "-r", "-o", str(tmp_path / "ld.o"), str(plain)], check=True)
    assert (tmp_path / "klp.o").read_bytes() == (tmp_path / "ld.o").read_bytes()


def test_response_file_is_regenerated_for_renamed_inputs(tmp_path, toolchain, watch_inputs):
    objs = [toolchain.build("seed_a.c"), toolchain.build("seed_b.c")]
    mod = tmp_path / "m.mod"
    mod.write_text("".join(f"{o}\n" for o in objs))
    watch_inputs(mod, *objs)
    result = run_klp_ld(["-r", "-o", "m.o", "@m.mod", "--klp-verbose"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "args-" in result.stderr and ".rsp" in result.stderr
    out = read_elf_file(str(tmp_path / "m.o"))
    assert sum(s.name.startswith(".klp.sym.") for s in out.symbols) == 2


def test_dotted_names_and_other_dialects(tmp_path, toolchain):
    obj = toolchain.build("dotted.s")
    result = run_klp_ld(["-r", "-o", "d.o", str(obj)], tmp_path)
    assert result.returncode == 0, result.stderr
    names = {s.name for s in read_elf_file(str(tmp_path / "d.o")).symbols if s.is_undefined}
    assert names >= {".klp.sym.vmlinux.foo.isra.0,2", ".klp.sym.vmlinux.bar.cold,0",
                     ".klp.sym.dummy.numdummies,0", ".klp.sym.vmlinux.saved_command_line,0"}


def test_dry_run_writes_nothing(tmp_path, toolchain):
    objs = [toolchain.build("seed_a.c"), toolchain.build("seed_b.c")]
    result = run_klp_ld(["--dry-run", "-r", "-o", "m.o", *map(str, objs)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "m.o").exists()
    assert "rename state_show -> .klp.sym.vmlinux.state_show,2" in result.stdout
    assert "R_X86_64_PC32 state_show-4 -> .klp.sym.vmlinux.state_show,3" in result.stdout
    assert "would run: ld " in result.stdout
    assert list(tmp_path.iterdir()) == []
