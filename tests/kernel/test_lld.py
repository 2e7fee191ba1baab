"""ld.lld behind klp-ld: pass-through, the kbuild probe, and livepatch conversion loaded by the kernel.

klp-ld finds the real linker by the name it was invoked as, so `LD=<dir>/ld.lld` with `<dir>/ld.lld` a
symlink to wrappers/klp-ld means "klp-ld in front of ld.lld". Debian's `lld` package provides the real one
(ld.lld 14 on the host for Debian 12's kernels; sid's chroot for 7.2 has its own); on the host it is
installed with apt-get when missing, and the tests skip with the reason when it cannot be had (fail under
CI). One boot per kernel (the conversion cases); the other tests only build.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from klp_ld.elf.consts import SHF_RELA_LIVEPATCH, SHN_LIVEPATCH
from klp_ld.elf.read import read_elf_file

from .bench import Bench, BootResult, Built, Case, CaseResult
from .conftest import KMOD, unavailable
from .test_livepatch import SEED_LINE, _kallsyms

pytestmark = pytest.mark.kernel

# kbuild's ld-option probe, exactly as it runs it; lld 14 rejects the last flag, so kbuild drops it.
KBUILD_PROBE = ("-m", "elf_x86_64", "-z", "noexecstack", "--no-warn-rwx-segments", "-v")
# Two clean builds of one module are byte-identical only with a fixed timestamp (6.12's pahole -j).
REPRODUCIBLE = {"KBUILD_BUILD_TIMESTAMP": "2024-01-01"}


def _install_lld() -> str:
    """apt-get install lld; returns why it could not be done ("" when it was)."""
    if shutil.which("apt-get") is None:
        return "there is no apt-get to install Debian's lld package"
    if os.geteuid() != 0:
        return "installing Debian's lld package needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600", "lld"]
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1800, check=False)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=900, check=False)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1800, check=False)
    if proc.returncode != 0:
        last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["(no output)"]
        return f"apt-get install lld failed: {last[0]}"
    return ""


@pytest.fixture(scope="session")
def lld(bench: Bench) -> str:
    """The real ld.lld where the bench builds, installed from Debian's lld package if missing on the host
    (a chroot has it from the start)."""
    if bench.chroot is not None:
        inside = bench.run(["sh", "-c", "command -v ld.lld"]).stdout.strip()
        if not inside:
            unavailable(f"no ld.lld in the chroot {bench.chroot.tree}; delete it to make it anew")
        return inside
    found = shutil.which("ld.lld")
    if found is None:
        why = _install_lld()
        found = shutil.which("ld.lld")
        if found is None:
            unavailable(f"ld.lld is not installed and cannot be: {why or 'lld installed no ld.lld'}")
    return found


@pytest.fixture(scope="session")
def lld_link(lld: str, klp_ld: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<tmp>/ld.lld` -> wrappers/klp-ld: klp-ld invoked as ld.lld, so its real linker is ld.lld."""
    link = tmp_path_factory.mktemp("lld-link") / "ld.lld"
    link.symlink_to(klp_ld)
    return link


def _ld_lines(log: str, ld: str) -> list[list[str]]:
    """The argv of every `$(LD) -r` kbuild ran (V=1 echoes them), LD itself left out."""
    found = []
    for line in log.splitlines():
        words = line.strip().split(" ", 1)
        if words[0] == ld and " -r " in line:
            found.append(shlex.split(re.split(r";|&&", line.strip())[0])[1:])
    return found


def _rebuild_plain(bench: Bench, built: Built, make_vars: dict[str, str]) -> str:
    """`make clean` then `make modules` in the same directory (debug info records it): the plain build."""
    env = {**os.environ, **REPRODUCIBLE}
    for target in ("clean", "modules"):
        make = bench.make_command(built.directory, target, make_vars=make_vars)
        proc = bench.run(make, env=env)
        assert proc.returncode == 0, f"{shlex.join(make)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _outputs(built: Built) -> dict[str, bytes]:
    return {name: (built.directory / name).read_bytes() for name in ("multi.o", "multi.ko")}


def test_passthrough_is_byte_identical_to_plain_lld(bench: Bench, lld_link: Path) -> None:
    ours = bench.build(KMOD / "multi", ld=lld_link, make_vars={"V": "1"}, env=REPRODUCIBLE)
    mine = _outputs(ours)
    plain_log = _rebuild_plain(bench, ours, {"LD": "ld.lld", "V": "1"})
    for name, data in mine.items():
        assert data == (ours.directory / name).read_bytes(), f"{name}: LD={lld_link} and LD=ld.lld differ"
    # kbuild's probe failed the same way for both, so both linked without --no-warn-rwx-segments.
    our_lines, plain_lines = _ld_lines(ours.log, str(lld_link)), _ld_lines(plain_log, "ld.lld")
    assert len(our_lines) == 2 and our_lines == plain_lines, (our_lines, plain_lines)
    assert not any("--no-warn-rwx-segments" in argv for argv in our_lines), our_lines
    # The comparison means something only if GNU ld would have written other bytes.
    _rebuild_plain(bench, ours, {})
    assert mine["multi.ko"] != (ours.directory / "multi.ko").read_bytes(), "GNU ld wrote lld's bytes"


