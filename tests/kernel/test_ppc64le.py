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

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from klp_ld.arch.ppc64le import RPPC64

from . import cross_cases as cross
from .bench import Bench, Built, Case, CaseResult, kallsyms_addresses

pytestmark = pytest.mark.kernel

# The hello module (see cross_cases.hello_sources): on ppc64le its call of printk goes through a stub that
# restores r2, its call of the other object is a local call, and it reads a kernel variable and its own
# through the TOC, so the loader's ppc64 relocations all take part.
HELLO = "ppc_hello"

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


# The seed: object a means do_nothing #1, object b #2 (this kernel has two static do_nothing(), see
# testdata/kmod-ppc64le/seed/Kbuild). Each reports the address its call's stub jumps to, the .toc entry
# and the pointer in data (.data.rel).
SEED_NAME = "do_nothing"
SEED_LINE = re.compile(r"ppc_seed: (?P<who>[ab]) call=(?P<call>[0-9a-f]+) toc=(?P<toc>[0-9a-f]+) "
                       r"data=(?P<data>[0-9a-f]+)")
SUSE_LINE = re.compile(SEED_LINE.pattern.replace("ppc_seed:", "ppc_suse:"))
SEED_SOURCES = cross.KMOD_PPC64LE
# What the late-reload case runs: ppc_target unloaded under the loaded patch, and an attempt to load it
# again (refused before 6.3, see test_target_cannot_load_again_while_the_late_patch_is_loaded).
LATE_DIR = "/sys/kernel/livepatch/ppc_late"
LATE_RELOAD = [
    "rmmod ppc_target",
    "if insmod /mod/ppc_target.ko arg=7; then echo loaded; else echo refused; fi",
    f"cat {LATE_DIR}/enabled",
]


def reloc_name(value: int) -> str:
    """A ppc64 relocation type as the expected relocations name it (R_PPC64_REL24 -> "REL24")."""
    return RPPC64(value).name


@dataclass(frozen=True)
class Run(cross.LivepatchRun):
    hello: Built
    recorded: Built
    ld_log: Path


def write_module(directory: Path) -> Path:
    return cross.write_hello(directory, HELLO)


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
    built = cross.build_livepatches(bench, klp_ld, SEED_SOURCES)
    relinked = Case("recorded-ld", ["insmod /recorded/ppc_hello.ko seed=2", "rmmod ppc_hello"])
    cases = [
        *cross.hello_and_sample_cases(HELLO, relinked, sample),
        *cross.livepatch_cases(built, "ppc_seed", SEED_NAME, LATE_RELOAD),
    ]
    files: list[Path | Built] = [hello, sample, *built.files()]
    result = bench.boot(
        cases, files=files, extra_files={"recorded/ppc_hello.ko": recorded.module("ppc_hello")}
    )
    return Run(**vars(built), result=result, hello=hello, recorded=recorded, ld_log=ld_log)


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
    cross.assert_hello_loads(run.result, HELLO)


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
    assert case.dmesg_with(f"ppc_hello: seed=2 result={cross.hello_result(2)}"), case.explain()


def test_livepatch_sample_patches_cmdline(run: Run) -> None:
    cross.assert_sample_patches(run.result)


def test_livepatch_sample_unpatches_and_unloads(run: Run) -> None:
    cross.assert_sample_unpatches(run.result, "console=hvc0")


def test_kallsyms_dump_matches_the_running_kernel(ppc64le_bench: Bench, run: Run) -> None:
    cross.assert_kallsyms_matches(ppc64le_bench, run.result)


def test_build_helper_returns_the_modules(ppc64le_bench: Bench, tmp_path: Path) -> None:
    """What later tests use: ``build(source, ld=...)`` gives the ``.ko`` paths of an ARCH=powerpc build."""
    cross.assert_builds_modules(ppc64le_bench, write_module(tmp_path / "ppc_hello"), HELLO,
                          ["ARCH=powerpc", "CROSS_COMPILE=powerpc64le-linux-gnu-"], 21)  # EM_PPC64


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


def _assert_livepatch_ko(built: Built, module: str, expected: cross.Relocations) -> None:
    """The converted .ko as the loader reads it (see cross_cases.read_livepatch_ko), and no trace of the
    originals in the ordinary relocation sections (ppc64's apply_relocate_add has no case for
    R_PPC64_NONE, so they are removed, not retyped)."""
    ko = cross.read_livepatch_ko(built, module, expected, reloc_name)
    for section in ko.rela_sections():
        if section.name.startswith(".klp.rela."):
            continue
        for rela in section.relocs:
            assert rela.type != RPPC64.NONE, f"{section.name}+{rela.offset:#x}: R_PPC64_NONE"
            name = rela.symbol.name if rela.symbol is not None else ""
            assert not name.startswith(".klp.sym."), f"{section.name}+{rela.offset:#x}: {name}"


def test_klp_ld_check_passes_every_livepatch_module(ppc64le_bench: Bench, klp_ld: Path, run: Run) -> None:
    cross.assert_klp_ld_check_passes(ppc64le_bench, klp_ld, (
        (run.seed, "ppc_seed"), (run.suse, "ppc_suse"), (run.func, "ppc_func"),
        (run.late, "ppc_late"), (run.auto, "klpb_unknown")))


