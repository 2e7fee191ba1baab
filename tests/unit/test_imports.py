"""What a link imports: a partial link needs neither pyelftools nor capstone, and a final link imports
capstone only when it has text sites to decode.

Each link runs ``klp_ld.launch.main`` in a fresh ``python -I -S`` process (as the command runs it) that
then lists ``sys.modules``.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import OBJECTS, ROOT, Toolchain

# Only state_show(), annotated, through a data pointer: the final link converts it but has no text site.
DATA_ONLY = """\
#include "klp.h"

extern int state_show(void);

KLP_MODULE_RELOC(vmlinux) data_only_relocs[] = {
	KLP_SYMPOS(state_show, 2),
};

int (*data_only_ptr)(void) = state_show;
"""

PROBE = """\
import sys
sys.path.insert(0, sys.argv[1])
from klp_ld.launch import main
status = main(["klp-ld", *sys.argv[3:]])
with open(sys.argv[2], "w") as out:
    out.write("\\n".join([str(status), *sorted(sys.modules)]))
"""

HEAVY = ("elftools", "capstone")


def _link_modules(cwd: Path, args: list[str]) -> set[str]:
    """Run one link in a fresh interpreter; returns the top-level names of the modules it imported."""
    listing = cwd / "modules.txt"
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", PROBE, str(ROOT), str(listing), *args],
                          cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    status, *modules = listing.read_text().splitlines()
    assert status == "0", proc.stderr
    return {name.split(".")[0] for name in modules}


def _objects(tmp_path: Path, toolchain: Toolchain) -> dict[str, Path]:
    (tmp_path / "data_only.c").write_text(DATA_ONLY)
    data_only = tmp_path / "data_only.o"
    subprocess.run([toolchain.gcc, "-c", "-O2", "-mcmodel=kernel", "-fno-pic", "-I", str(OBJECTS), "-o",
                    str(data_only), str(tmp_path / "data_only.c")], check=True, capture_output=True)
    shutil.copy(OBJECTS / "module.lds", tmp_path / "module.lds")
    return {"text": toolchain.build("seed_a.c"), "data": data_only, "modinfo": toolchain.build("modinfo.c")}


def _final(partial: Path, modinfo: Path) -> list[str]:
    return ["-r", "-m", "elf_x86_64", "--build-id=sha1", "-T", "module.lds", "-o", "m.ko", str(partial),
            str(modinfo)]


@pytest.mark.parametrize("kind", ["text", "data"])
def test_a_partial_link_imports_neither_pyelftools_nor_capstone(tmp_path: Path, toolchain: Toolchain,
                                                                 kind: str) -> None:
    objs = _objects(tmp_path, toolchain)
    modules = _link_modules(tmp_path, ["-m", "elf_x86_64", "-r", "-o", "m.o", str(objs[kind])])
    assert "klp_ld" in modules
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_a_final_link_without_text_sites_does_not_import_capstone(tmp_path: Path,
                                                                  toolchain: Toolchain) -> None:
    objs = _objects(tmp_path, toolchain)
    _link_modules(tmp_path, ["-r", "-o", "m.o", str(objs["data"])])
    modules = _link_modules(tmp_path, _final(tmp_path / "m.o", objs["modinfo"]))
    assert "klp_ld" in modules
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


@pytest.mark.skipif(importlib.util.find_spec("capstone") is None, reason="capstone is not installed")
def test_a_final_link_with_text_sites_imports_capstone(tmp_path: Path, toolchain: Toolchain) -> None:
    objs = _objects(tmp_path, toolchain)
    _link_modules(tmp_path, ["-r", "-o", "m.o", str(objs["text"])])
    modules = _link_modules(tmp_path, _final(tmp_path / "m.o", objs["modinfo"]))
    assert "capstone" in modules
    assert "elftools" not in modules
