"""What the cross-built machines' bench tests (test_ppc64le.py, test_arm64.py, test_s390x.py) have in common.

Each machine boots one kernel per test file and runs the same story in it: an external two-object module,
the kernel's own livepatch sample, the kallsyms dump, and then the livepatch modules klp-ld builds. The
late patch, the function patch and the unannotated module are portable C (testdata/kmod-ppc64le and
testdata/kmod), built unchanged for each machine, so their cases, and what the guest must answer to them,
are the same; only the seed's sources, the relocation types and a few details of each loader differ, and
those stay in each test file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from klp_ld.elf.consts import SHF_ALLOC, SHF_INFO_LINK, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf_file

from .bench import Bench, BootResult, BuildError, Built, Case, CaseResult, kallsyms_addresses
from .conftest import KMOD, REPO_ROOT

# samples/livepatch/livepatch-sample.c replaces cmdline_proc_show with one printing this line.
SAMPLE_TEXT = "this has been live patched"
SAMPLE_DIR = "/sys/kernel/livepatch/livepatch_sample"

# The portable livepatch sources; their modules keep the ppc_ names on every machine.
KMOD_PPC64LE = REPO_ROOT / "testdata" / "kmod-ppc64le"
# Must match PPC_FUNC_MARK in testdata/kmod-ppc64le/func/func_patch.c.
FUNC_MARK = "ppc_func: "
FUNC_DIR = "/sys/kernel/livepatch/ppc_func"
LATE_DIR = "/sys/kernel/livepatch/ppc_late"
TARGET_PARAMS = "/sys/module/ppc_target/parameters"
AUTO_DIR = "/sys/kernel/livepatch/klpb_unknown"

# Each machine's seed has two objects: a means the seed function's copy #1 in kallsyms, b copy #2.
SEED_POSITIONS = {"a": 1, "b": 2}

# A relocation section's entries as the tests compare them: (relocation type's name, symbol name).
Relocations = dict[str, set[tuple[str, str]]]

_HELLO_MAIN = r"""
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
	pr_info("@MODULE@: seed=%d result=%d ticking=%d\n", seed, result, jiffies != 0);
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("@MODULE@: unloaded\n");
}

module_init(hello_init);
module_exit(hello_exit);
MODULE_LICENSE("GPL");
"""

_HELLO_CALC = r"""
#include <linux/compiler.h>
#include "hello.h"

int hello_offset = 11;

noinline int hello_scale(int x)
{
	return x * x + 3 * x;
}
"""


def hello_sources(module: str) -> dict[str, str]:
    """A two-object module named ``module``: kbuild partially links main.o and calc.o, then links the
    ``.ko``. It calls the kernel (printk), its other object, and reads a kernel variable and its own, so
    the common relocations of each machine's loader take part; the name is the machine's, so that a line
    in the guest's dmesg says which build it came from."""
    return {
        "Kbuild": f"obj-m := {module}.o\n{module}-y := main.o calc.o\n",
        "hello.h": "int hello_scale(int x);\nextern int hello_offset;\n",
        "main.c": _HELLO_MAIN.replace("@MODULE@", module),
        "calc.c": _HELLO_CALC,
    }


def write_hello(directory: Path, module: str) -> Path:
    """The sources of ``hello_sources(module)`` written into ``directory`` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in hello_sources(module).items():
        (directory / name).write_text(text.lstrip("\n"))
    return directory


def hello_result(seed: int) -> int:
    """The hello module's ``result`` parameter for a given ``seed``: hello_scale(seed) + hello_offset."""
    return seed * seed + 3 * seed + 11


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
class Livepatches:
    """The livepatch modules klp-ld built, or why kbuild failed: a failing build must not hide the others,
    so each is kept as its outcome and only the tests that need it fail."""

    seed: Built | BuildError
    suse: Built | BuildError  # the seed in SUSE's KLP_RELOC_SYMBOL_POS dialect
    func: Built | BuildError
    target: Built | BuildError  # ppc_target, the late patch's target, linked by plain ld
    late: Built | BuildError
    auto: Built | BuildError

    def ok(self) -> set[str]:
        """The names of the modules that built."""
        return {name for name, item in vars(self).items() if isinstance(item, Built)}

    def files(self) -> list[Built]:
        """What the boot must carry: every module that built."""
        return [item for item in vars(self).values() if isinstance(item, Built)]