def test_llvm1_with_ld_override_is_byte_identical_to_llvm1(bench: Bench, lld_link: Path) -> None:
    """LLVM=1 picks ld.lld (and llvm-objcopy, llvm-nm); an explicit LD= on the command line overrides it."""
    ours = bench.build(KMOD / "multi", ld=lld_link, make_vars={"LLVM": "1", "V": "1"}, env=REPRODUCIBLE)
    mine = _outputs(ours)
    plain_log = _rebuild_plain(bench, ours, {"LLVM": "1", "V": "1"})
    for name, data in mine.items():
        assert data == (ours.directory / name).read_bytes(), f"{name}: LD={lld_link} and LLVM=1 differ"
    our_lines, plain_lines = _ld_lines(ours.log, str(lld_link)), _ld_lines(plain_log, "ld.lld")
    assert len(our_lines) == 2 and our_lines == plain_lines, (our_lines, plain_lines)


def test_kbuild_probe_fails_like_lld(bench: Bench, lld: str, lld_link: Path) -> None:
    """Same status, stdout and stderr as ld.lld for kbuild's probe, a good probe and --version."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD")}
    probes = (list(KBUILD_PROBE), [f for f in KBUILD_PROBE if f != "--no-warn-rwx-segments"], ["--version"])
    for flags in probes:
        ours = bench.run([str(lld_link), *flags], env=env)
        plain = bench.run(["ld.lld", *flags], env=env)
        answer = (ours.returncode, ours.stdout, ours.stderr)
        assert answer == (plain.returncode, plain.stdout, plain.stderr), flags
        if flags == list(KBUILD_PROBE) and re.search(r"\bLLD 1[0-6]\.", plain.stdout):
            assert plain.returncode != 0 and "--no-warn-rwx-segments" in plain.stderr, plain


# --------------------------------------------------------------------------------------------------------
# Conversion with ld.lld as the real linker, judged by the kernel's loader


def seed_addresses(case: CaseResult, positions: dict[str, int]) -> dict[str, int]:
    """Check that each seed object's three relocations resolved to its own state_show copy (the
    addresses of this boot, from the case's kallsyms lines); returns the address each object saw."""
    assert case.rc == 0, case.explain()
    copies = _kallsyms(case.output, "state_show")
    assert len(copies) >= max(positions.values()), case.explain("too few state_show in /proc/kallsyms")
    seen = {m["who"]: m for line in case.dmesg if (m := SEED_LINE.search(line))}
    assert set(seen) == set(positions), case.explain("the module did not report every object")
    for who, position in positions.items():
        want = copies[position - 1]
        for kind in ("pc32", "abs32s", "abs64"):
            got = int(seen[who][kind], 16)
            assert got == want, case.explain(
                f"object {who} {kind}: {got:#x}, but state_show #{position} is at {want:#x}")
    return {who: copies[position - 1] for who, position in positions.items()}


def read_reports(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class LldRun:
    seed: Built
    func: Built
    reports: list[dict[str, Any]]
    result: BootResult


@pytest.fixture(scope="module")
def lld_run(bench: Bench, lld_link: Path, tmp_path_factory: pytest.TempPathFactory) -> LldRun:
    report = tmp_path_factory.mktemp("lld-report") / "report.jsonl"
    ld = f"{lld_link} --klp-symbols={bench.kallsyms()}"
    env = {"KLP_LD_REPORT": str(report)}
    seed = bench.build(KMOD / "seed", ld=ld, make_vars={"V": "1"}, env=env)
    func = bench.build(KMOD / "klp_func", ld=ld, make_vars={"V": "1"}, env=env)
    cases = [
        Case("seed", ["insmod /mod/klp_seed.ko", "grep -w -e state_show /proc/kallsyms"]),
        Case("func", ["insmod /mod/klp_func.ko", "cat /proc/cmdline"]),
    ]
    return LldRun(seed, func, read_reports(report), bench.boot(cases, files=[seed, func]))


def test_lld_linked_and_klp_ld_converted(lld_run: LldRun, lld_link: Path) -> None:
    """Every livepatch link went through ld.lld; the final ones were converted and every site checked."""
    records = lld_run.reports
    outputs = {(r["kind"], Path(r["output"]).name) for r in records}
    assert outputs == {(kind, f"{m}.{ext}") for m in ("klp_seed", "klp_func")
                       for kind, ext in (("partial", "o"), ("final", "ko"))}, outputs
    for record in records:
        assert record["status"] == "ok" and record["ld_status"] == 0, record
        assert record["ld_command"][0] == "ld.lld", record["ld_command"]
        if record["kind"] == "final":
            assert record["checks"] and all(c["ok"] for c in record["checks"]), record["checks"]
    for built in (lld_run.seed, lld_run.func):
        lines = _ld_lines(built.log, str(lld_link))
        assert len(lines) == 2 and not any("--no-warn-rwx-segments" in argv for argv in lines), lines
        ko = read_elf_file(str(built.modules[0]))
        klp = [s for s in ko.sections if s.name.startswith(".klp.rela.")]
        assert klp and all(s.flags & SHF_RELA_LIVEPATCH for s in klp), [s.name for s in ko.sections]
        assert not any(s.name.startswith(".klp.module_relocs.") for s in ko.sections)
        assert any(s.special == SHN_LIVEPATCH for s in ko.symbols)


def test_lld_seed_each_object_sees_its_own_state_show(lld_run: LldRun) -> None:
    seed_addresses(lld_run.result["seed"], {"a": 2, "b": 3})


def test_lld_function_patch_uses_a_non_exported_symbol(lld_run: LldRun) -> None:
    case = lld_run.result["func"]
    assert case.rc == 0, case.explain()
    line = case.output.strip().splitlines()[-1]
    assert line.endswith(" [klp_func]") and "console=ttyS0" in line, case.explain("cmdline not patched")
    assert case.dmesg_with("livepatch: enabling patch 'klp_func'"), case.explain()
