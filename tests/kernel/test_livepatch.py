"""Livepatch modules built by klp-ld, judged by the real kernel's loader (one boot for all cases)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from klp_ld.elf.consts import SHN_LIVEPATCH
from klp_ld.elf.read import read_elf_file

from .bench import Bench, BootResult, BuildError, Built, Case, CaseResult
from .conftest import KMOD

pytestmark = pytest.mark.kernel

SEED_LINE = re.compile(r"klp_seed: (?P<who>[ab]) pc32=(?P<pc32>[0-9a-f]+) abs32s=(?P<abs32s>[0-9a-f]+) "
                       r"abs64=(?P<abs64>[0-9a-f]+)")
SUSE_LINE = re.compile(SEED_LINE.pattern.replace("klp_seed:", "klp_suse:"))


@dataclass(frozen=True)
class Run:
    seed: Built
    func: Built
    late: Built
    auto: Built
    suse: Built | BuildError  # SUSE's dialect; its build failing must not hide the other cases
    result: BootResult


@pytest.fixture(scope="module")
def run(bench: Bench, klp_ld: Path) -> Run:
    seed = bench.build(KMOD / "seed", ld=klp_ld)
    func = bench.build(KMOD / "klp_func", ld=klp_ld)
    late = bench.build(KMOD / "klp_late", ld=klp_ld)
    # The same unannotated module the bench shows failing, now with the kernel's symbols at hand:
    # saved_command_line is unique and not exported, so klp-ld converts it by itself.
    auto = bench.build(KMOD / "klpb_unknown", ld=f"{klp_ld} --klp-symbols={bench.kallsyms()}",
                       make_vars={"KBUILD_MODPOST_WARN": "1"})
    suse: Built | BuildError
    try:
        suse = bench.build(KMOD / "klp_suse", ld=klp_ld)
    except BuildError as failure:
        suse = failure
    dummy = bench.image_module("drivers/net/dummy")
    cases = [
        Case("seed", ["insmod /mod/klp_seed.ko", "grep -w -e state_show -e jiffies /proc/kallsyms"]),
        Case("func", ["insmod /mod/klp_func.ko", "cat /proc/cmdline"]),
        Case("late", [
            "insmod /mod/klp_late.ko",
            f"insmod /mod/{dummy.name} numdummies=3",
            "cat /sys/class/net/dummy0/statistics/rx_packets",
        ]),
        Case("auto", ["insmod /mod/klpb_unknown.ko", "cat /sys/kernel/livepatch/klpb_unknown/enabled"]),
    ]
    files: list[Built | Path] = [seed, func, late, auto, dummy]
    if isinstance(suse, Built):
        cases.append(Case("suse", ["insmod /mod/klp_suse.ko", "grep -w state_show /proc/kallsyms"]))
        files.append(suse)
    return Run(seed, func, late, auto, suse, bench.boot(cases, files=files))


def _kallsyms(output: str, name: str) -> list[int]:
    return [int(line.split()[0], 16) for line in output.splitlines()
            if len(line.split()) >= 3 and line.split()[2] == name]


def test_seed_each_object_sees_its_own_state_show(run: Run) -> None:
    _each_object_sees_its_own_state_show(run.result["seed"], SEED_LINE)


def test_suse_dialect_each_object_sees_its_own_state_show(run: Run) -> None:
    """KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, state_show, 2) in one object and 3 in another."""
    assert isinstance(run.suse, Built), str(run.suse)
    _each_object_sees_its_own_state_show(run.result["suse"], SUSE_LINE)
    ko = read_elf_file(str(run.suse.module("klp_suse")))
    names = {s.name for s in ko.symbols if s.special == SHN_LIVEPATCH}
    assert names == {".klp.sym.vmlinux.state_show,2", ".klp.sym.vmlinux.state_show,3"}, names
    assert not [s.name for s in ko.symbols if s.name.startswith(".klp.sym.rela.")]


def _each_object_sees_its_own_state_show(case: CaseResult, line_format: re.Pattern[str]) -> None:
    """Object a resolved state_show #2 and object b #3 (this boot's kallsyms, in the case's output)."""
    assert case.rc == 0, case.explain()
    copies = _kallsyms(case.output, "state_show")
    assert len(copies) >= 3, case.explain("fewer than three state_show in /proc/kallsyms")
    seen = {m["who"]: m for line in case.dmesg if (m := line_format.search(line))}
    assert set(seen) == {"a", "b"}, case.explain("the module did not report both objects")
    for who, position in (("a", 2), ("b", 3)):
        want = copies[position - 1]
        for kind in ("pc32", "abs32s", "abs64"):
            got = int(seen[who][kind], 16)
            assert got == want, case.explain(
                f"object {who} {kind}: {got:#x}, but state_show #{position} is at {want:#x}")


def test_seed_keeps_exports_as_ordinary_relocations(run: Run) -> None:
    case = run.result["seed"]
    ko = read_elf_file(str(run.seed.module("klp_seed")))
    jiffies = [s for s in ko.symbols if s.name == "jiffies"]
    assert jiffies and jiffies[0].is_undefined and jiffies[0].special != SHN_LIVEPATCH
    addresses = _kallsyms(case.output, "jiffies")
    assert any(case.dmesg_with(f"exported jiffies at {a:016x}") for a in addresses), case.explain(
        f"jiffies is not at any of {[hex(a) for a in addresses]}")


def test_function_patch_uses_a_non_exported_symbol(run: Run) -> None:
    case = run.result["func"]
    assert case.rc == 0, case.explain()
    line = case.output.strip().splitlines()[-1]
    assert line.endswith(" [klp_func]") and "console=ttyS0" in line, case.explain("cmdline not patched")
    assert case.dmesg_with("livepatch: enabling patch 'klp_func'"), case.explain()


def test_late_module_patching(run: Run) -> None:
    case = run.result["late"]
    assert case.rc == 0, case.explain()
    assert case.output.strip().splitlines()[-1] == "4203", case.explain("dummy's stats are not patched")
    assert case.dmesg_with("applying patch 'klp_late' to loading module 'dummy'"), case.explain()


def test_unannotated_unique_symbol_is_converted_automatically(run: Run) -> None:
    case = run.result["auto"]
    assert case.rc == 0, case.explain()
    assert case.output.strip() == "1", case.explain("the patch is not enabled")
    assert not case.dmesg_with("Unknown symbol"), case.explain()
    ko = read_elf_file(str(run.auto.module("klpb_unknown")))
    assert any(s.name == ".klp.sym.vmlinux.saved_command_line,0" and s.special == SHN_LIVEPATCH
               for s in ko.symbols)


def test_wrong_position_fails_the_build(bench: Bench, klp_ld: Path, tmp_path: Path) -> None:
    source = tmp_path / "seed"
    shutil.copytree(KMOD / "seed", source)
    b_c = source / "seed_b.c"
    b_c.write_text(b_c.read_text().replace("KLP_SYMPOS(state_show, 3)", "KLP_SYMPOS(state_show, 9)"))
    with pytest.raises(BuildError) as failure:
        bench.build(source, ld=f"{klp_ld} --klp-symbols={bench.kallsyms()}")
    log = failure.value.log
    assert re.search(r"klp-ld: error: \S+/seed_b\.o: \.klp\.module_relocs\.vmlinux\+0x0: state_show: "
                     r"state_show has \d+ copies in vmlinux; position 9 does not exist", log), log
    assert ">>> KLP_SYMPOS(state_show, 2)" in log
