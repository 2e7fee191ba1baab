"""The arm64 machine: the kernel the bench cross-builds from Debian sid's linux-source-7.2 boots under QEMU's
virt machine, loads an external two-object module built with kbuild against its build tree (linked by
plain ld, and by klp-ld, which passes such a link through unchanged), livepatches /proc/cmdline with the
kernel's own sample, and gives the kallsyms dump.

Selected with ``--kernel=arm64`` (or ``all``). The first run builds the kernel (see README.md); one boot
runs every case of this file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from .bench import Bench, BootResult, Built, Case, kallsyms_addresses

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
    result: BootResult


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
    ]
    result = bench.boot(
        cases, files=[hello, sample], extra_files={"klp-ld/arm64_hello.ko": through_bytes["arm64_hello.ko"]}
    )
    return Run(hello, through, through_bytes, plain_bytes, result)


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
