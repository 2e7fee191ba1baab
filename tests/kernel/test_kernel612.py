"""What is new in Debian 6.12 for klp-ld: objtool runs on klp-ld's partial-link output, objtool adds
`__pfx_` symbols (and vmlinux has a `__pfx_state_show` beside each `state_show`), kbuild runs from a
`__sub-make` and links `.module-common.o` into every module. One boot for the loading cases.

All of it holds for later kernels too (sid's 7.2, where kbuild also links in the module's directory), so
every test runs on 6.12 and later and skips on 6.1 (`--kernel=6.12`, `--kernel=7.2` or `--kernel=all`).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from klp_ld.elf.consts import SHF_EXECINSTR, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH, STT_FUNC, STT_NOTYPE
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf_file

from .bench import Bench, BootResult, BuildError, Built, Case, kallsyms_addresses
from .conftest import KMOD, REPO_ROOT
from .test_lld import read_reports, seed_addresses

pytestmark = pytest.mark.kernel

OBJTOOL_SECTIONS = (".orc_unwind", ".orc_unwind_ip", ".return_sites", ".call_sites", ".ibt_endbr_seal")
COLD = "__checkpoint_and_complete_reqs.cold"  # a compiler-split fragment in f2fs.ko (vmlinux has none)
# KLP_LD_INCLUDE: how the k612_* sources find <klp-ld.h> when LD is not klp-ld.
PLAIN_LD_VARS = {"V": "1", "KLP_LD_INCLUDE": str(REPO_ROOT / "klp_ld" / "include")}


@pytest.fixture(scope="module")
def bench612(bench: Bench) -> Bench:
    if bench.version < (6, 12):
        pytest.skip(f"6.12 and later only (objtool on the partial link, __pfx_ symbols, .module-common.o); "
                    f"this bench is {bench.release}")
    return bench


@dataclass(frozen=True)
class Run612:
    seed: Built
    func: Built
    cold: Built
    noreturn: Built
    reports: dict[str, list[dict[str, Any]]]  # build name -> klp-ld's JSON records
    result: BootResult


@pytest.fixture(scope="module")
def run612(bench612: Bench, klp_ld: Path, tmp_path_factory: pytest.TempPathFactory) -> Run612:
    bench = bench612
    reports = tmp_path_factory.mktemp("k612-reports")
    symbols = f"--klp-symbols={bench.kallsyms()}"
    f2fs = f"--klp-symbols={bench.image_module('fs/f2fs/f2fs')}"
    builds = {}
    for name, source, ld in (("seed", KMOD / "seed", f"{klp_ld} {symbols}"),
                             ("func", KMOD / "klp_func", f"{klp_ld} {symbols}"),
                             ("cold", KMOD / "k612_cold", f"{klp_ld} {symbols} {f2fs}"),
                             ("noreturn", KMOD / "k612_noreturn", f"{klp_ld} {symbols}")):
        env = {"KLP_LD_REPORT": str(reports / f"{name}.jsonl")}
        builds[name] = bench.build(source, ld=ld, make_vars={"V": "1"}, env=env)
    cases = [
        Case("seed", ["insmod /mod/klp_seed.ko", "grep -E ' (__pfx_)?state_show$' /proc/kallsyms"]),
        Case("func", ["insmod /mod/klp_func.ko", "cat /proc/cmdline"]),
        Case("cold", ["insmod /mod/k612_cold.ko", "grep -c k612_cold /proc/modules"]),
        Case("noreturn", ["insmod /mod/k612_noreturn.ko", "grep -w do_exit /proc/kallsyms"]),
    ]
    result = bench.boot(cases, files=list(builds.values()))
    records = {name: read_reports(reports / f"{name}.jsonl") for name in builds}
    return Run612(builds["seed"], builds["func"], builds["cold"], builds["noreturn"], records, result)


def _builds(run: Run612) -> dict[str, Built]:
    return {"seed": run.seed, "func": run.func, "cold": run.cold, "noreturn": run.noreturn}


def _objtool_complaints(log: str) -> list[str]:
    return [line for line in log.splitlines() if "objtool:" in line]


def _versions(ko: ElfObject) -> list[str]:
    """The names in __versions: 64-byte entries, an unsigned long CRC then a NUL-padded name."""
    section = ko.section("__versions")
    assert section is not None, "no __versions section"
    return [section.data[at + 8:at + 64].split(b"\0", 1)[0].decode()
            for at in range(0, len(section.data), 64)]


# --------------------------------------------------------------------------------------------------------
# objtool on klp-ld's partial-link output


def _as_kbuild_shows(bench: Bench, path: Path) -> str:
    """A path as kbuild writes it in its commands: absolute where it links from the headers (6.12), relative
    to the module's directory where it links there (6.13 and later)."""
    cwd = bench.link_cwd(path.parent)
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


