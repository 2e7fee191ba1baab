"""The s390x machine: the kernel the bench cross-builds from Debian 12's linux-source-6.1 boots under QEMU's
s390-ccw-virtio machine, loads an external two-object module built with kbuild against its build tree,
and livepatches /proc/cmdline with the kernel's own sample; the kallsyms dump matches the running kernel.
The only big-endian machine of the bench, and the one whose modules sit far from the kernel: 6.1 puts the
module area just below the top of the kernel's address space (4 TiB), the kernel's text at 1 MiB, so a
module reaches vmlinux only through the PLT entries and GOT slots the loader makes.

Then the livepatch modules klp-ld builds for it (testdata/kmod-s390x and the portable ones), judged by the
kernel's loader and /proc/kallsyms, in the same boot: the seed (two objects, two copies of one static
function, reached by a call, through the GOT and through data) in both dialects, a function patch calling
a static vmlinux function, late patching of a module loaded after the patch (and before it), an
unannotated unique symbol converted from the kallsyms dump, and what a GOT slot does when the patched
module is loaded again.

Selected with ``--kernel=s390x`` (or ``all``). The first run builds the kernel (see README.md); one boot
runs every case of this file.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from klp_ld.arch.s390x import R390, spell
from klp_ld.elf.model import ElfObject

from . import cross_cases as cross
from .bench import Bench, Built, Case, CaseResult, kallsyms_addresses
from .conftest import REPO_ROOT

pytestmark = pytest.mark.kernel

EM_S390 = 22
# The relocation types a module's code reaches other code and data with (-fPIC, as kbuild compiles s390
# modules): a brasl/jg to a function is R_390_PLT32DBL, a load of a global variable's address from the GOT
# (lgrl) R_390_GOTENT, a larl of the object's own static data R_390_PC32DBL.
R_390_PC32DBL = 19
R_390_PLT32DBL = 20
R_390_GOTENT = 26

# The hello module (see cross_cases.hello_sources): on s390x its calls of printk and of the other object's
# function are PLT32DBL, its reads of jiffies and of the other object's variable GOTENT, so the loader's
# PLT and GOT take part.
HELLO = "s390_hello"

# An LD that records each command line and runs the cross linker: proves that Bench.build's ``ld`` reaches
# kbuild's links, and that kbuild gives $(LD) CROSS_COMPILE in its environment.
LD_RECORDER = """#!/bin/sh
printf '%s\\n' "$*" >> {log}
exec "${{CROSS_COMPILE}}ld" "$@"
"""

# A relative branch or address (PC32DBL, PLT32DBL, GOTENT) reaches +-4 GiB.
REACH = 1 << 32
# What kbuild links: the partial link of the two objects and the final link of the module.
LINKED = (f"{HELLO}.o", f"{HELLO}.ko")

KMOD_S390X = REPO_ROOT / "testdata" / "kmod-s390x"

# The seed: object a means default_read_file #1, object b #2 (this kernel has two static
# default_read_file(), debugfs's and tracefs's, both returning 0: see testdata/kmod-s390x/seed/Kbuild).
# Each reports where its brasl ends up (through a PLT entry or not), the address its lgrl loads from the
# GOT slot, its pointer in data, the function's first 8 bytes loaded through the GOT slot and those bytes
# read through the data pointer.
SEED_NAME = "default_read_file"
SEED_LINE = re.compile(r"s390_seed: (?P<who>[ab]) call=(?P<call>[0-9a-f]+) plt=(?P<plt>[01]) "
                       r"got=(?P<got>[0-9a-f]+) data=(?P<data>[0-9a-f]+) load=(?P<load>[0-9a-f]+) "
                       r"peek=(?P<peek>[0-9a-f]+)")
SUSE_LINE = re.compile(SEED_LINE.pattern.replace("s390_seed:", "s390_suse:"))
LATE_DIR = "/sys/kernel/livepatch/ppc_late"
# The late patch reads the target's target_base through a GOT slot of its own (R_390_GOTENT), which the
# loader writes once (got_initialized). The target unloaded under the patch, another module (hello) takes
# the memory it freed, and the target loads again elsewhere with target_base 55: the loader applies the
# patch's relocations again, but the slot still holds the first load's address.
RELOADED_BASE = 55
LATE_RELOAD = [
    "rmmod ppc_target",
    f"insmod /mod/{HELLO}.ko seed=1",
    f"insmod /mod/ppc_target.ko arg=7 target_base={RELOADED_BASE}",
    f"cat {cross.TARGET_PARAMS}/value",
    "grep -w -e target_base -e hello_scale /proc/kallsyms",
]


def output_of(command_line: str) -> str:
    """The ``-o`` operand of a recorded ld command line ("" when there is none)."""
    words = command_line.split()
    return words[words.index("-o") + 1] if "-o" in words[:-1] else ""


def write_module(directory: Path) -> Path:
    return cross.write_hello(directory, HELLO)


@dataclass(frozen=True)
class Run(cross.LivepatchRun):
    hello: Built  # linked by plain ld
    recorded: Built  # linked through LD_RECORDER
    ld_log: Path
    through_bytes: dict[str, bytes]  # the hello module linked by LD=wrappers/klp-ld
    plain_bytes: dict[str, bytes]  # the same directory rebuilt by plain ld


@pytest.fixture(scope="module")
def run(s390x_bench: Bench, klp_ld: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    bench = s390x_bench
    tmp = tmp_path_factory.mktemp("s390x-")
    source = write_module(tmp / HELLO)
    hello = bench.build(source)
    ld_log = tmp / "ld.log"
    recorder = tmp / "ld-recorder"
    recorder.write_text(LD_RECORDER.format(log=shlex.quote(str(ld_log))))
    recorder.chmod(0o755)
    recorded = bench.build(source, ld=recorder)
    through = bench.build(write_module(tmp / "through" / HELLO), ld=klp_ld)
    through_bytes = {name: (through.directory / name).read_bytes() for name in LINKED}
    # The plain build of the very same directory, so that nothing but the linker can differ.
    for target in ("clean", "modules"):
        done = bench.run(bench.make_command(through.directory, target))
        assert done.returncode == 0, f"make {target} with the plain ld failed:\n{done.stdout}{done.stderr}"
    plain_bytes = {name: (through.directory / name).read_bytes() for name in LINKED}
    sample = bench.image_module("samples/livepatch/livepatch-sample")
    built = cross.build_livepatches(bench, klp_ld, KMOD_S390X)
    relinked = Case("recorded-ld", [f"insmod /recorded/{HELLO}.ko seed=2", f"rmmod {HELLO}"])
    cases = [
        *cross.hello_and_sample_cases(HELLO, relinked, sample),
        # Where the loader put the module, beside the kernel's text.
        Case("module-range", [f"insmod /mod/{HELLO}.ko", "grep -w -e _stext -e _etext -e hello_scale "
                              "-e _printk /proc/kallsyms", f"rmmod {HELLO}"]),
        Case("klp-ld", [f"insmod /klp-ld/{HELLO}.ko seed=2", f"rmmod {HELLO}"]),
        *cross.livepatch_cases(built, "s390_seed", SEED_NAME, LATE_RELOAD),
    ]
    files: list[Path | Built] = [hello, sample, *built.files()]
    result = bench.boot(cases, files=files, extra_files={f"recorded/{HELLO}.ko": recorded.module(HELLO),
                                                         f"klp-ld/{HELLO}.ko": through_bytes[f"{HELLO}.ko"]})
    return Run(**vars(built), result=result, hello=hello, recorded=recorded, ld_log=ld_log,
               through_bytes=through_bytes, plain_bytes=plain_bytes)


def test_kernel_configuration_has_livepatch(s390x_bench: Bench) -> None:
    config = s390x_bench.config
    for name in ("CONFIG_S390", "CONFIG_64BIT", "CONFIG_CPU_BIG_ENDIAN", "CONFIG_SCLP_VT220_CONSOLE",
                 "CONFIG_HAVE_LIVEPATCH", "CONFIG_LIVEPATCH", "CONFIG_DYNAMIC_FTRACE_WITH_REGS",
                 "CONFIG_HAVE_RELIABLE_STACKTRACE", "CONFIG_KALLSYMS_ALL", "CONFIG_MODULE_UNLOAD"):
        assert config.get(name) == "y", name
    assert config.get("CONFIG_SAMPLE_LIVEPATCH") == "m"
    for name in ("CONFIG_MODVERSIONS", "CONFIG_MODULE_SIG", "CONFIG_CPU_LITTLE_ENDIAN"):
        assert name not in config, name


def test_guest_is_the_built_s390x_kernel(s390x_bench: Bench, run: Run) -> None:
    case = run.result["machine"]
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == ["s390x", s390x_bench.release], case.explain()
    assert s390x_bench.vmlinuz.name == f"bzImage-{s390x_bench.release}"


def test_external_module_with_plain_ld_loads(run: Run) -> None:
    assert [path.name for path in run.hello] == [f"{HELLO}.ko"]
    cross.assert_hello_loads(run.result, HELLO)


def test_build_passes_ld_to_every_link(run: Run) -> None:
    """``Bench.build(ld=...)`` sets kbuild's LD for the partial link (``-r`` of main.o and calc.o) and the
    final link (``-T .../module.lds``); the module so linked loads like the plain one."""
    lines = run.ld_log.read_text().splitlines()
    outputs = {Path(output_of(line)).name: line.split() for line in lines if output_of(line)}
    partial, final = outputs.get(f"{HELLO}.o"), outputs.get(f"{HELLO}.ko")
    assert partial and final, "\n".join(lines)
    assert "-r" in partial and "-T" not in partial, partial
    assert "-r" in final and any(word.endswith("module.lds") for word in final), final
    assert "elf64_s390" in final, f"not an s390x link: {final}"
    case = run.result["recorded-ld"]
    assert case.rc == 0, case.explain()
    assert case.dmesg_with(f"{HELLO}: seed=2 result={cross.hello_result(2)}"), case.explain()


def test_module_reaches_the_kernel_through_plt_and_got(run: Run) -> None:
    """How kbuild compiles an s390x module (-fPIC): every reference from code to a symbol the .ko does not
    define, the kernel's printk and jiffies, is a PLT32DBL call or a GOTENT load, never a direct
    PC32DBL; the .ko has no .plt or .got: the loader makes both (module_frob_arch_sections)."""
    with run.hello.module(HELLO).open("rb") as handle:
        elf = ELFFile(handle)
        assert (elf["e_machine"], elf.little_endian) == ("EM_S390", False)
        names = {section.name for section in elf.iter_sections()}
        assert not {".plt", ".got"} & names, sorted(names)
        symbols = elf.get_section_by_name(".symtab")
        assert isinstance(symbols, SymbolTableSection)
        external: set[tuple[str, str, int]] = set()
        for section in elf.iter_sections():
            if isinstance(section, RelocationSection) and section.name.endswith("text"):
                for reloc in section.iter_relocations():
                    symbol = symbols.get_symbol(reloc["r_info_sym"])
                    if symbol["st_shndx"] == "SHN_UNDEF":
                        external.add((section.name, symbol.name, reloc["r_info_type"]))
    assert external == {
        (".rela.init.text", "_printk", R_390_PLT32DBL),
        (".rela.init.text", "jiffies", R_390_GOTENT),
        (".rela.exit.text", "_printk", R_390_PLT32DBL),
    }, sorted(external)


def test_modules_are_out_of_direct_reach_of_the_kernel(run: Run) -> None:
    """6.1's module area is 2 GiB just below the top of a 4 TiB address space, the kernel's text at 1 MiB:
    more than 4 GiB apart, so the hello module's PLT32DBL calls of printk went through the loader's PLT
    entries (it printed, so they work)."""
    case = run.result["module-range"]
    assert case.rc == 0, case.explain()
    start, end = (kallsyms_addresses(case.output, name) for name in ("_stext", "_etext"))
    (module_text,) = kallsyms_addresses(case.output, "hello_scale", module=HELLO)
    (printk,) = kallsyms_addresses(case.output, "_printk")
    assert len(start) == len(end) == 1 and start[0] <= printk < end[0], case.explain()
    assert module_text - end[0] >= REACH, case.explain(f"the module is within 4 GiB of {end[0]:#x}")


def test_livepatch_sample_patches_cmdline(run: Run) -> None:
    cross.assert_sample_patches(run.result)


def test_livepatch_sample_unpatches_and_unloads(run: Run) -> None:
    cross.assert_sample_unpatches(run.result, "console=ttysclp0")


def test_kallsyms_dump_matches_the_running_kernel(s390x_bench: Bench, run: Run) -> None:
    cross.assert_kallsyms_matches(s390x_bench, run.result)


def test_build_helper_returns_the_modules(s390x_bench: Bench, tmp_path: Path) -> None:
    """What later tests use: ``build(source, ld=...)`` gives the ``.ko`` paths of an ARCH=s390 build, a
    big-endian ELF64."""
    cross.assert_builds_modules(s390x_bench, write_module(tmp_path / HELLO), HELLO,
                                ["ARCH=s390", "CROSS_COMPILE=s390x-linux-gnu-"], EM_S390)


def test_klp_ld_passes_a_plain_module_through(run: Run) -> None:
    """klp-ld's output for a module without annotations is byte-identical to plain ld's in the same
    directory (both links, big-endian objects), and the module loads."""
    for name in LINKED:
        assert run.through_bytes[name] == run.plain_bytes[name], f"{name} differs between LD=klp-ld and LD=ld"
    case = run.result["klp-ld"]
    assert case.rc == 0, case.explain()
    assert case.dmesg_with(f"{HELLO}: seed=2 result={cross.hello_result(2)}"), case.explain()


# ------------------------------------------------------------------------------------------------------
# The livepatch modules klp-ld built


def reloc_name(value: int) -> str:
    """An s390 relocation type as the expected relocations name it (R_390_PLT32DBL -> "PLT32DBL")."""
    return spell(value).removeprefix("R_390_")


def _assert_livepatch_ko(built: Built, module: str, expected: cross.Relocations) -> ElfObject:
    """The converted .ko as the loader reads it (see cross_cases.read_livepatch_ko): every .klp.rela
    section SHT_RELA, so that check_rela counts its GOT slots and PLT entries; no .got or .plt (the loader
    makes them); and no trace of the originals in the ordinary relocation sections but an R_390_NONE
    against no symbol at each klp site (apply_rela applies it as a no-op)."""
    ko = cross.read_livepatch_ko(built, module, expected, reloc_name)
    assert not {".got", ".plt"} & {section.name for section in ko.sections}
    assert all(section.is_rela for section in ko.sections_named(".klp.rela.")), "a .klp.rela not SHT_RELA"
    cross.assert_originals_retyped(ko, R390.NONE)
    return ko


def test_klp_ld_check_passes_every_livepatch_module(s390x_bench: Bench, klp_ld: Path, run: Run) -> None:
    cross.assert_klp_ld_check_passes(s390x_bench, klp_ld, (
        (run.seed, "s390_seed"), (run.suse, "s390_suse"), (run.func, "ppc_func"),
        (run.late, "ppc_late"), (run.auto, "klpb_unknown")))


def _seed_relocations() -> cross.Relocations:
    symbols = [f".klp.sym.vmlinux.{SEED_NAME},{position}" for position in cross.SEED_POSITIONS.values()]
    return {
        ".klp.rela.vmlinux..text": {(kind, symbol) for kind in ("PLT32DBL", "GOTENT") for symbol in symbols},
        ".klp.rela.vmlinux..data.rel": {("64", symbol) for symbol in symbols},
    }


def _assert_seed_ko(built: Built, module: str, prefix: str) -> None:
    """The seed's relocations, and per site the position its object means: a site in <prefix>_a_*
    (code, or the pointer in data) names position 1, one in <prefix>_b_* position 2."""
    ko = _assert_livepatch_ko(built, module, _seed_relocations())
    cross.assert_seed_positions(ko, prefix, SEED_NAME)
    for section in ko.sections_named(".klp.rela."):
        for rela in section.relocs:
            if rela.type != R390.R64:  # the RIL fields: the symbol itself, 2 bytes into the instruction
                assert rela.addend == 2, f"{section.name}+{rela.offset:#x}: addend {rela.addend}"


def test_seed_ko_has_per_object_klp_relocations(run: Run) -> None:
    _assert_seed_ko(cross.built_module(run.seed), "s390_seed", "seed")


def test_seed_each_object_gets_its_own_default_read_file(s390x_bench: Bench, run: Run) -> None:
    assert len(kallsyms_addresses(s390x_bench.kallsyms(), SEED_NAME)) == 2
    _each_object_gets_its_own_copy(cross.case_of(run, "seed"), SEED_LINE, "s390_seed")


def test_suse_dialect_each_object_gets_its_own_default_read_file(run: Run) -> None:
    """KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, default_read_file, 1) in one object and 2 in the other."""
    ko = cross.built_module(run.suse)
    _assert_seed_ko(ko, "s390_suse", "suse")
    cross.assert_suse_has_no_annotation_symbols(ko, "s390_suse")
    _each_object_gets_its_own_copy(cross.case_of(run, "suse"), SUSE_LINE, "s390_suse")


def _each_object_gets_its_own_copy(case: CaseResult, line_format: re.Pattern[str], module: str) -> None:
    """Object a resolved default_read_file #1 and object b #2, by its call (where its brasl ends up: the
    PLT entry the loader wrote, since the kernel is out of brasl range), the address in its GOT slot and
    its pointer in data, each compared with this boot's /proc/kallsyms; its load through the GOT slot read
    the function's first 8 bytes. The call ran and returned the function's 0."""
    copies, seen = cross.seed_reports(case, line_format, SEED_NAME)
    cross.assert_reported_addresses(case, seen, ("call", "got", "data"), SEED_NAME, copies)
    for who in cross.SEED_POSITIONS:
        assert seen[who]["plt"] == "1", case.explain(f"object {who}: the call did not go through a PLT entry")
        assert seen[who]["load"] == seen[who]["peek"], case.explain(f"object {who}: loaded elsewhere")
        assert case.dmesg_with(f"{module}: {who} called, got 0"), case.explain(f"object {who}'s call failed")
    cross.assert_klp_symbols_resolved(case, SEED_NAME, copies, module)


def test_seed_keeps_exports_as_ordinary_relocations(run: Run) -> None:
    cross.assert_seed_keeps_exports(run, "s390_seed")


def test_function_patch_calls_a_static_function(s390x_bench: Bench, run: Run) -> None:
    """/proc/cmdline prints the mark and then what version_proc_show() prints for /proc/version (a brasl
    with R_390_PLT32DBL against the klp symbol, through the loader's PLT entry)."""
    _assert_livepatch_ko(cross.built_module(run.func), "ppc_func", {
        ".klp.rela.vmlinux..text": {("PLT32DBL", ".klp.sym.vmlinux.version_proc_show,0")},
    })
    cross.assert_function_patch(run, s390x_bench.release)


def test_late_module_patching(run: Run) -> None:
    """ppc_late loads first; when ppc_target loads, klp_module_coming applies the patch's ppc_target
    relocations (a brasl to target_secret(), an lgrl of target_base's GOT slot) and patches
    target_value(), already for the target's own init."""
    _assert_livepatch_ko(cross.built_module(run.late), "ppc_late", {
        ".klp.rela.ppc_target..text": {
            ("PLT32DBL", ".klp.sym.ppc_target.target_secret,0"),
            ("GOTENT", ".klp.sym.ppc_target.target_base,0"),
        },
    })
    cross.assert_late_patched(run)


def test_late_patch_build_warns_of_the_got_slot(run: Run) -> None:
    """klp-ld's warning for the GOTENT of a module-specific symbol, at the final link of ppc_late."""
    late = cross.built_module(run.late)
    assert ("warning:" in late.log and "module-specific R_390_GOTENT relocation for ppc_target" in late.log
            and "got_initialized" in late.log), late.log[-3000:]


def test_late_patch_unpatches_and_unloads(run: Run) -> None:
    cross.assert_late_unpatched(run)


def test_patch_after_its_target(run: Run) -> None:
    """The other order: ppc_target is loaded, then ppc_late applies its relocations when it is enabled."""
    cross.assert_patched_after_target(run)


def test_unannotated_unique_symbol_is_converted_automatically(s390x_bench: Bench, run: Run) -> None:
    """klpb_unknown reads saved_command_line without an annotation (an lgrl of its GOT slot); with
    --klp-symbols=<the kallsyms dump> klp-ld converts it. Its replacement of cmdline_proc_show() stacks
    on ppc_func's: /proc/cmdline is the kernel's command line again, read through that relocation."""
    assert len(kallsyms_addresses(s390x_bench.kallsyms(), "saved_command_line")) == 1
    _assert_livepatch_ko(cross.built_module(run.auto), "klpb_unknown", {
        ".klp.rela.vmlinux..text": {("GOTENT", ".klp.sym.vmlinux.saved_command_line,0")},
    })
    cross.assert_auto_converted(run, s390x_bench.machine.append)



def test_reloaded_target_leaves_the_patch_a_stale_got_slot(run: Run) -> None:
    """What klp-ld's warning for ppc_late says, in this kernel: ppc_target unloaded under the patch and
    loaded again elsewhere (hello took the memory it freed) with target_base 55. The loader re-resolves
    the klp symbol (kallsyms shows it at the new target_base) and applies the patch's relocations again,
    but the GOT slot keeps the first load's address (got_initialized), so the patched target_value()
    does not read 55: it reads whatever now lies at the old address (or faults there)."""
    case = cross.case_of(run, "late-reload")
    applying = "livepatch: applying patch 'ppc_late' to loading module 'ppc_target'"
    assert case.dmesg_with(applying), case.explain()
    if case.rc != 0:  # the old address is no longer mapped
        assert any("ppc_late_target_value" in line for line in case.dmesg), case.explain()
        return
    lines = case.output.splitlines()
    value = int(lines[0])
    (base,) = kallsyms_addresses(case.output, "target_base", module="ppc_target")
    resolved = kallsyms_addresses(case.output, ".klp.sym.ppc_target.target_base,0", module="ppc_late")
    assert resolved == [base], case.explain("the loader did not resolve the klp symbol again")
    assert value != cross.patched_value(7, RELOADED_BASE), case.explain(
        "the patch read the reloaded target_base: the loader rewrote the GOT slot, and klp-ld's warning "
        "is wrong for this kernel")