@dataclass(frozen=True)
class LivepatchRun(Livepatches):
    """The livepatch modules and the one boot that ran every case; each machine's ``Run`` adds its own."""

    result: BootResult


def _outcome(future: Future[Built]) -> Built | BuildError:
    try:
        return future.result()
    except BuildError as failure:
        return failure


def build_livepatches(bench: Bench, klp_ld: Path, seed_sources: Path) -> Livepatches:
    """The klp-ld builds, two at a time (a build is mostly one core's compiler or klp-ld). The seed and
    its SUSE twin come from ``seed_sources`` (``<seed_sources>/seed``, ``/suse``), the machine's own; the
    rest are the portable sources."""

    def late() -> Built:
        target = bench.build(KMOD_PPC64LE / "target")
        built["target"] = target
        # The target's own .ko is the symbol source of its module-specific relocations.
        return bench.build(KMOD_PPC64LE / "late", ld=f"{klp_ld} --klp-symbols={target.module('ppc_target')}")

    built: dict[str, Built | BuildError] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            "late": pool.submit(late),
            "seed": pool.submit(bench.build, seed_sources / "seed", ld=klp_ld),
            "suse": pool.submit(bench.build, seed_sources / "suse", ld=klp_ld),
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
    return Livepatches(**built)


def hello_and_sample_cases(module: str, relinked: Case, sample: Path) -> list[Case]:
    """The cases before the livepatch ones: the machine, the hello module built by plain ld, the same
    module linked another way (``relinked``, the machine's own), the kernel's sample patching and
    unpatching /proc/cmdline, and the live kallsyms."""
    return [
        Case("machine", ["uname -m", "uname -r"]),
        Case(
            "hello",
            [
                f"insmod /mod/{module}.ko seed=7",
                f"cat /sys/module/{module}/parameters/result",
                f"rmmod {module}",
            ],
        ),
        relinked,
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
    ]


def livepatch_cases(
    built: Livepatches, seed_module: str, seed_name: str, late_reload: list[str]
) -> list[Case]:
    """The livepatch cases, for the modules that built; they run after the sample's, in this order.
    ``seed_module`` is the machine's seed module (its SUSE twin is the same with ``_suse``), and
    ``late_reload`` the commands of the last case, which unloads ppc_target under the loaded patch and
    loads it again: what the loader then does differs between machines."""
    ok = built.ok()
    suse_module = seed_module.removesuffix("_seed") + "_suse"
    cases: list[Case] = []
    if "seed" in ok:
        cases.append(Case("seed", [f"insmod /mod/{seed_module}.ko",
                                   f"grep -w -e {seed_name} -e jiffies /proc/kallsyms"]))
    if "suse" in ok:
        cases.append(Case("suse", [f"insmod /mod/{suse_module}.ko", f"grep -w {seed_name} /proc/kallsyms"]))
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
        # Last, since what it leaves loaded depends on the machine.
        cases.append(Case("late-reload", late_reload))
    return cases


# ------------------------------------------------------------------------------------------------------
# Checks of the outcome, the same on both machines


def built_module(item: Built | BuildError) -> Built:
    """The build, or a failure that shows kbuild's output (the boot went on without the module)."""
    assert isinstance(item, Built), f"kbuild with LD=klp-ld failed:\n{item}"
    return item


def case_of(run: LivepatchRun, name: str) -> CaseResult:
    """A livepatch case's result; a case is missing when its module did not build, which is said so."""
    assert name in run.result, f"case {name} did not run: its module did not build"
    return run.result[name]


def klp_relocations(ko: ElfObject, type_name: Callable[[int], str]) -> Relocations:
    """``.klp.rela.<obj>.<section>`` -> {(relocation type, symbol)}, after checking what the loader needs of
    each: SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH, sh_info naming the section the name says, only
    SHN_LIVEPATCH ``.klp.sym.<obj>.`` symbols of the same object. ``type_name`` names a relocation type
    of the machine (its enum's name, without the R_<machine>_ prefix)."""
    found: Relocations = {}
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
            entries.add((type_name(rela.type), rela.symbol.name))
    return found