def test_objtool_runs_on_the_partial_link_output_and_is_silent(run612: Run612, bench612: Bench,
                                                                klp_ld: Path) -> None:
    for name, built in _builds(run612).items():
        if name == "noreturn":  # see test_noreturn_callee_is_silent_with_klp_ld
            continue
        m_o = re.escape(_as_kbuild_shows(bench612, built.modules[0].with_suffix(".o")))
        # One recipe line: klp-ld's `ld -r`, then objtool on what it wrote.
        chained = (rf"^\s*{re.escape(str(klp_ld))} .* -r -o {m_o} @\S+\.mod\s*; "
                   rf"\S*objtool .*--link\s+--module {m_o}$")
        assert re.search(chained, built.log, re.M), f"{name}: no objtool run after klp-ld's partial link"
        assert not _objtool_complaints(built.log), f"{name}: {_objtool_complaints(built.log)}"


def test_objtool_sections_and_pfx_symbols_reach_the_ko(run612: Run612, bench612: Bench) -> None:
    for name, built in _builds(run612).items():
        ko = read_elf_file(str(built.modules[0]))
        names = {s.name for s in ko.sections}
        # What objtool wrote into klp-ld's partial-link output (it rewrites the file in place).
        partial = {s.name for s in read_elf_file(str(built.modules[0].with_suffix(".o"))).sections}
        wanted = set(OBJTOOL_SECTIONS) & partial
        # objtool seals the ENDBR of functions whose address is never taken; klp_func has none (its
        # plain-ld build has no .ibt_endbr_seal either). Later objtool no longer seals what only the
        # final link takes the address of (module init and exit): 7.2's plain-ld seed has no seal.
        base = set(OBJTOOL_SECTIONS) - {".ibt_endbr_seal"}
        assert base <= wanted, f"{name}: objtool wrote no {base - wanted}"
        if bench612.version < (6, 13):
            assert wanted == set(OBJTOOL_SECTIONS) - ({".ibt_endbr_seal"} if name == "func" else set()), name
        assert wanted <= names, f"{name}: missing {wanted - names}"
        functions = [s for s in ko.symbols if s.type == STT_FUNC and s.section is not None
                     and s.section.flags & SHF_EXECINSTR and s.size and not s.name.startswith("__pfx_")]
        prefixes = {(s.name, s.section.name, s.value) for s in ko.symbols
                    if s.name.startswith("__pfx_") and s.size == 16 and s.section is not None}
        assert functions
        for func in functions:
            assert func.section is not None
            want = (f"__pfx_{func.name}", func.section.name, func.value - 16)
            if bench612.version > (6, 12):
                # Later objtool writes one prefix per address, named after one of the names there
                # (7.2: __pfx_cleanup_module, none for its alias klp_seed_exit), as in a plain-ld build.
                aliases = {s.name for s in functions if s.section is func.section and s.value == func.value}
                found = [p for p in prefixes if p[1:] == want[1:] and p[0].removeprefix("__pfx_") in aliases]
                assert found, f"{name}: no 16-byte __pfx_ of {sorted(aliases)} right before {func.name}"
                continue
            assert want in prefixes, f"{name}: no 16-byte {want[0]} right before {func.name}"
        assert not [s.name for s in ko.symbols if s.name.startswith(".klp.") and "__pfx_" in s.name]


def test_klp_ld_validated_every_site(run612: Run612, bench612: Bench) -> None:
    for name, records in run612.reports.items():
        assert [r["kind"] for r in records] == ["partial", "final"], f"{name}: {records}"
        where = str(bench612.link_cwd(_builds(run612)[name].directory))
        for record in records:
            assert record["status"] == "ok" and record["cwd"] == where, record
            assert not [d for d in record["diagnostics"] if d["severity"] in ("error", "warning")], record
        final = records[-1]
        converted = [s for s in final["sites"] if s["reason"] == "converted"]
        assert converted and len(final["checks"]) == len(converted), final
        assert all(c["ok"] for c in final["checks"]), final["checks"]