def _seed_relocations() -> cross.Relocations:
    symbols = [f".klp.sym.vmlinux.{SEED_NAME},{position}" for position in cross.SEED_POSITIONS.values()]
    return {
        ".klp.rela.vmlinux..text": {("REL24", symbol) for symbol in symbols},
        ".klp.rela.vmlinux..toc": {("ADDR64", symbol) for symbol in symbols},
        ".klp.rela.vmlinux..data.rel": {("ADDR64", symbol) for symbol in symbols},
    }


def test_seed_ko_has_per_object_klp_relocations(run: Run) -> None:
    _assert_livepatch_ko(cross.built_module(run.seed), "ppc_seed", _seed_relocations())


def test_seed_each_object_gets_its_own_do_nothing(ppc64le_bench: Bench, run: Run) -> None:
    assert len(kallsyms_addresses(ppc64le_bench.kallsyms(), SEED_NAME)) >= 2
    _each_object_gets_its_own_copy(cross.case_of(run, "seed"), SEED_LINE, "ppc_seed")


def test_suse_dialect_each_object_gets_its_own_do_nothing(run: Run) -> None:
    """KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, do_nothing, 1) in one object and 2 in the other."""
    ko = cross.built_module(run.suse)
    _assert_livepatch_ko(ko, "ppc_suse", _seed_relocations())
    cross.assert_suse_has_no_annotation_symbols(ko, "ppc_suse")
    _each_object_gets_its_own_copy(cross.case_of(run, "suse"), SUSE_LINE, "ppc_suse")


def _each_object_gets_its_own_copy(case: CaseResult, line_format: re.Pattern[str], module: str) -> None:
    """Object a resolved do_nothing #1 and object b #2, by its call (the address its stub jumps to), its
    .toc entry and its pointer in .data.rel, each compared with this boot's /proc/kallsyms.

    kallsyms gives a function's global entry point (its symbol value); so does a function address taken
    in C under ELFv2 (an ADDR64 of the symbol), and the loader's stub for a call to a symbol outside the
    module jumps there too (never to the local entry, which would skip the callee's TOC setup from r12).
    So all three equal the kallsyms address."""
    copies, seen = cross.seed_reports(case, line_format, SEED_NAME)
    cross.assert_reported_addresses(case, seen, ("call", "toc", "data"), SEED_NAME, copies)
    for who in cross.SEED_POSITIONS:
        assert case.dmesg_with(f"{module}: {who} called"), case.explain(f"object {who}'s call did not return")
    cross.assert_klp_symbols_resolved(case, SEED_NAME, copies, module)


def test_seed_keeps_exports_as_ordinary_relocations(run: Run) -> None:
    cross.assert_seed_keeps_exports(run, "ppc_seed")


def test_function_patch_calls_a_static_function(ppc64le_bench: Bench, run: Run) -> None:
    """/proc/cmdline prints the mark and then what version_proc_show() prints for /proc/version."""
    _assert_livepatch_ko(cross.built_module(run.func), "ppc_func", {
        ".klp.rela.vmlinux..text": {("REL24", ".klp.sym.vmlinux.version_proc_show,0")},
    })
    cross.assert_function_patch(run, ppc64le_bench.release)


def test_late_module_patching(run: Run) -> None:
    """ppc_late loads first; when ppc_target loads, the kernel applies the patch's ppc_target relocations
    (a call of target_secret(), a .toc entry of target_base) and patches target_value(), already for the
    target's own init."""
    _assert_livepatch_ko(cross.built_module(run.late), "ppc_late", {
        ".klp.rela.ppc_target..text": {("REL24", ".klp.sym.ppc_target.target_secret,0")},
        ".klp.rela.ppc_target..toc": {("ADDR64", ".klp.sym.ppc_target.target_base,0")},
    })
    cross.assert_late_patched(run)


def test_late_patch_unpatches_and_unloads(run: Run) -> None:
    cross.assert_late_unpatched(run)


def test_patch_after_its_target(run: Run) -> None:
    """The other order: ppc_target is loaded, then ppc_late applies its relocations when it is enabled."""
    cross.assert_patched_after_target(run)


def test_unannotated_unique_symbol_is_converted_automatically(ppc64le_bench: Bench, run: Run) -> None:
    """klpb_unknown reads saved_command_line without an annotation; with --klp-symbols=<the kallsyms dump>
    klp-ld converts it. Its replacement of cmdline_proc_show() stacks on ppc_func's: /proc/cmdline is the
    kernel's command line again, read through that relocation."""
    assert len(kallsyms_addresses(ppc64le_bench.kallsyms(), "saved_command_line")) == 1
    _assert_livepatch_ko(cross.built_module(run.auto), "klpb_unknown", {
        ".klp.rela.vmlinux..toc": {("ADDR64", ".klp.sym.vmlinux.saved_command_line,0")},
    })
    cross.assert_auto_converted(run, ppc64le_bench.machine.append)


def test_target_cannot_load_again_while_the_late_patch_is_loaded(run: Run) -> None:
    """klp-ld's note on ppc_late holds in 6.1: unloaded while ppc_late is loaded, ppc_target cannot be
    loaded again, because restore_r2 finds the TOC restore it wrote the first time after the relocated bl
    (clear_relocate_add came in 6.3). The patch itself stays enabled."""
    case = cross.case_of(run, "late-reload")
    assert case.rc == 0, case.explain()
    assert case.output.splitlines()[-2:] == ["refused", "1"], case.explain()  # after insmod's complaint
    assert case.dmesg_with("ppc_late: Expected nop after call, got e8410018"), case.explain()
    assert case.dmesg_with("refusing to load module 'ppc_target'"), case.explain()
