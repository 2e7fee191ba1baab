"""The module kbuild leaves behind is the one that must be right, not the one the final link wrote.

kbuild 7.x adds module BTF to the `.ko` with `objcopy --add-section` after the final link. GNU
objcopy from binutils 2.46 on rewrites every `.klp.rela.*` section that shares its target with a
`.rela.*` section to type 0x60000004 with sh_link = sh_info = 0, which the loader applies at
address 0. These tests stand a script in for objcopy that does exactly that to sections without
SHF_GNU_MBIND (whose sh_info BFD copies verbatim), so they run on any host.
"""

from __future__ import annotations

import shutil
import struct
import sys
from pathlib import Path

import pytest

from klp_ld.elf.consts import SHF_RELA_LIVEPATCH, SHN_LIVEPATCH
from klp_ld.elf.read import read_elf, read_elf_file
from klp_ld.postlink import SHF_GNU_MBIND, btf_step, damage, klp_view
from klp_ld.target import Target

from .conftest import OBJECTS, Toolchain, run_klp_ld

RELEASE = "7.2.0-test"

# objcopy as binutils 2.46+ behaves on x86_64, or one that breaks even the MBIND form.
FAKE_OBJCOPY = r'''#!{python}
import struct, sys
mode = {mode!r}
path = sys.argv[-1]
data = bytearray(open(path, "rb").read())
shoff, = struct.unpack_from("<Q", data, 0x28)
shnum, = struct.unpack_from("<H", data, 0x3c)
for i in range(shnum):
    at = shoff + i * 64
    name, typ, flags = struct.unpack_from("<IIQ", data, at)
    if flags & 0x100000 and (mode == "all" or not flags & 0x01000000):
        struct.pack_into("<I", data, at + 4, 0x60000004)
        struct.pack_into("<II", data, at + 40, 0, 0)
if mode != "none":
    open(path, "wb").write(data)
'''


def make_headers(path: Path, btf: bool = True, vmlinux: bool = True) -> Path:
    (path / "include" / "generated").mkdir(parents=True)
    (path / "include" / "generated" / "utsrelease.h").write_text(f'#define UTS_RELEASE "{RELEASE}"\n')
    (path / "include" / "config").mkdir(parents=True)
    (path / "include" / "config" / "auto.conf").write_text(
        "CONFIG_MODULES=y\n" + ("CONFIG_DEBUG_INFO_BTF_MODULES=y\n" if btf else ""))
    (path / "arch" / "x86").mkdir(parents=True)
    shutil.copy(OBJECTS / "module.lds", path / "arch" / "x86" / "module.lds")
    shutil.copy(OBJECTS / "exports.symvers", path / "Module.symvers")
    if vmlinux:
        (path / "vmlinux").write_bytes(b"\x7fELF")
    return path


def fake_objcopy(tmp_path: Path, mode: str) -> Path:
    script = tmp_path / f"objcopy-{mode}"
    script.write_text(FAKE_OBJCOPY.format(python=sys.executable, mode=mode))
    script.chmod(0o755)
    return script


# --- when kbuild will rewrite the module --------------------------------------------------------------


def test_btf_step_follows_makefile_modfinal(tmp_path: Path) -> None:
    headers = make_headers(tmp_path / "h")
    target = Target(str(headers), RELEASE, "test")
    step = btf_step(target, {"OBJCOPY": "/opt/x/objcopy"})
    assert step is not None and step.objcopy == "/opt/x/objcopy"
    assert btf_step(target, {"CROSS_COMPILE": "x86_64-linux-gnu-"}) is not None
    assert btf_step(target, {"CONFIG_DEBUG_INFO_BTF_MODULES": ""}) is None  # make ... CONFIG_..._MODULES=
    assert btf_step(Target(None, None, "nothing"), {}) is None


@pytest.mark.parametrize(("btf", "vmlinux"), [(False, True), (True, False)])
def test_no_btf_step_without_its_configuration_or_vmlinux(tmp_path: Path, btf: bool, vmlinux: bool) -> None:
    headers = make_headers(tmp_path / "h", btf=btf, vmlinux=vmlinux)
    assert btf_step(Target(str(headers), RELEASE, "test"), {}) is None


# --- the final link -----------------------------------------------------------------------------------


