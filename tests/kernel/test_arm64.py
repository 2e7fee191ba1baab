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

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from klp_ld.arch.arm64 import RA64
from klp_ld.elf.model import ElfObject

from . import cross_cases as cross
from .bench import Bench, Built, Case, CaseResult, kallsyms_addresses
from .conftest import REPO_ROOT

pytestmark = pytest.mark.kernel

EM_AARCH64 = 183
R_AARCH64_CALL26 = 283

# The hello module (see cross_cases.hello_sources): on arm64 its call of printk is a `bl` the loader
# reaches directly or through a module PLT entry, and it reads a kernel variable and its own with
# adrp + ldr, so the loader's common arm64 relocations take part.
HELLO = "arm64_hello"
# What kbuild links: the partial link of the two objects and the final link of the module.
LINKED = ("arm64_hello.o", "arm64_hello.ko")

KMOD_ARM64 = REPO_ROOT / "testdata" / "kmod-arm64"

# The seed: object a means default_read_file #1, object b #2 (this kernel has two static
# default_read_file(), debugfs's and tracefs's, both returning 0: see testdata/kmod-arm64/seed/Kbuild).
# Each reports where its bl ends up (through a PLT entry or not), its adrp + add, its pointer in data,
# its adrp + ldr of the function's first 8 bytes and those bytes read through the data pointer.
SEED_NAME = "default_read_file"
SEED_LINE = re.compile(r"arm64_seed: (?P<who>[ab]) call=(?P<call>[0-9a-f]+) plt=(?P<plt>[01]) "
                       r"adrp=(?P<adrp>[0-9a-f]+) data=(?P<data>[0-9a-f]+) ldr=(?P<ldr>[0-9a-f]+) "
                       r"peek=(?P<peek>[0-9a-f]+)")
SUSE_LINE = re.compile(SEED_LINE.pattern.replace("arm64_seed:", "arm64_suse:"))
LATE_DIR = "/sys/kernel/livepatch/ppc_late"
# What the late-reload case runs. Unlike ppc64 before 6.3, arm64 may load the target again while the patch
# is loaded: its clear_relocate_add is the weak no-op, and reloc_insn_imm rewrites only the immediate
# fields.
LATE_RELOAD = [
    "rmmod ppc_target",
    "insmod /mod/ppc_target.ko arg=7",
    f"cat {cross.TARGET_PARAMS}/value",
    f"cat {LATE_DIR}/enabled",
]


def reloc_name(value: int) -> str:
    """An arm64 relocation type as the expected relocations name it (R_AARCH64_CALL26 -> "CALL26")."""
    return RA64(value).name


def write_module(directory: Path) -> Path:
    return cross.write_hello(directory, HELLO)


@dataclass(frozen=True)
class Run(cross.LivepatchRun):
    hello: Built  # linked by plain ld
    through: Built  # linked by LD=wrappers/klp-ld (kbuild's V=1 log shows both links)
    through_bytes: dict[str, bytes]  # its LINKED files, as klp-ld left them
    plain_bytes: dict[str, bytes]  # the same directory rebuilt by plain ld


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
    built = cross.build_livepatches(bench, klp_ld, KMOD_ARM64)
    relinked = Case("klp-ld", ["insmod /klp-ld/arm64_hello.ko seed=2", "rmmod arm64_hello"])
    cases = [
        *cross.hello_and_sample_cases(HELLO, relinked, sample),
        *cross.livepatch_cases(built, "arm64_seed", SEED_NAME, LATE_RELOAD),
    ]
    files: list[Path | Built] = [hello, sample, *built.files()]
    result = bench.boot(
        cases, files=files, extra_files={"klp-ld/arm64_hello.ko": through_bytes["arm64_hello.ko"]}
    )
    return Run(**vars(built), result=result, hello=hello, through=through, through_bytes=through_bytes,
               plain_bytes=plain_bytes)


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
    cross.assert_hello_loads(run.result, HELLO)


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
    assert case.dmesg_with(f"arm64_hello: seed=2 result={cross.hello_result(2)}"), case.explain()


