"""klp-ld adds no warnings to a build: the log of a livepatch module built with LD=klp-ld has no warning line
that the same module built with the plain linker lacks.

Aimed at new toolchains, where the compiler (gcc-16 on sid's 7.2 warns about missing prototypes in external
modules), objtool (run on the partial-link output of every livepatch module since 6.19) and modpost have
more to say: whatever they say about the plain build is the module's own business, anything more is klp-ld's.
Both builds happen in one directory (``make clean`` between), with ``KBUILD_MODPOST_WARN=1`` so that the
plain build gets past modpost's complaints about the symbols klp-ld would have converted, and with the
kernel's symbols given to klp-ld, so the comparison is about the toolchain and not about where klp-ld
finds symbols. Runs on every kernel; the one it was written for is 7.2.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from .bench import Bench, Built
from .conftest import KMOD, REPO_ROOT

pytestmark = pytest.mark.kernel

WARNING = re.compile(r"\bwarning\b", re.I)
INCLUDE = REPO_ROOT / "klp_ld" / "include"
# The seed sources ask $(LD) for <klp-ld.h>, which the plain linker cannot answer; the copy asks make.
ASK_LD = "ccflags-y += -I$(shell $(LD) --klp-print-include-dir)"
ASK_MAKE = "ccflags-y += -I$(KLP_LD_INCLUDE)"
REPRODUCIBLE = {"KBUILD_BUILD_TIMESTAMP": "2024-01-01"}


def warning_lines(log: str) -> list[str]:
    """The log's warning lines (compiler, objtool, modpost, klp-ld, BTF), with runs of blanks squeezed."""
    return [" ".join(line.split()) for line in log.splitlines() if WARNING.search(line)]


def _source(name: str, tmp_path: Path) -> Path:
    source = tmp_path / name
    shutil.copytree(KMOD / name, source)
    kbuild = source / "Kbuild"
    text = kbuild.read_text()
    assert ASK_LD in text, f"{kbuild}: the test expects {ASK_LD!r}"
    kbuild.write_text(text.replace(ASK_LD, ASK_MAKE))
    return source


@pytest.mark.parametrize(("name", "targets"), [("seed", ()), ("klp_late", ("drivers/net/dummy",))])
def test_klp_ld_adds_no_warning_to_the_build_log(bench: Bench, klp_ld: Path, tmp_path: Path, name: str,
                                                 targets: tuple[str, ...]) -> None:
    symbols = [bench.kallsyms(), *(bench.image_module(target) for target in targets)]
    ld = " ".join([str(klp_ld), *(f"--klp-symbols={path}" for path in symbols)])
    make_vars = {"KLP_LD_INCLUDE": str(INCLUDE), "KBUILD_MODPOST_WARN": "1"}
    ours = bench.build(_source(name, tmp_path), ld=ld, make_vars=make_vars, env=REPRODUCIBLE)
    plain = _rebuild_plain(bench, ours, make_vars)
    added = [line for line in warning_lines(ours.log) if line not in set(warning_lines(plain))]
    assert not added, "warnings only with klp-ld:\n" + "\n".join(added) + f"\n\nfull log:\n{ours.log}"
    # The comparison sees warnings at all: the plain build has modpost's, about what klp-ld converts.
    assert any("modpost" in line and "undefined" in line for line in warning_lines(plain)), plain


def _rebuild_plain(bench: Bench, built: Built, make_vars: dict[str, str]) -> str:
    env = {**os.environ, **REPRODUCIBLE}
    log = ""
    for target in ("clean", "modules"):
        cmd = bench.make_command(built.directory, target, make_vars=make_vars, jobs=os.cpu_count() or 1)
        done = bench.run(cmd, env=env)
        log += done.stdout + done.stderr
        assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}{done.stderr}"
    return log