def _build(tmp_path: Path, toolchain: Toolchain, objcopy: Path):
    headers = make_headers(tmp_path / "headers")
    module = tmp_path / "module"
    module.mkdir()
    objs = [str(toolchain.build(s)) for s in ("seed_a.c", "seed_b.c")]
    env = {"objtree": "../headers", "OBJCOPY": str(objcopy), "KLP_LD_TEST_ROOT": str(tmp_path / "root")}
    partial = run_klp_ld(["-r", "-o", "m.o", *objs], module, env)
    assert partial.returncode == 0, partial.stderr
    lds = str(headers / "arch" / "x86" / "module.lds")
    return module, run_klp_ld(["--klp-verbose", "-r", "-T", lds, "-o", "m.ko", "m.o",
                               str(toolchain.build("modinfo.c"))], module, env)


def _klp_flags(ko: Path) -> set[int]:
    return {s.flags for s in read_elf_file(str(ko)).sections if s.flags & SHF_RELA_LIVEPATCH}


def test_an_objcopy_that_keeps_livepatch_sections_gets_the_plain_form(tmp_path: Path,
                                                                      toolchain: Toolchain) -> None:
    module, result = _build(tmp_path, toolchain, fake_objcopy(tmp_path, "none"))
    assert result.returncode == 0, result.stderr
    assert "the livepatch sections come through it unchanged" in result.stderr
    assert not any(f & SHF_GNU_MBIND for f in _klp_flags(module / "m.ko"))


def test_an_objcopy_that_drops_sh_info_gets_sections_it_keeps(tmp_path: Path, toolchain: Toolchain) -> None:
    objcopy = fake_objcopy(tmp_path, "secondary")
    module, result = _build(tmp_path, toolchain, objcopy)
    assert result.returncode == 0, result.stderr
    assert "they carry SHF_GNU_MBIND" in result.stderr
    ko = module / "m.ko"
    assert _klp_flags(ko) and all(f & SHF_GNU_MBIND for f in _klp_flags(ko))
    # What kbuild runs next leaves every relocation where the loader will look for it.
    before = klp_view(read_elf(ko.read_bytes(), "before"))
    import subprocess

    subprocess.run([str(objcopy), "--add-section", ".BTF=x", str(ko)], check=True)
    after = klp_view(read_elf(ko.read_bytes(), "after"))
    assert damage(before, after) == []
    assert all(v.target and v.entries and all(e[4] == SHN_LIVEPATCH for e in v.entries) for v in after)


def test_an_objcopy_that_breaks_every_form_fails_the_link(tmp_path: Path, toolchain: Toolchain) -> None:
    module, result = _build(tmp_path, toolchain, fake_objcopy(tmp_path, "all"))
    assert result.returncode == 1
    assert "kbuild's module BTF step will break this module's livepatch relocations" in result.stderr
    assert "now applies to no section (sh_info 0)" in result.stderr
    assert ">>> a livepatch module needs no BTF: build it with make ... CONFIG_DEBUG_INFO_BTF_MODULES=" \
        in result.stderr
    assert not (module / "m.ko").exists()


def test_the_hosts_objcopy_is_judged_by_what_it_does(tmp_path: Path, toolchain: Toolchain) -> None:
    """The real objcopy, whatever its version: the module the link leaves survives it."""
    objcopy = shutil.which("objcopy")
    assert objcopy is not None, "binutils' objcopy is needed"
    module, result = _build(tmp_path, toolchain, Path(objcopy))
    assert result.returncode == 0, result.stderr
    ko = module / "m.ko"
    before = klp_view(read_elf(ko.read_bytes(), "before"))
    import subprocess

    subprocess.run([objcopy, "--add-section", f".BTF={ko}", str(ko)], check=True)
    assert damage(before, klp_view(read_elf(ko.read_bytes(), "after"))) == []


def test_the_view_reads_a_retyped_section_like_the_loader(tmp_path: Path, toolchain: Toolchain) -> None:
    module, result = _build(tmp_path, toolchain, fake_objcopy(tmp_path, "none"))
    assert result.returncode == 0, result.stderr
    data = bytearray((module / "m.ko").read_bytes())
    before = klp_view(read_elf(bytes(data), "m.ko"))
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shnum, = struct.unpack_from("<H", data, 0x3C)
    for i in range(shnum):
        at = shoff + i * 64
        if struct.unpack_from("<Q", data, at + 8)[0] & SHF_RELA_LIVEPATCH:
            struct.pack_into("<I", data, at + 4, 0x60000004)  # type only: sh_info intact
    assert klp_view(read_elf(bytes(data), "m.ko")) == before
