"""The ppc64le machine: the kernel the bench cross-builds boots under QEMU's pseries, loads an external
module built with kbuild against its build tree, and livepatches with the kernel's own sample; then the
livepatch modules klp-ld builds for it (testdata/kmod-ppc64le), judged by the kernel's loader and
/proc/kallsyms: the seed (two objects, two copies of one static function, reached by a call and through
data), a function patch calling a static vmlinux function, late patching of a module loaded after the
patch (and before it), and an unannotated unique symbol converted from the kallsyms dump.

Selected with ``--kernel=ppc64le`` (or ``all``). The first run builds the kernel (see README.md); one boot
runs every case of this file.
"""

from __future__ import annotations

import os
import re
import shlex
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from klp_ld.arch.ppc64le import RPPC64
from klp_ld.elf.consts import SHF_ALLOC, SHF_INFO_LINK, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf_file

from .bench import Bench, BootResult, BuildError, Built, Case, CaseResult, kallsyms_addresses
from .conftest import KMOD, REPO_ROOT

pytestmark = pytest.mark.kernel

# samples/livepatch/livepatch-sample.c replaces cmdline_proc_show with one printing this line.
SAMPLE_TEXT = "this has been live patched"
SAMPLE_DIR = "/sys/kernel/livepatch/livepatch_sample"

# A two-object module: kbuild partially links main.o and calc.o, then links ppc_hello.ko. It calls the
# kernel (printk: a stub that restores r2), its other object (a local call) and reads a kernel variable
# and its own through the TOC, so the loader's ppc64 relocations all take part.
HELLO_SOURCES = {
    "Kbuild": "obj-m := ppc_hello.o\nppc_hello-y := main.o calc.o\n",
    "hello.h": "int hello_scale(int x);\nextern int hello_offset;\n",
    "main.c": r"""
#include <linux/jiffies.h>
#include <linux/module.h>
#include "hello.h"

static int seed = 3;
module_param(seed, int, 0444);
static int result;
module_param(result, int, 0444);

static int __init hello_init(void)
{
	result = hello_scale(seed) + hello_offset;
	pr_info("ppc_hello: seed=%d result=%d ticking=%d\n", seed, result, jiffies != 0);
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("ppc_hello: unloaded\n");
}

module_init(hello_init);
module_exit(hello_exit);
MODULE_LICENSE("GPL");
""",
    "calc.c": r"""
#include <linux/compiler.h>
#include "hello.h"

int hello_offset = 11;

noinline int hello_scale(int x)
{
	return x * x + 3 * x;
}
""",
}

# An LD that records each command line and runs the cross linker: proves that Bench.build's ``ld`` reaches
# kbuild's links, and that kbuild gives $(LD) CROSS_COMPILE in its environment.
LD_RECORDER = """#!/bin/sh
printf '%s\\n' "$*" >> {log}
exec "${{CROSS_COMPILE}}ld" "$@"
"""


def output_of(command_line: str) -> str:
    """The ``-o`` operand of a recorded ld command line ("" when there is none)."""
    words = command_line.split()
    return words[words.index("-o") + 1] if "-o" in words[:-1] else ""


def hello_result(seed: int) -> int:
    return seed * seed + 3 * seed + 11


KMOD_PPC64LE = REPO_ROOT / "testdata" / "kmod-ppc64le"

# The seed: object a means do_nothing #1, object b #2 (this kernel has two static do_nothing(), see
# testdata/kmod-ppc64le/seed/Kbuild). Each reports the address its call's stub jumps to, the .toc entry
# and the pointer in data (.data.rel).
SEED_NAME = "do_nothing"
SEED_POSITIONS = {"a": 1, "b": 2}
SEED_LINE = re.compile(r"ppc_seed: (?P<who>[ab]) call=(?P<call>[0-9a-f]+) toc=(?P<toc>[0-9a-f]+) "
                       r"data=(?P<data>[0-9a-f]+)")
