"""Fixtures for the hardening tests: real objects to mutate, built once per session with gcc and ld."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.conftest import OBJECTS, Toolchain, run_klp_ld, toolchain, watch_inputs

__all__ = ["OBJECTS", "Seeds", "Toolchain", "run_klp_ld", "seeds", "toolchain", "watch_inputs"]


@dataclass
class Seeds:
    """The objects mutants start from, by the link that consumes them."""

    directory: Path
    partial: dict[str, bytes]    # inputs of `ld -r`: gcc objects of both dialects, a partial output
    final: dict[str, bytes]      # what the final link converts: the .ko as plain ld leaves it
    converted: dict[str, bytes]  # what `klp-ld check` reads: a .ko klp-ld converted
    modinfo: Path                # a `.modinfo` with livepatch=Y, for final links
    lds: Path                    # a script named module.lds, so klp-ld recognises the final link

    def __repr__(self) -> str:  # hypothesis prints fixtures in falsifying examples: keep it short
        return f"Seeds({self.directory})"

    @property
    def all(self) -> dict[str, bytes]:
        return {**self.partial, **self.final, **self.converted}


@pytest.fixture(scope="session")
def seeds(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    work = tmp_path_factory.mktemp("seeds")
    objs = {name: toolchain.build(src) for name, src in
            (("seed_a.o", "seed_a.c"), ("seed_b.o", "seed_b.c"), ("dotted.o", "dotted.s"))}
    modinfo = toolchain.build("modinfo.c")
    lds = work / "module.lds"
    shutil.copy(OBJECTS / "module.lds", lds)
    partial = run_klp_ld(["-r", "-o", "m.o", str(objs["seed_a.o"]), str(objs["seed_b.o"])], work)
    if partial.returncode != 0:
        pytest.fail(f"klp-ld could not build the partial-link seed:\n{partial.stderr}")
    subprocess.run([toolchain.ld, "-r", "-T", str(lds), "-o", str(work / "plain.ko"), str(work / "m.o"),
                    str(modinfo)], check=True, capture_output=True)
    final = run_klp_ld(["-r", "-T", "module.lds", "-o", "m.ko", "m.o", str(modinfo)], work)
    if final.returncode != 0:
        pytest.fail(f"klp-ld could not build the final-link seed:\n{final.stderr}")
    return Seeds(
        directory=work,
        partial={**{n: p.read_bytes() for n, p in objs.items()}, "m.o": (work / "m.o").read_bytes()},
        final={"plain.ko": (work / "plain.ko").read_bytes()},
        converted={"m.ko": (work / "m.ko").read_bytes()},
        modinfo=modinfo,
        lds=lds,
    )