def read_livepatch_ko(
    built: Built, module: str, expected: Relocations, type_name: Callable[[int], str]
) -> ElfObject:
    """The converted .ko as the loader reads it, with what every machine asks of it checked: exactly the
    expected klp relocations, every klp symbol SHN_LIVEPATCH, no annotation section left. What each
    machine's loader needs of the ordinary relocation sections is left to its test file."""
    ko = read_elf_file(str(built.module(module)))
    assert klp_relocations(ko, type_name) == expected
    klp_symbols = [s for s in ko.symbols if s.name.startswith(".klp.sym.")]
    assert klp_symbols and all(s.special == SHN_LIVEPATCH for s in klp_symbols), [
        (s.name, s.special) for s in klp_symbols]
    names = [section.name for section in ko.sections]
    assert not [name for name in names if name.startswith(".klp.module_relocs.")], names
    return ko


def assert_klp_ld_check_passes(
    bench: Bench, klp_ld: Path, modules: Iterable[tuple[Built | BuildError, str]]
) -> None:
    """``klp-ld check`` accepts every (build, module name) given."""
    for item, module in modules:
        ko = built_module(item).module(module)
        done = bench.run([str(klp_ld), "check", str(ko)])
        report = f"klp-ld check {ko.name}: status {done.returncode}\n{done.stdout}{done.stderr}"
        assert done.returncode == 0, report
        assert done.stdout.rstrip().endswith(f"{ko}: OK"), done.stdout


def assert_originals_retyped(ko: ElfObject, none: int) -> None:
    """Where the loader applies NONE (arm64, s390x): no trace of the originals in the ordinary relocation
    sections but a NONE (type ``none``) against no symbol at each klp site."""
    sites: dict[str, set[int]] = {}
    for section in ko.sections_named(".klp.rela."):
        assert section.info_section is not None
        sites.setdefault(section.info_section.name, set()).update(rela.offset for rela in section.relocs)
    for section in ko.rela_sections():
        if section.name.startswith(".klp.rela.") or section.info_section is None:
            continue
        nones = set()
        for rela in section.relocs:
            name = rela.symbol.name if rela.symbol is not None else ""
            assert not name.startswith(".klp.sym."), f"{section.name}+{rela.offset:#x}: {name}"
            if rela.type == none:
                assert rela.symbol is None and rela.addend == 0, f"{section.name}+{rela.offset:#x}"
                nones.add(rela.offset)
        assert nones <= sites.get(section.info_section.name, set()), f"{section.name}: {sorted(nones)}"


def assert_seed_positions(ko: ElfObject, prefix: str, seed_name: str) -> None:
    """Per klp site of a seed module, the position its object means: a site in <prefix>_a_* (code, or
    the pointer in data) names position 1, one in <prefix>_b_* position 2."""
    for section in ko.sections_named(".klp.rela."):
        owners = [s for s in ko.symbols if s.section is section.info_section and s.size
                  and s.name.startswith(f"{prefix}_")]
        for rela in section.relocs:
            owner = [s.name for s in owners if s.value <= rela.offset < s.value + s.size]
            assert len(owner) == 1, f"{section.name}+{rela.offset:#x}: in {owner}"
            who = owner[0].removeprefix(f"{prefix}_")[0]
            assert rela.symbol is not None
            assert rela.symbol.name == f".klp.sym.vmlinux.{seed_name},{SEED_POSITIONS[who]}", (
                f"{section.name}+{rela.offset:#x} in {owner[0]}: {rela.symbol.name}")


def assert_suse_has_no_annotation_symbols(built: Built, module: str) -> None:
    """The SUSE dialect's ``.klp.sym.rela.`` annotation symbols are gone from the converted .ko."""
    assert not [s.name for s in read_elf_file(str(built.module(module))).symbols
                if s.name.startswith(".klp.sym.rela.")]


def seed_reports(
    case: CaseResult, line_format: re.Pattern[str], seed_name: str
) -> tuple[list[int], dict[str, re.Match[str]]]:
    """The seed function's copies in this boot's /proc/kallsyms, and each object's report line in dmesg
    (by ``who``), after checking there are enough copies and that both objects reported."""
    assert case.rc == 0, case.explain()
    copies = kallsyms_addresses(case.output, seed_name)
    assert len(copies) >= max(SEED_POSITIONS.values()), case.explain(f"too few {seed_name} in /proc/kallsyms")
    seen = {m["who"]: m for line in case.dmesg if (m := line_format.search(line))}
    assert set(seen) == set(SEED_POSITIONS), case.explain("the module did not report both objects")
    return copies, seen


