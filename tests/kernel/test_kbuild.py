"""klp-ld as kbuild's LD for builds that are not livepatch ones: nothing may change.

These need the headers and the image package, not a boot.
"""

from __future__ import annotations

import lzma
import os
from pathlib import Path

import pytest

from klp_ld.elf.read import read_elf
from klp_ld.elf.write import write_elf

from .bench import Bench
from .conftest import KMOD, REPO_ROOT

pytestmark = pytest.mark.kernel

SIGNATURE_MAGIC = b"~Module signature appended~\n"


def _strip_signature(data: bytes) -> bytes:
    """Debian's modules carry an appended signature; the ELF ends where the signature starts."""
    if not data.endswith(SIGNATURE_MAGIC):
        return data
    sig_len = int.from_bytes(data[-len(SIGNATURE_MAGIC) - 4:-len(SIGNATURE_MAGIC)], "big")
    return data[: len(data) - len(SIGNATURE_MAGIC) - 12 - sig_len]


def test_normal_module_is_byte_identical_to_a_plain_build(bench: Bench, klp_ld: Path) -> None:
    # Debug information records the build directory, so both builds happen in the same one.
    env = {**os.environ, "KBUILD_BUILD_TIMESTAMP": "2024-01-01"}  # 6.12's BTF needs it to be reproducible
    ours = bench.build(KMOD / "multi", ld=klp_ld, env=env)
    mine = {name: (ours.directory / name).read_bytes() for name in ("multi.o", "multi.ko")}
    for target in ("clean", "modules"):
        done = bench.run(bench.make_command(ours.directory, target), env=env)
        assert done.returncode == 0, f"make {target} with the plain ld failed:\n{done.stdout}{done.stderr}"
    for name, data in mine.items():
        assert data == (ours.directory / name).read_bytes(), f"{name} differs between LD=klp-ld and LD=ld"


def test_klp_ld_is_the_checkouts_under_the_builds_python(bench: Bench, klp_ld: Path) -> None:
    """Where kbuild runs (a sid chroot for 7.2) LD=wrappers/klp-ld is this checkout's klp-ld, run by that
    environment's python3, which has pyelftools and capstone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD")}
    include = bench.run([str(klp_ld), "--klp-print-include-dir"], env=env)
    assert include.returncode == 0, include.stderr
    assert include.stdout.strip() == str(REPO_ROOT / "klp_ld" / "include")
    probe = "import sys, elftools, capstone; print(sys.executable, *sys.version_info[:2])"
    python = bench.run(["python3", "-c", probe], env=env)
    assert python.returncode == 0, python.stderr
    if bench.chroot is not None:
        executable, major, minor = python.stdout.split()
        assert executable == bench.python and (int(major), int(minor)) >= (3, 13), python.stdout


def test_ld_option_probe_answers_like_ld(bench: Bench, klp_ld: Path) -> None:
    """kbuild's probe decides whether --no-warn-rwx-segments is used at all: same status, same output
    (the ld of the bench's toolchain: binutils 2.40 for Debian 12's kernels, sid's for 7.2)."""
    for flags in (["-m", "elf_x86_64", "-z", "noexecstack", "--no-warn-rwx-segments", "-v"],
                  ["-m", "elf_x86_64", "--no-such-option", "-v"]):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD")}
        ours = bench.run([str(klp_ld), *flags], env=env)
        plain = bench.run(["ld", *flags])
        assert (ours.returncode, ours.stdout, ours.stderr) == (plain.returncode, plain.stdout, plain.stderr)


def test_every_debian_module_round_trips(bench: Bench) -> None:
    """The reader and writer over the whole image: unchanged input, byte-identical ELF."""
    modules = sorted(p for p in bench.modules_dir.rglob("*") if p.name.endswith((".ko", ".ko.xz")))
    assert len(modules) > 1000
    failures = []
    for path in modules:
        data = path.read_bytes()
        if path.name.endswith(".xz"):
            data = lzma.decompress(data)
        elf = _strip_signature(data)
        if write_elf(read_elf(elf, str(path))) != elf:
            failures.append(path.name)
    assert not failures, f"{len(failures)} of {len(modules)} modules changed: {failures[:10]}"