# --------------------------------------------------------------------------------------------------------
# modpost, __versions and 6.12's command lines


def test_modpost_is_silent_and_versions_name_no_klp_symbol(run612: Run612, bench612: Bench) -> None:
    # Debian's 7.2 is built without CONFIG_MODVERSIONS: its modules (and a plain-ld build) have no
    # __versions, so there is no table for klp-ld to keep clean.
    modversions = bench612.config.get("CONFIG_MODVERSIONS") == "y"
    for name, built in _builds(run612).items():
        assert "scripts/mod/modpost " in built.log, f"{name}: modpost did not run"
        # From 7.x on modpost also says "missing MODULE_DESCRIPTION()" by default, about the source (the
        # same with the plain linker, see test_warnings.py); whatever else it says is about klp-ld.
        noise = [line for line in built.log.splitlines() if re.search(r"(WARNING|ERROR): modpost", line)
                 and not re.fullmatch(r"WARNING: modpost: missing MODULE_DESCRIPTION\(\) in \S+", line)]
        assert not noise, f"{name}: {noise}"
        ko = read_elf_file(str(built.modules[0]))
        if not modversions:
            assert ko.section("__versions") is None, f"{name}: __versions without CONFIG_MODVERSIONS"
            continue
        versions = _versions(ko)
        assert "module_layout" in versions and "__fentry__" in versions, versions
        annotated = ("state_show", "saved_command_line", COLD, "do_exit")
        leaked = [v for v in versions if v.startswith(".klp") or v in annotated]
        assert not leaked, f"{name}: __versions lists {leaked}"


def test_sub_make_and_module_common_are_recognised(run612: Run612, bench612: Bench) -> None:
    for name, built in _builds(run612).items():
        assert "__sub-make" in built.log or "--no-print-directory -C " in built.log, f"{name}: no sub-make"
        final = run612.reports[name][-1]
        assert any(Path(arg).name == ".module-common.o" for arg in final["argv"]), final["argv"]
        assert final["cwd"] == str(bench612.link_cwd(built.directory))
        ko = read_elf_file(str(built.modules[0]))
        klp = [s for s in ko.sections if s.name.startswith(".klp.rela.")]
        assert klp and all(s.flags & SHF_RELA_LIVEPATCH for s in klp), f"{name}: {[s.name for s in klp]}"
        assert not [s.name for s in ko.sections if s.name.startswith(".klp.module_relocs.")]
    seed = {s.name for s in read_elf_file(str(run612.seed.modules[0])).sections}
    assert {".klp.rela.vmlinux..text", ".klp.rela.vmlinux..rodata"} <= seed, seed


# --------------------------------------------------------------------------------------------------------
# A .cold callee: the objtool trap klp-ld avoids by making renamed references STT_NOTYPE


def test_cold_callee_passes_objtool_as_a_notype_klp_symbol(run612: Run612) -> None:
    raw = read_elf_file(str(run612.cold.directory / "cold_ref.o"))
    armed = [s for s in raw.symbols if s.name == COLD]
    assert armed and armed[0].is_undefined and armed[0].type == STT_FUNC, "the source no longer sets the trap"
    ko = read_elf_file(str(run612.cold.modules[0]))
    klp = [s for s in ko.symbols if s.name == f".klp.sym.f2fs.{COLD},0"]
    assert klp and klp[0].special == SHN_LIVEPATCH and klp[0].type == STT_NOTYPE, [s.name for s in ko.symbols]
    assert ko.section(".klp.rela.f2fs..text") is not None


def test_cold_callee_fails_objtool_without_klp_ld(bench612: Bench) -> None:
    """The control: with the plain linker objtool meets the undefined STT_FUNC .cold name and fails."""
    with pytest.raises(BuildError) as failure:
        bench612.build(KMOD / "k612_cold", make_vars=PLAIN_LD_VARS)
    assert f"objtool: {COLD}(): can't find parent function" in failure.value.log, failure.value.log[-3000:]