def assert_reported_addresses(
    case: CaseResult, seen: Mapping[str, re.Match[str]], kinds: Iterable[str], seed_name: str,
    copies: list[int],
) -> None:
    """Each object's reported addresses of the given ``kinds`` are the copy its position names."""
    for who, position in SEED_POSITIONS.items():
        want = copies[position - 1]
        for kind in kinds:
            got = int(seen[who][kind], 16)
            assert got == want, case.explain(
                f"object {who} {kind}: {got:#x}, but {seed_name} #{position} is at {want:#x}")


def assert_klp_symbols_resolved(case: CaseResult, seed_name: str, copies: list[int], module: str) -> None:
    """A livepatch module keeps its whole symbol table in kallsyms: the loader's own record of what it
    resolved each klp symbol to, which must be the copy the symbol's position names."""
    for position in SEED_POSITIONS.values():
        want = copies[position - 1]
        klp_symbol = f".klp.sym.vmlinux.{seed_name},{position}"
        resolved = kallsyms_addresses(case.output, klp_symbol, module=module)
        assert resolved == [want], case.explain(f"{klp_symbol} resolved to {[hex(a) for a in resolved]}")


def assert_seed_keeps_exports(run: LivepatchRun, module: str) -> None:
    """An exported symbol (jiffies) stays an ordinary undefined symbol, and the kernel resolves it."""
    ko = read_elf_file(str(built_module(run.seed).module(module)))
    jiffies = [s for s in ko.symbols if s.name == "jiffies"]
    assert jiffies and jiffies[0].is_undefined and jiffies[0].special != SHN_LIVEPATCH
    case = case_of(run, "seed")
    addresses = kallsyms_addresses(case.output, "jiffies")
    assert any(case.dmesg_with(f"exported jiffies at {a:016x}") for a in addresses), case.explain(
        f"jiffies is not at any of {[hex(a) for a in addresses]}")


def assert_function_patch(run: LivepatchRun, release: str) -> None:
    """ppc_func's case: enabled, /proc/cmdline is the mark and then /proc/version's line."""
    case = case_of(run, "func")
    assert case.rc == 0, case.explain()
    lines = case.output.splitlines()
    assert len(lines) == 3 and lines[0] == "1", case.explain("the patch is not enabled")
    version = lines[2]
    assert version.startswith(f"Linux version {release} "), case.explain()
    assert lines[1] == FUNC_MARK + version, case.explain("/proc/cmdline is not the patched function's")
    assert case.dmesg_with("livepatch: enabling patch 'ppc_func'"), case.explain()


def assert_late_patched(run: LivepatchRun) -> None:
    """The late case: ppc_target, loaded after ppc_late, runs the patched target_value() from its own
    init on, and the patch's klp symbols resolved to the target's own symbols."""
    assert [path.name for path in built_module(run.target)] == ["ppc_target.ko"]
    case = case_of(run, "late")
    assert case.rc == 0, case.explain()
    expected = ["1", str(patched_value(7, 20)), str(patched_value(7, 30))]
    assert case.output.splitlines() == expected, case.explain(f"expected {expected}")
    applying = "livepatch: applying patch 'ppc_late' to loading module 'ppc_target'"
    assert case.dmesg_with(applying), case.explain()
    assert case.dmesg_with("livepatch: 'ppc_late': patching complete"), case.explain()
    assert case.dmesg_with(f"ppc_target: value={patched_value(7, 20)}"), case.explain()
    symbols = case_of(run, "late-kallsyms")
    assert symbols.rc == 0, symbols.explain()
    for name in ("target_secret", "target_base"):
        own = kallsyms_addresses(symbols.output, name, module="ppc_target")
        resolved = kallsyms_addresses(symbols.output, f".klp.sym.ppc_target.{name},0", module="ppc_late")
        assert len(own) == 1 and resolved == own, symbols.explain(f"{name}: ppc_late's klp symbol is not it")


