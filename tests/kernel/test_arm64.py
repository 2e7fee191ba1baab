"""The arm64 machine: the kernel the bench cross-builds from Debian sid's linux-source-7.2 boots under QEMU's
virt machine, loads an external two-object module built with kbuild against its build tree (linked by
plain ld, and by klp-ld, which passes such a link through unchanged), livepatches /proc/cmdline with the
kernel's own sample, and gives the kallsyms dump. Then the livepatch modules klp-ld builds for it, judged
by the kernel's loader and /proc/kallsyms, the cases proven on ppc64le: the seed (testdata/kmod-arm64:
two objects, two copies of one static function, reached by a call, adrp + add, adrp + ldr and a pointer
in data; also in SUSE's dialect), a function patch calling a static vmlinux function, late patching of a
module loaded after the patch (and before it), and an unannotated unique symbol converted from the
kallsyms dump (the last three with the portable sources of testdata/kmod-ppc64le and testdata/kmod).

Selected with ``--kernel=arm64`` (or ``all``). The first run builds the kernel (see README.md); one boot
runs every case of this file.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from klp_ld.arch.arm64 import RA64
from klp_ld.elf.consts import SHF_ALLOC, SHF_INFO_LINK, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf_file

from .bench import Bench, BootResult, BuildError, Built, Case, CaseResult, kallsyms_addresses
from .conftest import KMOD, REPO_ROOT

pytestmark = pytest.mark.kernel

# samples/livepatch/livepatch-sample.c replaces cmdline_proc_show with one printing this line.
SAMPLE_TEXT = "this has been live patched"
SAMPLE_DIR = "/sys/kernel/livepatch/livepatch_sample"
EM_AARCH64 = 183
R_AARCH64_CALL26 = 283

# A two-object module: kbuild partially links main.o and calc.o, then links arm64_hello.ko. It calls the
# kernel (printk, a `bl` the loader reaches directly or through a module PLT entry), its other object
# and reads a kernel variable and its own (adrp + ldr), so the loader's common arm64 relocations take part.
HELLO_SOURCES = {
    "Kbuild": "obj-m := arm64_hello.o\narm64_hello-y := main.o calc.o\n",
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
	pr_info("arm64_hello: seed=%d result=%d ticking=%d\n", seed, result, jiffies != 0);
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("arm64_hello: unloaded\n");
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
# What kbuild links: the partial link of the two objects and the final link of the module.
LINKED = ("arm64_hello.o", "arm64_hello.ko")


def hello_result(seed: int) -> int:
    return seed * seed + 3 * seed + 11


KMOD_ARM64 = REPO_ROOT / "testdata" / "kmod-arm64"
KMOD_PPC64LE = REPO_ROOT / "testdata" / "kmod-ppc64le"

# The seed: object a means default_read_file #1, object b #2 (this kernel has two static
# default_read_file(), debugfs's and tracefs's, both returning 0: see testdata/kmod-arm64/seed/Kbuild).
# Each reports where its bl ends up (through a PLT entry or not), its adrp + add, its pointer in data,
# its adrp + ldr of the function's first 8 bytes and those bytes read through the data pointer.
SEED_NAME = "default_read_file"
SEED_POSITIONS = {"a": 1, "b": 2}
SEED_LINE = re.compile(r"arm64_seed: (?P<who>[ab]) call=(?P<call>[0-9a-f]+) plt=(?P<plt>[01]) "
                       r"adrp=(?P<adrp>[0-9a-f]+) data=(?P<data>[0-9a-f]+) ldr=(?P<ldr>[0-9a-f]+) "
                       r"peek=(?P<peek>[0-9a-f]+)")
SUSE_LINE = re.compile(SEED_LINE.pattern.replace("arm64_seed:", "arm64_suse:"))
# Must match PPC_FUNC_MARK in testdata/kmod-ppc64le/func/func_patch.c (portable C, built unchanged).
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
    """A shell loop waiting (up to 30 s) for a livepatch's transition to end."""
    busy = f'[ "$(cat {path}/transition)" != 0 ]'
    return f"i=0; while {busy} && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done"


def wait_gone(path: str) -> str:
    """A shell loop waiting (up to 30 s) for a livepatch's sysfs directory to go: the transition to
    unpatched runs from a worker."""
    return f"i=0; while [ -e {path} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done"