SUSE_LINE = re.compile(SEED_LINE.pattern.replace("ppc_seed:", "ppc_suse:"))
# Must match PPC_FUNC_MARK in testdata/kmod-ppc64le/func/func_patch.c.
FUNC_MARK = "ppc_func: "
FUNC_DIR = "/sys/kernel/livepatch/ppc_func"
LATE_DIR = "/sys/kernel/livepatch/ppc_late"
TARGET_PARAMS = "/sys/module/ppc_target/parameters"
AUTO_DIR = "/sys/kernel/livepatch/klpb_unknown"


def target_value(arg: int, base: int) -> int:
    """ppc_target's own target_value()."""
    return arg + base


def patched_value(arg: int, base: int) -> int:
    """ppc_late's replacement: 10000 + 100 * target_secret(arg) + target_base, where ppc_target's
    target_secret(x) is 3 * x + target_step (1)."""
    return 10000 + 100 * (3 * arg + 1) + base


def wait_settled(path: str) -> str:
    """A shell loop waiting (up to 30 s) for a livepatch's transition to end: it completes at once only if
    every task could be switched then; otherwise a worker retries every second."""
    busy = f'[ "$(cat {path}/transition)" != 0 ]'
    return f"i=0; while {busy} && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done"


def wait_gone(path: str) -> str:
    """A shell loop waiting (up to 30 s) for a livepatch's sysfs directory to go: the transition to
    unpatched runs from a worker."""
    return f"i=0; while [ -e {path} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done"


@dataclass(frozen=True)
class Run:
    hello: Built
    recorded: Built
    ld_log: Path
    # The livepatch modules klp-ld built (or why kbuild failed: a failing build must not hide the others).
    seed: Built | BuildError
    suse: Built | BuildError  # the seed in SUSE's KLP_RELOC_SYMBOL_POS dialect
    func: Built | BuildError
    target: Built | BuildError  # ppc_target, the late patch's target, linked by plain ld
    late: Built | BuildError
    auto: Built | BuildError
    result: BootResult


def write_module(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in HELLO_SOURCES.items():
        (directory / name).write_text(text.lstrip("\n"))
    return directory


def _outcome(future: Future[Built]) -> Built | BuildError:
    try:
        return future.result()
    except BuildError as failure:
        return failure


def _build_livepatches(bench: Bench, klp_ld: Path) -> dict[str, Built | BuildError]:
    """The klp-ld builds, two at a time (a build is mostly one core's compiler or klp-ld)."""

    def late() -> Built:
        target = bench.build(KMOD_PPC64LE / "target")
        built["target"] = target
        # The target's own .ko is the symbol source of its module-specific relocations.
        return bench.build(KMOD_PPC64LE / "late", ld=f"{klp_ld} --klp-symbols={target.module('ppc_target')}")

    built: dict[str, Built | BuildError] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            "late": pool.submit(late),
            "seed": pool.submit(bench.build, KMOD_PPC64LE / "seed", ld=klp_ld),
            "suse": pool.submit(bench.build, KMOD_PPC64LE / "suse", ld=klp_ld),
            "func": pool.submit(bench.build, KMOD_PPC64LE / "func", ld=klp_ld),
            # x86_64's unannotated module, unchanged: saved_command_line is unique in this kernel and not
            # exported, so with the kallsyms dump klp-ld converts the reference by itself.
            "auto": pool.submit(bench.build, KMOD / "klpb_unknown",
                                ld=f"{klp_ld} --klp-symbols={bench.kallsyms()}",
                                make_vars={"KBUILD_MODPOST_WARN": "1"}),
        }
        for name, future in futures.items():
            built[name] = _outcome(future)
    if "target" not in built:  # the target's own build failed
        built["target"] = built["late"]
    return built