def assert_late_unpatched(run: LivepatchRun) -> None:
    """The late-unpatch case: disabled and unloaded, ppc_late leaves target_value() the target's own."""
    case = case_of(run, "late-unpatch")
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == [str(target_value(7, 30))], case.explain("still patched")
    assert case.dmesg_with("livepatch: 'ppc_late': unpatching complete"), case.explain()


def assert_patched_after_target(run: LivepatchRun) -> None:
    """The early case: ppc_target loaded first, ppc_late applies its relocations when it is enabled."""
    case = case_of(run, "early")
    assert case.rc == 0, case.explain()
    expected = [str(target_value(7, 20)), "1", str(patched_value(7, 20))]
    assert case.output.splitlines() == expected, case.explain(f"expected {expected}")
    assert case.dmesg_with("livepatch: enabling patch 'ppc_late'"), case.explain()


def assert_auto_converted(run: LivepatchRun, command_line: str) -> None:
    """The auto case: klpb_unknown loads with no unknown symbol, and /proc/cmdline is the command line."""
    case = case_of(run, "auto")
    assert case.rc == 0, case.explain()
    assert not case.dmesg_with("Unknown symbol"), case.explain()
    lines = case.output.splitlines()
    assert lines == ["1", command_line], case.explain("not the command line")


def assert_hello_loads(result: BootResult, module: str) -> None:
    """The hello case: the module built by plain ld loads, computes its result and unloads."""
    case = result["hello"]
    assert case.rc == 0, case.explain()
    assert case.output.strip() == str(hello_result(7)), case.explain(f"expected result={hello_result(7)}")
    assert case.dmesg_with(f"{module}: seed=7 result={hello_result(7)} ticking=1"), case.explain()
    assert case.dmesg_with(f"{module}: unloaded"), case.explain("rmmod did not run the exit function")


def assert_sample_patches(result: BootResult) -> None:
    """The sample-patch case: the kernel's sample replaces /proc/cmdline's text."""
    case = result["sample-patch"]
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == ["1", SAMPLE_TEXT], case.explain("/proc/cmdline is not patched")
    assert case.dmesg_with("livepatch: enabling patch 'livepatch_sample'"), case.explain()


def assert_sample_unpatches(result: BootResult, console: str) -> None:
    """The sample-unpatch case: /proc/cmdline is the command line again (it names the ``console``)."""
    case = result["sample-unpatch"]
    assert case.rc == 0, case.explain()
    assert console in case.output, case.explain("/proc/cmdline still patched after disabling")
    assert case.dmesg_with("livepatch: 'livepatch_sample': unpatching complete"), case.explain()


def assert_kallsyms_matches(bench: Bench, result: BootResult) -> None:
    """The cached kallsyms dump and the live /proc/kallsyms both have cmdline_proc_show, with an address."""
    cached = bench.kallsyms()
    assert len(kallsyms_addresses(cached, "cmdline_proc_show")) == 1
    case = result["kallsyms-live"]
    assert case.rc == 0, case.explain()
    live = kallsyms_addresses(case.output, "cmdline_proc_show")
    assert len(live) == 1 and live[0] != 0, case.explain("kptr_restrict still hides addresses?")


def assert_builds_modules(
    bench: Bench, source: Path, module: str, make_vars: list[str], e_machine: int
) -> None:
    """What the tests build on: ``build(source)`` gives the ``.ko`` path of the machine's ELF64 module in
    its byte order (big-endian on s390x), and ``make_command(..., ld=...)`` runs kbuild with the machine's
    ``ARCH=`` and ``CROSS_COMPILE=`` (``make_vars``) and the given LD."""
    built = bench.build(source)
    assert built.modules == (built.directory / f"{module}.ko",)
    command = bench.make_command(built.directory, "modules", ld="ld-x")
    assert command[:6] == ["make", "-C", str(bench.headers), f"M={built.directory}", *make_vars]
    assert "LD=ld-x" in command
    with built.modules[0].open("rb") as handle:
        header = handle.read(20)
    assert header[:6] == b"\x7fELF\x02" + bytes([bench.machine.elf_data])  # ELF64, the machine's order
    assert int.from_bytes(header[18:20], bench.machine.byteorder) == e_machine
    assert os.path.getsize(built.modules[0]) > 0
