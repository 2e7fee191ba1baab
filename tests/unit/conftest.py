"""Fixtures that build small objects with the system toolchain and run klp-ld like kbuild does."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = ROOT / "testdata" / "objects"
WRAPPER = ROOT / "wrappers" / "klp-ld"
KERNEL_CFLAGS = ["-O2", "-mcmodel=kernel", "-fno-pic", "-ffunction-sections", "-fdata-sections",
                 "-mno-red-zone", "-fno-asynchronous-unwind-tables", "-fno-stack-protector"]


def _need(tool: str, needed_for: str = "the object fixtures need gcc and binutils") -> str:
    """The tool's path; without it the test skips, or fails under CI (CI=true), where a run that
    compiled nothing must not pass."""
    found = shutil.which(tool)
    if found is None:
        reason = f"{tool} is not installed; {needed_for}"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "no", "false", "off"):
            pytest.fail(f"{reason} (CI is set: a missing prerequisite fails the run)", pytrace=False)
        pytest.skip(reason)
    return found


class Toolchain:
    """Compiles fixture sources once per session into a shared directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.gcc = _need("gcc")
        self.ld = _need("ld")

    def build(self, source: str, name: str | None = None) -> Path:
        src = OBJECTS / source
        out = self.directory / (name or (src.stem + ".o"))
        if not out.exists():
            cmd = [self.gcc, "-c", *KERNEL_CFLAGS, "-I", str(OBJECTS), "-o", str(out), str(src)]
            subprocess.run(cmd, check=True, capture_output=True)
        return out


@pytest.fixture(scope="session")
def toolchain(tmp_path_factory: pytest.TempPathFactory) -> Toolchain:
    return Toolchain(tmp_path_factory.mktemp("objects"))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_klp_ld(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Result:
    """Run klp-ld through the checkout wrapper, with this interpreter, as kbuild would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD_")}
    full_env["KLP_LD_PYTHON"] = sys.executable
    full_env.update(env or {})
    proc = subprocess.run([str(WRAPPER), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def digest(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture
def watch_inputs() -> Iterator[Callable[..., None]]:
    """`watch_inputs(path, ...)` records hashes; the test fails if klp-ld changed any of them."""
    before: dict[Path, str] = {}

    def watch(*paths: Path) -> None:
        before.update(digest(list(paths)))

    yield watch
    assert digest(list(before)) == before, "klp-ld modified one of its inputs"