def test_noreturn_callee_is_silent_without_klp_ld(bench612: Bench) -> None:
    """objtool knows do_exit by name: with the plain linker (and modpost's complaint turned into a
    warning, since do_exit is not exported) it has nothing to say about the function ending in the call."""
    built = bench612.build(KMOD / "k612_noreturn", make_vars={**PLAIN_LD_VARS, "KBUILD_MODPOST_WARN": "1"})
    assert "--link  --module" in built.log or "--link --module" in built.log
    assert not _objtool_complaints(built.log), _objtool_complaints(built.log)


def test_noreturn_callee_is_silent_with_klp_ld(run612: Run612) -> None:
    assert not _objtool_complaints(run612.noreturn.log), _objtool_complaints(run612.noreturn.log)


def test_noreturn_callee_resolves_at_load(run612: Run612) -> None:
    """The kernel lists the module's SHN_LIVEPATCH symbol at the address it resolved it to."""
    case = run612.result["noreturn"]
    assert case.rc == 0, case.explain()
    assert case.dmesg_with("k612_noreturn: 42"), case.explain()
    vmlinux = kallsyms_addresses(case.output, "do_exit")
    resolved = kallsyms_addresses(case.output, ".klp.sym.vmlinux.do_exit,0", module="k612_noreturn")
    assert len(vmlinux) == 1 and resolved == vmlinux, case.explain("do_exit resolved elsewhere")


# --------------------------------------------------------------------------------------------------------
# sympos on 6.12: __pfx_state_show does not count


def test_state_show_positions_ignore_pfx_symbols(bench612: Bench, klp_ld: Path, tmp_path: Path) -> None:
    """Debian 6.12.117 has 6 state_show and 6 __pfx_state_show: position 7 must not exist."""
    copies = kallsyms_addresses(bench612.kallsyms(), "state_show")
    prefixes = kallsyms_addresses(bench612.kallsyms(), "__pfx_state_show")
    assert len(copies) == len(prefixes) >= 3, (len(copies), len(prefixes))
    beyond = len(copies) + 1  # a position that exists only if the __pfx_ copies were counted
    source = tmp_path / "seed"
    shutil.copytree(KMOD / "seed", source)
    b_c = source / "seed_b.c"
    b_c.write_text(b_c.read_text().replace("KLP_SYMPOS(state_show, 3)", f"KLP_SYMPOS(state_show, {beyond})"))
    with pytest.raises(BuildError) as failure:
        bench612.build(source, ld=f"{klp_ld} --klp-symbols={bench612.kallsyms()}")
    want = f"state_show has {len(copies)} copies in vmlinux; position {beyond} does not exist"
    assert want in failure.value.log, failure.value.log[-3000:]


def test_seed_resolves_to_the_2nd_and_3rd_state_show_not_pfx(run612: Run612) -> None:
    case = run612.result["seed"]
    seen = seed_addresses(case, {"a": 2, "b": 3})
    prefixes = kallsyms_addresses(case.output, "__pfx_state_show")
    copies = kallsyms_addresses(case.output, "state_show")
    assert len(copies) == len(prefixes) >= 3, case.explain("expected as many __pfx_state_show as state_show")
    assert not set(seen.values()) & set(prefixes), case.explain("an object got a __pfx_ address")
    assert all(address - 16 in prefixes for address in seen.values()), case.explain()
    pairs = {(r["obj"].rsplit("/", 1)[-1], r["new"]) for r in run612.reports["seed"][0]["renames"]}
    assert pairs == {("seed_a.o", ".klp.sym.vmlinux.state_show,2"),
                     ("seed_b.o", ".klp.sym.vmlinux.state_show,3")}, pairs


def test_function_patch_on_612(run612: Run612) -> None:
    case = run612.result["func"]
    assert case.rc == 0, case.explain()
    line = case.output.strip().splitlines()[-1]
    assert line.endswith(" [klp_func]") and "console=ttyS0" in line, case.explain("cmdline not patched")
    assert case.dmesg_with("livepatch: enabling patch 'klp_func'"), case.explain()


def test_cold_module_loads(run612: Run612) -> None:
    """Its klp relocation names f2fs, which never loads here, so the loader only has to accept it."""
    case = run612.result["cold"]
    assert case.rc == 0 and case.output.strip() == "1", case.explain()
    assert case.dmesg_with("k612_cold: loaded"), case.explain()
    assert not case.dmesg_with("Unknown symbol") and not case.dmesg_with("livepatch:"), case.explain()
