"""The ppc64le machine: the kernel the bench cross-builds boots under QEMU's pseries, loads an external
module built with kbuild against its build tree, and livepatches with the kernel's own sample.

Selected with ``--kernel=ppc64le`` (or ``all``). The first run builds the kernel (see README.md); one boot
runs every case of this file.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from .bench import Bench, BootResult, Built, Case, kallsyms_addresses

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


@dataclass(frozen=True)
class Run:
    hello: Built
    recorded: Built
    ld_log: Path
    result: BootResult


def write_module(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in HELLO_SOURCES.items():
        (directory / name).write_text(text.lstrip("\n"))
    return directory


@pytest.fixture(scope="module")
def run(ppc64le_bench: Bench, tmp_path_factory: pytest.TempPathFactory) -> Run:
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
                # The transition runs from a worker; the sysfs directory goes when it is done.
                f"i=0; while [ -e {SAMPLE_DIR} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done",
                "rmmod livepatch_sample",
                "cat /proc/cmdline",
            ],
        ),
        Case("kallsyms-live", ["grep -w cmdline_proc_show /proc/kallsyms"]),
    ]
    result = bench.boot(
        cases, files=[hello, sample], extra_files={"recorded/ppc_hello.ko": recorded.module("ppc_hello")}
    )
    return Run(hello, recorded, ld_log, result)


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