def _livepatch_cases(built: dict[str, Built | BuildError]) -> list[Case]:
    """The livepatch cases, for the modules that built; they run after the sample's, in this order."""
    ok = {name for name, item in built.items() if isinstance(item, Built)}
    cases: list[Case] = []
    if "seed" in ok:
        cases.append(Case("seed", ["insmod /mod/ppc_seed.ko",
                                   f"grep -w -e {SEED_NAME} -e jiffies /proc/kallsyms"]))
    if "suse" in ok:
        cases.append(Case("suse", ["insmod /mod/ppc_suse.ko", f"grep -w {SEED_NAME} /proc/kallsyms"]))
    if "func" in ok:
        cases.append(Case("func", ["insmod /mod/ppc_func.ko", wait_settled(FUNC_DIR),
                                   f"cat {FUNC_DIR}/enabled", "cat /proc/cmdline", "cat /proc/version"]))
    if {"late", "target"} <= ok:
        cases += [
            Case("late", [  # the patch first; the target loads after it
                "insmod /mod/ppc_late.ko",
                wait_settled(LATE_DIR),
                f"cat {LATE_DIR}/enabled",
                "insmod /mod/ppc_target.ko arg=7",
                f"cat {TARGET_PARAMS}/value",
                f"echo 30 > {TARGET_PARAMS}/target_base",
                f"cat {TARGET_PARAMS}/value",
            ]),
            # What the kernel resolved the patch's klp symbols to, beside the target's own symbols.
            Case("late-kallsyms", ["grep -e target_secret -e target_base /proc/kallsyms"]),
            Case("late-unpatch", [
                f"echo 0 > {LATE_DIR}/enabled",
                wait_gone(LATE_DIR),
                "rmmod ppc_late",
                f"cat {TARGET_PARAMS}/value",
                "rmmod ppc_target",
            ]),
            Case("early", [  # the target first; the patch loads after it
                "insmod /mod/ppc_target.ko arg=7",
                f"cat {TARGET_PARAMS}/value",
                "insmod /mod/ppc_late.ko",
                wait_settled(LATE_DIR),
                f"cat {LATE_DIR}/enabled",
                f"cat {TARGET_PARAMS}/value",
            ]),
        ]
    if "auto" in ok:
        # Stacks on ppc_func's patch of the same function: /proc/cmdline is the command line again.
        cases.append(Case("auto", ["insmod /mod/klpb_unknown.ko", wait_settled(AUTO_DIR),
                                   f"cat {AUTO_DIR}/enabled", "cat /proc/cmdline"]))
    if {"late", "target"} <= ok:
        # Last, since it leaves ppc_target out: what klp-ld's note on ppc_late says, that before 6.3 the
        # target cannot be loaded again while the patch is (its bl was relocated once; the nop after it
        # is the TOC restore now).
        cases.append(Case("late-reload", [
            "rmmod ppc_target",
            "if insmod /mod/ppc_target.ko arg=7; then echo loaded; else echo refused; fi",
            f"cat {LATE_DIR}/enabled",
        ]))
    return cases