def test_livepatch_sample_patches_cmdline(run: Run) -> None:
    cross.assert_sample_patches(run.result)


def test_livepatch_sample_unpatches_and_unloads(run: Run) -> None:
    cross.assert_sample_unpatches(run.result, "console=ttyAMA0")


def test_kallsyms_dump_matches_the_running_kernel(arm64_bench: Bench, run: Run) -> None:
    cross.assert_kallsyms_matches(arm64_bench, run.result)


def test_build_helper_returns_the_modules(arm64_bench: Bench, tmp_path: Path) -> None:
    """What later tests use: ``build(source, ld=...)`` gives the ``.ko`` paths of an ARCH=arm64 build."""
    cross.assert_builds_modules(arm64_bench, write_module(tmp_path / "arm64_hello"), HELLO,
                          ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"], EM_AARCH64)


# ------------------------------------------------------------------------------------------------------
# The livepatch modules klp-ld built


def _assert_livepatch_ko(built: Built, module: str, expected: cross.Relocations) -> ElfObject:
    """The converted .ko as the loader reads it (see cross_cases.read_livepatch_ko), the .plt and .init.plt
    placeholders kept (the loader refuses a module without them), and no trace of the originals in the
    ordinary relocation sections but an R_AARCH64_NONE against no symbol at each klp site
    (apply_relocate_add skips it)."""
    ko = cross.read_livepatch_ko(built, module, expected, reloc_name)
    names = [section.name for section in ko.sections]
    assert {".plt", ".init.plt"} <= set(names), names
    cross.assert_originals_retyped(ko, RA64.NONE)
    return ko


def test_klp_ld_check_passes_every_livepatch_module(arm64_bench: Bench, klp_ld: Path, run: Run) -> None:
    cross.assert_klp_ld_check_passes(arm64_bench, klp_ld, (
        (run.seed, "arm64_seed"), (run.suse, "arm64_suse"), (run.func, "ppc_func"),
        (run.late, "ppc_late"), (run.auto, "klpb_unknown")))


def _seed_relocations() -> cross.Relocations:
    symbols = [f".klp.sym.vmlinux.{SEED_NAME},{position}" for position in cross.SEED_POSITIONS.values()]
    text = {"CALL26", "ADR_PREL_PG_HI21", "ADD_ABS_LO12_NC", "LDST64_ABS_LO12_NC"}
    return {
        ".klp.rela.vmlinux..text": {(kind, symbol) for kind in text for symbol in symbols},
        ".klp.rela.vmlinux..data": {("ABS64", symbol) for symbol in symbols},
    }


def _assert_seed_ko(built: Built, module: str, prefix: str) -> None:
    """The seed's relocations, and per site the position its object means: a site in <prefix>_a_*
    (code, or the pointer in data) names position 1, one in <prefix>_b_* position 2."""
    ko = _assert_livepatch_ko(built, module, _seed_relocations())
    cross.assert_seed_positions(ko, prefix, SEED_NAME)


def test_seed_ko_has_per_object_klp_relocations(run: Run) -> None:
    _assert_seed_ko(cross.built_module(run.seed), "arm64_seed", "seed")


def test_seed_each_object_gets_its_own_default_read_file(arm64_bench: Bench, run: Run) -> None:
    assert len(kallsyms_addresses(arm64_bench.kallsyms(), SEED_NAME)) == 2
    _each_object_gets_its_own_copy(cross.case_of(run, "seed"), SEED_LINE, "arm64_seed")


def test_suse_dialect_each_object_gets_its_own_default_read_file(run: Run) -> None:
    """KLP_RELOC_SYMBOL_POS(vmlinux, vmlinux, default_read_file, 1) in one object and 2 in the other."""
    ko = cross.built_module(run.suse)
    _assert_seed_ko(ko, "arm64_suse", "suse")
    cross.assert_suse_has_no_annotation_symbols(ko, "arm64_suse")
    _each_object_gets_its_own_copy(cross.case_of(run, "suse"), SUSE_LINE, "arm64_suse")


def _each_object_gets_its_own_copy(case: CaseResult, line_format: re.Pattern[str], module: str) -> None:
    """Object a resolved default_read_file #1 and object b #2, by its call (where its bl ends up, directly
    or through the PLT entry the loader wrote), its adrp + add and its pointer in data, each compared with
    this boot's /proc/kallsyms; its adrp + ldr loaded the function's first 8 bytes (both copies' code is
    the same, so this only says the page and the offset fit together: the per-site check of the .ko says
    which copy it names). The call ran and returned the function's 0."""
    copies, seen = cross.seed_reports(case, line_format, SEED_NAME)
    cross.assert_reported_addresses(case, seen, ("call", "adrp", "data"), SEED_NAME, copies)
    for who in cross.SEED_POSITIONS:
        assert seen[who]["ldr"] == seen[who]["peek"], case.explain(f"object {who}: ldr loaded elsewhere")
        assert case.dmesg_with(f"{module}: {who} called, got 0"), case.explain(f"object {who}'s call failed")
    cross.assert_klp_symbols_resolved(case, SEED_NAME, copies, module)


def test_seed_keeps_exports_as_ordinary_relocations(run: Run) -> None:
    cross.assert_seed_keeps_exports(run, "arm64_seed")


def test_function_patch_calls_a_static_function(arm64_bench: Bench, run: Run) -> None:
    """/proc/cmdline prints the mark and then what version_proc_show() prints for /proc/version (a bl
    with R_AARCH64_CALL26 against the klp symbol)."""
    _assert_livepatch_ko(cross.built_module(run.func), "ppc_func", {
        ".klp.rela.vmlinux..text": {("CALL26", ".klp.sym.vmlinux.version_proc_show,0")},
    })
    cross.assert_function_patch(run, arm64_bench.release)


def test_late_module_patching(run: Run) -> None:
    """ppc_late loads first; when ppc_target loads, klp_module_coming applies the patch's ppc_target
    relocations (a bl to target_secret(), adrp + ldr of target_base) and patches target_value(), already
    for the target's own init."""
    _assert_livepatch_ko(cross.built_module(run.late), "ppc_late", {
        ".klp.rela.ppc_target..text": {
            ("CALL26", ".klp.sym.ppc_target.target_secret,0"),
            ("ADR_PREL_PG_HI21", ".klp.sym.ppc_target.target_base,0"),
            ("LDST32_ABS_LO12_NC", ".klp.sym.ppc_target.target_base,0"),
        },
    })
    cross.assert_late_patched(run)


def test_late_patch_unpatches_and_unloads(run: Run) -> None:
    cross.assert_late_unpatched(run)


def test_patch_after_its_target(run: Run) -> None:
    """The other order: ppc_target is loaded, then ppc_late applies its relocations when it is enabled."""
    cross.assert_patched_after_target(run)


def test_unannotated_unique_symbol_is_converted_automatically(arm64_bench: Bench, run: Run) -> None:
    """klpb_unknown reads saved_command_line without an annotation (adrp + ldr); with
    --klp-symbols=<the kallsyms dump> klp-ld converts it. Its replacement of cmdline_proc_show() stacks
    on ppc_func's: /proc/cmdline is the kernel's command line again, read through those relocations."""
    assert len(kallsyms_addresses(arm64_bench.kallsyms(), "saved_command_line")) == 1
    _assert_livepatch_ko(cross.built_module(run.auto), "klpb_unknown", {
        ".klp.rela.vmlinux..text": {("ADR_PREL_PG_HI21", ".klp.sym.vmlinux.saved_command_line,0"),
                                    ("LDST64_ABS_LO12_NC", ".klp.sym.vmlinux.saved_command_line,0")},
    })
    cross.assert_auto_converted(run, arm64_bench.machine.append)


def test_target_loads_again_while_the_late_patch_is_loaded(run: Run) -> None:
    """The target unloaded and loaded again under the enabled patch: the loader applies the patch's
    relocations once more, and target_value() is the patch's again."""
    case = cross.case_of(run, "late-reload")
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == [str(cross.patched_value(7, 20)), "1"], case.explain()
    applying = "livepatch: applying patch 'ppc_late' to loading module 'ppc_target'"
    assert case.dmesg_with(applying), case.explain()