def write_module(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in HELLO_SOURCES.items():
        (directory / name).write_text(text.lstrip("\n"))
    return directory


@dataclass(frozen=True)
class Run:
    hello: Built  # linked by plain ld
    through: Built  # linked by LD=wrappers/klp-ld (kbuild's V=1 log shows both links)
    through_bytes: dict[str, bytes]  # its LINKED files, as klp-ld left them
    plain_bytes: dict[str, bytes]  # the same directory rebuilt by plain ld
    # The livepatch modules klp-ld built (or why kbuild failed: a failing build must not hide the others).
    seed: Built | BuildError
    suse: Built | BuildError  # the seed in SUSE's KLP_RELOC_SYMBOL_POS dialect
    func: Built | BuildError
    target: Built | BuildError  # ppc_target, the late patch's target, linked by plain ld
    late: Built | BuildError
    auto: Built | BuildError
    result: BootResult


def _outcome(future: Future[Built]) -> Built | BuildError:
    try:
        return future.result()
    except BuildError as failure:
        return failure


def _build_livepatches(bench: Bench, klp_ld: Path) -> dict[str, Built | BuildError]:
    """The klp-ld builds, two at a time."""

    def late() -> Built:
        target = bench.build(KMOD_PPC64LE / "target")
        built["target"] = target
        # The target's own .ko is the symbol source of its module-specific relocations.
        return bench.build(KMOD_PPC64LE / "late", ld=f"{klp_ld} --klp-symbols={target.module('ppc_target')}")

    built: dict[str, Built | BuildError] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            "late": pool.submit(late),
            "seed": pool.submit(bench.build, KMOD_ARM64 / "seed", ld=klp_ld),
            "suse": pool.submit(bench.build, KMOD_ARM64 / "suse", ld=klp_ld),
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
        cases.append(Case("seed", ["insmod /mod/arm64_seed.ko",
                                   f"grep -w -e {SEED_NAME} -e jiffies /proc/kallsyms"]))
    if "suse" in ok:
        cases.append(Case("suse", ["insmod /mod/arm64_suse.ko", f"grep -w {SEED_NAME} /proc/kallsyms"]))
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
        # Unlike ppc64 before 6.3, arm64 may load the target again while the patch is loaded: its
        # clear_relocate_add is the weak no-op, and reloc_insn_imm rewrites only the immediate fields.
        cases.append(Case("late-reload", [
            "rmmod ppc_target",
            "insmod /mod/ppc_target.ko arg=7",
            f"cat {TARGET_PARAMS}/value",
            f"cat {LATE_DIR}/enabled",
        ]))
    return cases


@pytest.fixture(scope="module")
def run(arm64_bench: Bench, klp_ld: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    bench = arm64_bench
    tmp = tmp_path_factory.mktemp("arm64-")
    source = write_module(tmp / "arm64_hello")
    hello = bench.build(source)
    through = bench.build(source, ld=klp_ld, make_vars={"V": "1"})
    through_bytes = {name: (through.directory / name).read_bytes() for name in LINKED}
    # The plain build of the very same directory, so that nothing but the linker can differ.
    for target in ("clean", "modules"):
        done = bench.run(bench.make_command(through.directory, target))
        assert done.returncode == 0, f"make {target} with the plain ld failed:\n{done.stdout}{done.stderr}"
    plain_bytes = {name: (through.directory / name).read_bytes() for name in LINKED}
    sample = bench.image_module("samples/livepatch/livepatch-sample")
    built = _build_livepatches(bench, klp_ld)
    cases = [
        Case("machine", ["uname -m", "uname -r"]),
        Case(
            "hello",
            [
                "insmod /mod/arm64_hello.ko seed=7",
                "cat /sys/module/arm64_hello/parameters/result",
                "rmmod arm64_hello",
            ],
        ),
        Case("klp-ld", ["insmod /klp-ld/arm64_hello.ko seed=2", "rmmod arm64_hello"]),
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
        cases, files=files, extra_files={"klp-ld/arm64_hello.ko": through_bytes["arm64_hello.ko"]}
    )
    return Run(hello, through, through_bytes, plain_bytes, built["seed"], built["suse"], built["func"],
               built["target"], built["late"], built["auto"], result)


def test_kernel_configuration_has_livepatch(arm64_bench: Bench) -> None:
    config = arm64_bench.config
    for name in ("CONFIG_ARM64", "CONFIG_CPU_LITTLE_ENDIAN", "CONFIG_SERIAL_AMBA_PL011_CONSOLE",
                 "CONFIG_HAVE_LIVEPATCH", "CONFIG_LIVEPATCH", "CONFIG_DYNAMIC_FTRACE_WITH_ARGS",
                 "CONFIG_DYNAMIC_FTRACE_WITH_CALL_OPS", "CONFIG_HAVE_RELIABLE_STACKTRACE",
                 "CONFIG_STACKTRACE", "CONFIG_KALLSYMS_ALL", "CONFIG_MODULE_UNLOAD"):
        assert config.get(name) == "y", name
    assert config.get("CONFIG_SAMPLE_LIVEPATCH") == "m"
    for name in ("CONFIG_MODVERSIONS", "CONFIG_MODULE_SIG", "CONFIG_DEBUG_INFO_BTF", "CONFIG_DEBUG_INFO",
                 "CONFIG_TRIM_UNUSED_KSYMS", "CONFIG_MODULE_COMPRESS"):
        assert name not in config, name
    assert arm64_bench.version >= (6, 17), "arm64 has HAVE_LIVEPATCH since 6.17"


def test_guest_is_the_built_arm64_kernel(arm64_bench: Bench, run: Run) -> None:
    case = run.result["machine"]
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == ["aarch64", arm64_bench.release], case.explain()
    assert arm64_bench.vmlinuz.name == f"Image-{arm64_bench.release}"


def test_external_module_with_plain_ld_loads(run: Run) -> None:
    assert [path.name for path in run.hello] == ["arm64_hello.ko"]
    case = run.result["hello"]
    assert case.rc == 0, case.explain()
    assert case.output.strip() == str(hello_result(7)), case.explain(f"expected result={hello_result(7)}")
    assert case.dmesg_with(f"arm64_hello: seed=7 result={hello_result(7)} ticking=1"), case.explain()
    assert case.dmesg_with("arm64_hello: unloaded"), case.explain("rmmod did not run the exit function")


def test_module_calls_the_kernel_with_call26(run: Run) -> None:
    """How 7.2 compiles a module's call of a kernel function: a `bl` with R_AARCH64_CALL26 against the
    undefined symbol, no GOT; module.lds gives the .plt and .init.plt placeholders the loader fills with
    PLT entries for branches out of range (module_frob_arch_sections refuses a module without them)."""
    with run.hello.module("arm64_hello").open("rb") as handle:
        elf = ELFFile(handle)
        assert elf["e_machine"] == "EM_AARCH64"
        names = {section.name for section in elf.iter_sections()}
        assert {".plt", ".init.plt", "__patchable_function_entries"} <= names, sorted(names)
        symbols = elf.get_section_by_name(".symtab")
        assert isinstance(symbols, SymbolTableSection)
        calls = set()
        for section in elf.iter_sections():
            if isinstance(section, RelocationSection) and section.name.endswith("text"):
                for reloc in section.iter_relocations():
                    if reloc["r_info_type"] == R_AARCH64_CALL26:
                        symbol = symbols.get_symbol(reloc["r_info_sym"])
                        calls.add((section.name, symbol.name, symbol["st_shndx"], reloc["r_addend"]))
    assert (".rela.init.text", "_printk", "SHN_UNDEF", 0) in calls, sorted(calls)
    assert (".rela.exit.text", "_printk", "SHN_UNDEF", 0) in calls, sorted(calls)


def test_klp_ld_passes_a_plain_module_through(run: Run, klp_ld: Path) -> None:
    """``build(ld=klp_ld)`` reaches both of kbuild's links, klp-ld's output is byte-identical to plain
    ld's in the same directory, and the module loads."""
    links = [line for line in run.through.log.splitlines() if line.lstrip().startswith(f"{klp_ld} ")]
    outputs = {word for line in links for word in line.split() if word.endswith(LINKED)}
    assert {Path(word).name for word in outputs} >= set(LINKED), "\n".join(links) or run.through.log[-3000:]
    assert any("aarch64elf" in line and "module.lds" in line for line in links), "\n".join(links)
    for name in LINKED:
        assert run.through_bytes[name] == run.plain_bytes[name], f"{name} differs between LD=klp-ld and LD=ld"
    case = run.result["klp-ld"]
    assert case.rc == 0, case.explain()
    assert case.dmesg_with(f"arm64_hello: seed=2 result={hello_result(2)}"), case.explain()


def test_livepatch_sample_patches_cmdline(run: Run) -> None:
    case = run.result["sample-patch"]
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == ["1", SAMPLE_TEXT], case.explain("/proc/cmdline is not patched")
    assert case.dmesg_with("livepatch: enabling patch 'livepatch_sample'"), case.explain()


def test_livepatch_sample_unpatches_and_unloads(run: Run) -> None:
    case = run.result["sample-unpatch"]
    assert case.rc == 0, case.explain()
    assert "console=ttyAMA0" in case.output, case.explain("/proc/cmdline still patched after disabling")
    assert case.dmesg_with("livepatch: 'livepatch_sample': unpatching complete"), case.explain()


def test_kallsyms_dump_matches_the_running_kernel(arm64_bench: Bench, run: Run) -> None:
    cached = arm64_bench.kallsyms()
    assert len(kallsyms_addresses(cached, "cmdline_proc_show")) == 1
    case = run.result["kallsyms-live"]
    assert case.rc == 0, case.explain()
    live = kallsyms_addresses(case.output, "cmdline_proc_show")
    assert len(live) == 1 and live[0] != 0, case.explain("kptr_restrict still hides addresses?")


def test_build_helper_returns_the_modules(arm64_bench: Bench, tmp_path: Path) -> None:
    """What later tests use: ``build(source, ld=...)`` gives the ``.ko`` paths of an ARCH=arm64 build."""
    built = arm64_bench.build(write_module(tmp_path / "arm64_hello"))
    assert built.modules == (built.directory / "arm64_hello.ko",)
    command = arm64_bench.make_command(built.directory, "modules", ld="ld-x")
    assert command[:6] == ["make", "-C", str(arm64_bench.headers), f"M={built.directory}", "ARCH=arm64",
                           "CROSS_COMPILE=aarch64-linux-gnu-"]
    assert "LD=ld-x" in command
    with built.modules[0].open("rb") as handle:
        header = handle.read(20)
    assert header[:6] == b"\x7fELF\x02\x01"  # ELF64, little-endian
    assert int.from_bytes(header[18:20], "little") == EM_AARCH64
    assert os.path.getsize(built.modules[0]) > 0


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
            entries.add((RA64(rela.type).name, rela.symbol.name))
    return found


def _assert_livepatch_ko(built: Built, module: str, expected: dict[str, set[tuple[str, str]]]) -> ElfObject:
    """The converted .ko as the loader reads it: exactly the expected klp relocations, every klp symbol
    SHN_LIVEPATCH, no annotation section left, the .plt and .init.plt placeholders kept (the loader
    refuses a module without them), and no trace of the originals in the ordinary relocation sections
    but an R_AARCH64_NONE against no symbol at each klp site (apply_relocate_add skips it)."""
    ko = read_elf_file(str(built.module(module)))
    assert _klp_relocations(ko) == expected
    klp_symbols = [s for s in ko.symbols if s.name.startswith(".klp.sym.")]
    assert klp_symbols and all(s.special == SHN_LIVEPATCH for s in klp_symbols), [
        (s.name, s.special) for s in klp_symbols]
    names = [section.name for section in ko.sections]
    assert not [name for name in names if name.startswith(".klp.module_relocs.")], names
    assert {".plt", ".init.plt"} <= set(names), names
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
            if rela.type == RA64.NONE:
                assert rela.symbol is None and rela.addend == 0, f"{section.name}+{rela.offset:#x}"
                nones.add(rela.offset)
        assert nones <= sites.get(section.info_section.name, set()), f"{section.name}: {sorted(nones)}"
    return ko


def test_klp_ld_check_passes_every_livepatch_module(arm64_bench: Bench, klp_ld: Path, run: Run) -> None:
    for item, module in ((run.seed, "arm64_seed"), (run.suse, "arm64_suse"), (run.func, "ppc_func"),
                         (run.late, "ppc_late"), (run.auto, "klpb_unknown")):
        ko = _built(item).module(module)
        done = arm64_bench.run([str(klp_ld), "check", str(ko)])
        report = f"klp-ld check {ko.name}: status {done.returncode}\n{done.stdout}{done.stderr}"
        assert done.returncode == 0, report
        assert done.stdout.rstrip().endswith(f"{ko}: OK"), done.stdout


def _seed_relocations() -> dict[str, set[tuple[str, str]]]:
    symbols = [f".klp.sym.vmlinux.{SEED_NAME},{position}" for position in SEED_POSITIONS.values()]
    text = {"CALL26", "ADR_PREL_PG_HI21", "ADD_ABS_LO12_NC", "LDST64_ABS_LO12_NC"}
    return {
        ".klp.rela.vmlinux..text": {(kind, symbol) for kind in text for symbol in symbols},
        ".klp.rela.vmlinux..data": {("ABS64", symbol) for symbol in symbols},
    }


def _assert_seed_ko(built: Built, module: str, prefix: str) -> None:
    """The seed's relocations, and per site the position its object means: a site in <prefix>_a_*
    (code, or the pointer in data) names position 1, one in <prefix>_b_* position 2."""
    ko = _assert_livepatch_ko(built, module, _seed_relocations())
    for section in ko.sections_named(".klp.rela."):
        owners = [s for s in ko.symbols if s.section is section.info_section and s.size
                  and s.name.startswith(f"{prefix}_")]
        for rela in section.relocs:
            owner = [s.name for s in owners if s.value <= rela.offset < s.value + s.size]
            assert len(owner) == 1, f"{section.name}+{rela.offset:#x}: in {owner}"
            who = owner[0].removeprefix(f"{prefix}_")[0]
            assert rela.symbol is not None
            assert rela.symbol.name == f".klp.sym.vmlinux.{SEED_NAME},{SEED_POSITIONS[who]}", (
                f"{section.name}+{rela.offset:#x} in {owner[0]}: {rela.symbol.name}")


def test_seed_ko_has_per_object_klp_relocations(run: Run) -> None:
    _assert_seed_ko(_built(run.seed), "arm64_seed", "seed")


def test_seed_each_object_gets_its_own_default_read_file(arm64_bench: Bench, run: Run) -> None:
    assert len(kallsyms_addresses(arm64_bench.kallsyms(), SEED_NAME)) == 2
    _each_object_gets_its_own_copy(_case(run, "seed"), SEED_LINE, "arm64_seed")


def test_suse_dialect_each_object_gets_its_own_default_read_file(run: Run) -> None:
    """KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, default_read_file, 1) in one object and 2 in the other."""
    ko = _built(run.suse)
    _assert_seed_ko(ko, "arm64_suse", "suse")
    assert not [s.name for s in read_elf_file(str(ko.module("arm64_suse"))).symbols
                if s.name.startswith(".klp.sym.rela.")]
    _each_object_gets_its_own_copy(_case(run, "suse"), SUSE_LINE, "arm64_suse")


def _each_object_gets_its_own_copy(case: CaseResult, line_format: re.Pattern[str], module: str) -> None:
    """Object a resolved default_read_file #1 and object b #2, by its call (where its bl ends up, directly
    or through the PLT entry the loader wrote), its adrp + add and its pointer in data, each compared with
    this boot's /proc/kallsyms; its adrp + ldr loaded the function's first 8 bytes (both copies' code is
    the same, so this only says the page and the offset fit together: the per-site check of the .ko says
    which copy it names). The call ran and returned the function's 0."""
    assert case.rc == 0, case.explain()
    copies = kallsyms_addresses(case.output, SEED_NAME)
    assert len(copies) >= max(SEED_POSITIONS.values()), case.explain(f"too few {SEED_NAME} in /proc/kallsyms")
    seen = {m["who"]: m for line in case.dmesg if (m := line_format.search(line))}
    assert set(seen) == set(SEED_POSITIONS), case.explain("the module did not report both objects")
    for who, position in SEED_POSITIONS.items():
        want = copies[position - 1]
        for kind in ("call", "adrp", "data"):
            got = int(seen[who][kind], 16)
            assert got == want, case.explain(
                f"object {who} {kind}: {got:#x}, but {SEED_NAME} #{position} is at {want:#x}")
        assert seen[who]["ldr"] == seen[who]["peek"], case.explain(f"object {who}: ldr loaded elsewhere")
        assert case.dmesg_with(f"{module}: {who} called, got 0"), case.explain(f"object {who}'s call failed")
        # A livepatch module keeps its whole symbol table in kallsyms: the loader's own record of what it
        # resolved each klp symbol to.
        klp_symbol = f".klp.sym.vmlinux.{SEED_NAME},{position}"
        resolved = kallsyms_addresses(case.output, klp_symbol, module=module)
        assert resolved == [want], case.explain(f"{klp_symbol} resolved to {[hex(a) for a in resolved]}")


def test_seed_keeps_exports_as_ordinary_relocations(run: Run) -> None:
    ko = read_elf_file(str(_built(run.seed).module("arm64_seed")))
    jiffies = [s for s in ko.symbols if s.name == "jiffies"]
    assert jiffies and jiffies[0].is_undefined and jiffies[0].special != SHN_LIVEPATCH
    case = _case(run, "seed")
    addresses = kallsyms_addresses(case.output, "jiffies")
    assert any(case.dmesg_with(f"exported jiffies at {a:016x}") for a in addresses), case.explain(
        f"jiffies is not at any of {[hex(a) for a in addresses]}")


def test_function_patch_calls_a_static_function(arm64_bench: Bench, run: Run) -> None:
    """/proc/cmdline prints the mark and then what version_proc_show() prints for /proc/version (a bl
    with R_AARCH64_CALL26 against the klp symbol)."""
    _assert_livepatch_ko(_built(run.func), "ppc_func", {
        ".klp.rela.vmlinux..text": {("CALL26", ".klp.sym.vmlinux.version_proc_show,0")},
    })
    case = _case(run, "func")
    assert case.rc == 0, case.explain()
    lines = case.output.splitlines()
    assert len(lines) == 3 and lines[0] == "1", case.explain("the patch is not enabled")
    version = lines[2]
    assert version.startswith(f"Linux version {arm64_bench.release} "), case.explain()
    assert lines[1] == FUNC_MARK + version, case.explain("/proc/cmdline is not the patched function's")
    assert case.dmesg_with("livepatch: enabling patch 'ppc_func'"), case.explain()


def test_late_module_patching(run: Run) -> None:
    """ppc_late loads first; when ppc_target loads, klp_module_coming applies the patch's ppc_target
    relocations (a bl to target_secret(), adrp + ldr of target_base) and patches target_value(), already
    for the target's own init."""
    _assert_livepatch_ko(_built(run.late), "ppc_late", {
        ".klp.rela.ppc_target..text": {
            ("CALL26", ".klp.sym.ppc_target.target_secret,0"),
            ("ADR_PREL_PG_HI21", ".klp.sym.ppc_target.target_base,0"),
            ("LDST32_ABS_LO12_NC", ".klp.sym.ppc_target.target_base,0"),
        },
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


def test_unannotated_unique_symbol_is_converted_automatically(arm64_bench: Bench, run: Run) -> None:
    """klpb_unknown reads saved_command_line without an annotation (adrp + ldr); with
    --klp-symbols=<the kallsyms dump> klp-ld converts it. Its replacement of cmdline_proc_show() stacks
    on ppc_func's: /proc/cmdline is the kernel's command line again, read through those relocations."""
    assert len(kallsyms_addresses(arm64_bench.kallsyms(), "saved_command_line")) == 1
    _assert_livepatch_ko(_built(run.auto), "klpb_unknown", {
        ".klp.rela.vmlinux..text": {("ADR_PREL_PG_HI21", ".klp.sym.vmlinux.saved_command_line,0"),
                                    ("LDST64_ABS_LO12_NC", ".klp.sym.vmlinux.saved_command_line,0")},
    })
    case = _case(run, "auto")
    assert case.rc == 0, case.explain()
    assert not case.dmesg_with("Unknown symbol"), case.explain()
    lines = case.output.splitlines()
    assert lines == ["1", arm64_bench.machine.append], case.explain("not the command line")


def test_target_loads_again_while_the_late_patch_is_loaded(run: Run) -> None:
    """The target unloaded and loaded again under the enabled patch: the loader applies the patch's
    relocations once more, and target_value() is the patch's again."""
    case = _case(run, "late-reload")
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == [str(patched_value(7, 20)), "1"], case.explain()
    applying = "livepatch: applying patch 'ppc_late' to loading module 'ppc_target'"
    assert case.dmesg_with(applying), case.explain()