@pytest.fixture(scope="module")
def run(ppc64le_bench: Bench, klp_ld: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    bench = ppc64le_bench
    tmp = tmp_path_factory.mktemp("ppc64le-")
    source = write_module(tmp / "ppc_hello")
    hello = bench.build(source)
    ld_log = tmp / "ld.log"
    recorder = tmp / "ld-recorder"
    recorder.write_text(LD_RECORDER.format(log=shlex.quote(str(ld_log))))
    recorder.chmod(0o755)
    recorded = bench.build(source, ld=recorder)
    sample = bench.image_module("samples/livepatch/livepatch-sample")
    built = _build_livepatches(bench, klp_ld)
    cases = [
        Case("machine", ["uname -m", "uname -r"]),
        Case(
            "hello",
            [
                "insmod /mod/ppc_hello.ko seed=7",
                "cat /sys/module/ppc_hello/parameters/result",
                "rmmod ppc_hello",
            ],
        ),
        Case("recorded-ld", ["insmod /recorded/ppc_hello.ko seed=2", "rmmod ppc_hello"]),
        Case(
            "sample-patch",
            [f"insmod /mod/{sample.name}", f"cat {SAMPLE_DIR}/enabled", "cat /proc/cmdline"],
        ),
        Case(
            "sample-unpatch",
            [
                f"echo 0 > {SAMPLE_DIR}/enabled",
                wait_gone(SAMPLE_DIR),
                "rmmod livepatch_sample",
                "cat /proc/cmdline",
            ],
        ),
        Case("kallsyms-live", ["grep -w cmdline_proc_show /proc/kallsyms"]),
        *_livepatch_cases(built),
    ]
    files: list[Path | Built] = [hello, sample]
    files += [item for item in built.values() if isinstance(item, Built)]
    result = bench.boot(
        cases, files=files, extra_files={"recorded/ppc_hello.ko": recorded.module("ppc_hello")}
    )
    return Run(hello, recorded, ld_log, built["seed"], built["suse"], built["func"], built["target"],
               built["late"], built["auto"], result)


def test_kernel_configuration_has_livepatch(ppc64le_bench: Bench) -> None:
    config = ppc64le_bench.config
    for name in ("CONFIG_PPC64", "CONFIG_CPU_LITTLE_ENDIAN", "CONFIG_PPC_PSERIES", "CONFIG_LIVEPATCH",
                 "CONFIG_DYNAMIC_FTRACE_WITH_REGS", "CONFIG_MPROFILE_KERNEL", "CONFIG_KALLSYMS_ALL",
                 "CONFIG_MODULE_UNLOAD"):
        assert config.get(name) == "y", name
    assert config.get("CONFIG_SAMPLE_LIVEPATCH") == "m"
    for name in ("CONFIG_MODVERSIONS", "CONFIG_MODULE_SIG"):
        assert name not in config, name


def test_guest_is_the_built_ppc64le_kernel(ppc64le_bench: Bench, run: Run) -> None:
    case = run.result["machine"]
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == ["ppc64le", ppc64le_bench.release], case.explain()


def test_external_module_with_plain_ld_loads(run: Run) -> None:
    assert [path.name for path in run.hello] == ["ppc_hello.ko"]
    case = run.result["hello"]
    assert case.rc == 0, case.explain()
    assert case.output.strip() == str(hello_result(7)), case.explain(f"expected result={hello_result(7)}")
    assert case.dmesg_with(f"ppc_hello: seed=7 result={hello_result(7)} ticking=1"), case.explain()
    assert case.dmesg_with("ppc_hello: unloaded"), case.explain("rmmod did not run the exit function")


def test_build_passes_ld_to_every_link(run: Run) -> None:
    """``Bench.build(ld=...)`` sets kbuild's LD for the partial link (``-r`` of main.o and calc.o) and the
    final link (``-T .../module.lds``); the module so linked loads like the plain one."""
    lines = run.ld_log.read_text().splitlines()
    outputs = {Path(output_of(line)).name: line.split() for line in lines if output_of(line)}
    partial, final = outputs.get("ppc_hello.o"), outputs.get("ppc_hello.ko")
    assert partial and final, "\n".join(lines)
    assert "-r" in partial and "-T" not in partial, partial
    assert "-r" in final and any(word.endswith("module.lds") for word in final), final
    assert "elf64lppc" in final, f"not a ppc64le link: {final}"
    case = run.result["recorded-ld"]
    assert case.rc == 0, case.explain()
    assert case.dmesg_with(f"ppc_hello: seed=2 result={hello_result(2)}"), case.explain()


def test_livepatch_sample_patches_cmdline(run: Run) -> None:
    case = run.result["sample-patch"]
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == ["1", SAMPLE_TEXT], case.explain("/proc/cmdline is not patched")
    assert case.dmesg_with("livepatch: enabling patch 'livepatch_sample'"), case.explain()


def test_livepatch_sample_unpatches_and_unloads(run: Run) -> None:
    case = run.result["sample-unpatch"]
    assert case.rc == 0, case.explain()
    assert "console=hvc0" in case.output, case.explain("/proc/cmdline still patched after disabling")
    assert case.dmesg_with("livepatch: 'livepatch_sample': unpatching complete"), case.explain()


def test_kallsyms_dump_matches_the_running_kernel(ppc64le_bench: Bench, run: Run) -> None:
    cached = ppc64le_bench.kallsyms()
    assert len(kallsyms_addresses(cached, "cmdline_proc_show")) == 1
    case = run.result["kallsyms-live"]
    assert case.rc == 0, case.explain()
    live = kallsyms_addresses(case.output, "cmdline_proc_show")
    assert len(live) == 1 and live[0] != 0, case.explain("kptr_restrict still hides addresses?")


def test_build_helper_returns_the_modules(ppc64le_bench: Bench, tmp_path: Path) -> None:
    """What later tests use: ``build(source, ld=...)`` gives the ``.ko`` paths of an ARCH=powerpc build."""
    built = ppc64le_bench.build(write_module(tmp_path / "ppc_hello"))
    assert built.modules == (built.directory / "ppc_hello.ko",)
    command = ppc64le_bench.make_command(built.directory, "modules", ld="ld-x")
    assert command[:6] == ["make", "-C", str(ppc64le_bench.headers), f"M={built.directory}", "ARCH=powerpc",
                           "CROSS_COMPILE=powerpc64le-linux-gnu-"]
    assert "LD=ld-x" in command
    with built.modules[0].open("rb") as handle:
        header = handle.read(20)
    assert header[:6] == b"\x7fELF\x02\x01"  # ELF64, little-endian
    assert int.from_bytes(header[18:20], "little") == 21  # EM_PPC64
    assert os.path.getsize(built.modules[0]) > 0


def test_plain_module_through_klp_ld_is_byte_identical(
    ppc64le_bench: Bench, klp_ld: Path, tmp_path: Path
) -> None:
    """A module with no livepatch work: LD=klp-ld links ppc_hello.o and ppc_hello.ko byte for byte as the
    cross ld does (both builds in one directory, as kbuild records it)."""
    bench = ppc64le_bench
    ours = bench.build(write_module(tmp_path / "ppc_hello"), ld=klp_ld)
    mine = {name: (ours.directory / name).read_bytes() for name in ("ppc_hello.o", "ppc_hello.ko")}
    for target in ("clean", "modules"):
        done = bench.run(bench.make_command(ours.directory, target))
        assert done.returncode == 0, f"make {target} with the plain ld failed:\n{done.stdout}{done.stderr}"
    for name, data in mine.items():
        assert data == (ours.directory / name).read_bytes(), f"{name} differs between LD=klp-ld and LD=ld"


# ------------------------------------------------------------------------------------------------------
# The livepatch modules klp-ld built


def _built(item: Built | BuildError) -> Built:
    assert isinstance(item, Built), f"kbuild with LD=klp-ld failed:\n{item}"
    return item


def _case(run: Run, name: str) -> CaseResult:
    assert name in run.result, f"case {name} did not run: its module did not build"
    return run.result[name]


def _klp_relocations(ko: ElfObject) -> dict[str, set[tuple[str, str]]]:
    """``.klp.rela.<obj>.<section>`` -> {(relocation type, symbol)}, after checking what the loader needs of
    each: SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH, sh_info naming the section the name says, only
    SHN_LIVEPATCH ``.klp.sym.<obj>.`` symbols of the same object."""
    found: dict[str, set[tuple[str, str]]] = {}
    for section in ko.sections_named(".klp.rela."):
        obj, _, target = section.name.removeprefix(".klp.rela.").partition(".")
        wanted = SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH
        assert section.flags & wanted == wanted, f"{section.name}: flags {section.flags:#x}"
        assert section.info_section is not None and section.info_section.name == target, section.name
        entries = found.setdefault(section.name, set())
        for rela in section.relocs:
            assert rela.symbol is not None, section.name
            assert rela.symbol.special == SHN_LIVEPATCH, f"{section.name}: {rela.symbol.name}"
            assert rela.symbol.name.startswith(f".klp.sym.{obj}."), f"{section.name}: {rela.symbol.name}"
            entries.add((RPPC64(rela.type).name, rela.symbol.name))
    return found


def _assert_livepatch_ko(built: Built, module: str, expected: dict[str, set[tuple[str, str]]]) -> None:
    """The converted .ko as the loader reads it: exactly the expected klp relocations, every klp symbol
    SHN_LIVEPATCH, no annotation section left, and no trace of the originals in the ordinary relocation
    sections (ppc64's apply_relocate_add has no case for R_PPC64_NONE, so they are removed, not retyped)."""
    ko = read_elf_file(str(built.module(module)))
    assert _klp_relocations(ko) == expected
    klp_symbols = [s for s in ko.symbols if s.name.startswith(".klp.sym.")]
    assert klp_symbols and all(s.special == SHN_LIVEPATCH for s in klp_symbols), [
        (s.name, s.special) for s in klp_symbols]
    assert not [s.name for s in ko.sections if s.name.startswith(".klp.module_relocs.")]
    for section in ko.rela_sections():
        if section.name.startswith(".klp.rela."):
            continue
        for rela in section.relocs:
            assert rela.type != RPPC64.NONE, f"{section.name}+{rela.offset:#x}: R_PPC64_NONE"
            name = rela.symbol.name if rela.symbol is not None else ""
            assert not name.startswith(".klp.sym."), f"{section.name}+{rela.offset:#x}: {name}"


def test_klp_ld_check_passes_every_livepatch_module(ppc64le_bench: Bench, klp_ld: Path, run: Run) -> None:
    for item, module in ((run.seed, "ppc_seed"), (run.suse, "ppc_suse"), (run.func, "ppc_func"),
                         (run.late, "ppc_late"), (run.auto, "klpb_unknown")):
        ko = _built(item).module(module)
        done = ppc64le_bench.run([str(klp_ld), "check", str(ko)])
        report = f"klp-ld check {ko.name}: status {done.returncode}\n{done.stdout}{done.stderr}"
        assert done.returncode == 0, report
        assert done.stdout.rstrip().endswith(f"{ko}: OK"), done.stdout


def _seed_relocations() -> dict[str, set[tuple[str, str]]]:
    symbols = [f".klp.sym.vmlinux.{SEED_NAME},{position}" for position in SEED_POSITIONS.values()]
    return {
        ".klp.rela.vmlinux..text": {("REL24", symbol) for symbol in symbols},
        ".klp.rela.vmlinux..toc": {("ADDR64", symbol) for symbol in symbols},
        ".klp.rela.vmlinux..data.rel": {("ADDR64", symbol) for symbol in symbols},
    }


def test_seed_ko_has_per_object_klp_relocations(run: Run) -> None:
    _assert_livepatch_ko(_built(run.seed), "ppc_seed", _seed_relocations())


def test_seed_each_object_gets_its_own_do_nothing(ppc64le_bench: Bench, run: Run) -> None:
    assert len(kallsyms_addresses(ppc64le_bench.kallsyms(), SEED_NAME)) >= 2
    _each_object_gets_its_own_copy(_case(run, "seed"), SEED_LINE, "ppc_seed")


def test_suse_dialect_each_object_gets_its_own_do_nothing(run: Run) -> None:
    """KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, do_nothing, 1) in one object and 2 in the other."""
    ko = _built(run.suse)
    _assert_livepatch_ko(ko, "ppc_suse", _seed_relocations())
    assert not [s.name for s in read_elf_file(str(ko.module("ppc_suse"))).symbols
                if s.name.startswith(".klp.sym.rela.")]
    _each_object_gets_its_own_copy(_case(run, "suse"), SUSE_LINE, "ppc_suse")


def _each_object_gets_its_own_copy(case: CaseResult, line_format: re.Pattern[str], module: str) -> None:
    """Object a resolved do_nothing #1 and object b #2, by its call (the address its stub jumps to), its
    .toc entry and its pointer in .data.rel, each compared with this boot's /proc/kallsyms.

    kallsyms gives a function's global entry point (its symbol value); so does a function address taken
    in C under ELFv2 (an ADDR64 of the symbol), and the loader's stub for a call to a symbol outside the
    module jumps there too (never to the local entry, which would skip the callee's TOC setup from r12).
    So all three equal the kallsyms address."""
    assert case.rc == 0, case.explain()
    copies = kallsyms_addresses(case.output, SEED_NAME)
    assert len(copies) >= max(SEED_POSITIONS.values()), case.explain(f"too few {SEED_NAME} in /proc/kallsyms")
    seen = {m["who"]: m for line in case.dmesg if (m := line_format.search(line))}
    assert set(seen) == set(SEED_POSITIONS), case.explain("the module did not report both objects")
    for who, position in SEED_POSITIONS.items():
        want = copies[position - 1]
        for kind in ("call", "toc", "data"):
            got = int(seen[who][kind], 16)
            assert got == want, case.explain(
                f"object {who} {kind}: {got:#x}, but {SEED_NAME} #{position} is at {want:#x}")
        assert case.dmesg_with(f"{module}: {who} called"), case.explain(f"object {who}'s call did not return")
        # A livepatch module keeps its whole symbol table in kallsyms: the loader's own record of what it
        # resolved each klp symbol to.
        klp_symbol = f".klp.sym.vmlinux.{SEED_NAME},{position}"
        resolved = kallsyms_addresses(case.output, klp_symbol, module=module)
        assert resolved == [want], case.explain(f"{klp_symbol} resolved to {[hex(a) for a in resolved]}")


def test_seed_keeps_exports_as_ordinary_relocations(run: Run) -> None:
    ko = read_elf_file(str(_built(run.seed).module("ppc_seed")))
    jiffies = [s for s in ko.symbols if s.name == "jiffies"]
    assert jiffies and jiffies[0].is_undefined and jiffies[0].special != SHN_LIVEPATCH
    case = _case(run, "seed")
    addresses = kallsyms_addresses(case.output, "jiffies")
    assert any(case.dmesg_with(f"exported jiffies at {a:016x}") for a in addresses), case.explain(
        f"jiffies is not at any of {[hex(a) for a in addresses]}")


def test_function_patch_calls_a_static_function(ppc64le_bench: Bench, run: Run) -> None:
    """/proc/cmdline prints the mark and then what version_proc_show() prints for /proc/version."""
    _assert_livepatch_ko(_built(run.func), "ppc_func", {
        ".klp.rela.vmlinux..text": {("REL24", ".klp.sym.vmlinux.version_proc_show,0")},
    })
    case = _case(run, "func")
    assert case.rc == 0, case.explain()
    lines = case.output.splitlines()
    assert len(lines) == 3 and lines[0] == "1", case.explain("the patch is not enabled")
    version = lines[2]
    assert version.startswith(f"Linux version {ppc64le_bench.release} "), case.explain()
    assert lines[1] == FUNC_MARK + version, case.explain("/proc/cmdline is not the patched function's")
    assert case.dmesg_with("livepatch: enabling patch 'ppc_func'"), case.explain()


def test_late_module_patching(run: Run) -> None:
    """ppc_late loads first; when ppc_target loads, the kernel applies the patch's ppc_target relocations
    (a call of target_secret(), a .toc entry of target_base) and patches target_value(), already for the
    target's own init."""
    _assert_livepatch_ko(_built(run.late), "ppc_late", {
        ".klp.rela.ppc_target..text": {("REL24", ".klp.sym.ppc_target.target_secret,0")},
        ".klp.rela.ppc_target..toc": {("ADDR64", ".klp.sym.ppc_target.target_base,0")},
    })
    assert [path.name for path in _built(run.target)] == ["ppc_target.ko"]
    case = _case(run, "late")
    assert case.rc == 0, case.explain()
    expected = ["1", str(patched_value(7, 20)), str(patched_value(7, 30))]
    assert case.output.splitlines() == expected, case.explain(f"expected {expected}")
    applying = "livepatch: applying patch 'ppc_late' to loading module 'ppc_target'"
    assert case.dmesg_with(applying), case.explain()
    assert case.dmesg_with("livepatch: 'ppc_late': patching complete"), case.explain()
    assert case.dmesg_with(f"ppc_target: value={patched_value(7, 20)}"), case.explain()
    symbols = _case(run, "late-kallsyms")
    assert symbols.rc == 0, symbols.explain()
    for name in ("target_secret", "target_base"):
        own = kallsyms_addresses(symbols.output, name, module="ppc_target")
        resolved = kallsyms_addresses(symbols.output, f".klp.sym.ppc_target.{name},0", module="ppc_late")
        assert len(own) == 1 and resolved == own, symbols.explain(f"{name}: ppc_late's klp symbol is not it")


def test_late_patch_unpatches_and_unloads(run: Run) -> None:
    case = _case(run, "late-unpatch")
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == [str(target_value(7, 30))], case.explain("still patched")
    assert case.dmesg_with("livepatch: 'ppc_late': unpatching complete"), case.explain()


def test_patch_after_its_target(run: Run) -> None:
    """The other order: ppc_target is loaded, then ppc_late applies its relocations when it is enabled."""
    case = _case(run, "early")
    assert case.rc == 0, case.explain()
    expected = [str(target_value(7, 20)), "1", str(patched_value(7, 20))]
    assert case.output.splitlines() == expected, case.explain(f"expected {expected}")
    assert case.dmesg_with("livepatch: enabling patch 'ppc_late'"), case.explain()


def test_unannotated_unique_symbol_is_converted_automatically(ppc64le_bench: Bench, run: Run) -> None:
    """klpb_unknown reads saved_command_line without an annotation; with --klp-symbols=<the kallsyms dump>
    klp-ld converts it. Its replacement of cmdline_proc_show() stacks on ppc_func's: /proc/cmdline is the
    kernel's command line again, read through that relocation."""
    assert len(kallsyms_addresses(ppc64le_bench.kallsyms(), "saved_command_line")) == 1
    _assert_livepatch_ko(_built(run.auto), "klpb_unknown", {
        ".klp.rela.vmlinux..toc": {("ADDR64", ".klp.sym.vmlinux.saved_command_line,0")},
    })
    case = _case(run, "auto")
    assert case.rc == 0, case.explain()
    assert not case.dmesg_with("Unknown symbol"), case.explain()
    lines = case.output.splitlines()
    assert lines == ["1", ppc64le_bench.machine.append], case.explain("not the command line")


def test_target_cannot_load_again_while_the_late_patch_is_loaded(run: Run) -> None:
    """klp-ld's note on ppc_late holds in 6.1: unloaded while ppc_late is loaded, ppc_target cannot be
    loaded again, because restore_r2 finds the TOC restore it wrote the first time after the relocated bl
    (clear_relocate_add came in 6.3). The patch itself stays enabled."""
    case = _case(run, "late-reload")
    assert case.rc == 0, case.explain()
    assert case.output.splitlines()[-2:] == ["refused", "1"], case.explain()  # after insmod's complaint
    assert case.dmesg_with("ppc_late: Expected nop after call, got e8410018"), case.explain()
    assert case.dmesg_with("refusing to load module 'ppc_target'"), case.explain()
