"""Properties over mutated real objects and symbol sources: klp-ld fails cleanly or not at all.

Every failure must be `klp-ld: error:` lines (optionally with `>>> ` notes) and, on the command
line, exit status 1 (or the real ld's own message and status when ld ran and failed); never a
traceback, an "internal error", a hang, or an output or temporary file left behind. The mutants
come from objects gcc and ld built from testdata/objects (both annotation dialects, a partial-link
output and a final `.ko`) through the structure-aware mutators of tests/hardening/mutate.py.
Longer campaigns: benchmarks/fuzz_campaign.py.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from klp_ld.diag import KlpLdError

from . import drive, mutate
from .conftest import Seeds

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=250)
CLI = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=15)


def _assert_clean(verdict: drive.Verdict, what: str) -> None:
    assert not verdict.bad, f"{what}: {verdict.outcome}\n{verdict.detail}"


# ---------------------------------------------------------------------------------------------
# The library: read_elf, harvest, rename, convert, validate, check


@FAST
@given(rnd=st.randoms(use_true_random=False), which=st.integers(0, 100))
def test_partial_link_stages_fail_cleanly(seeds: Seeds, rnd: random.Random, which: int) -> None:
    names = sorted(seeds.all)
    name = names[which % len(names)]
    data, applied = mutate.mutate(seeds.all[name], rnd)
    _assert_clean(drive.judge_api(drive.api_partial, data), f"{name} after {applied}")


@FAST
@given(rnd=st.randoms(use_true_random=False), which=st.integers(0, 100))
def test_final_link_stages_fail_cleanly(seeds: Seeds, rnd: random.Random, which: int) -> None:
    pool = {**seeds.final, **seeds.converted, "m.o": seeds.partial["m.o"]}
    name = sorted(pool)[which % len(pool)]
    data, applied = mutate.mutate(pool[name], rnd)
    _assert_clean(drive.judge_api(drive.api_final, data), f"{name} after {applied}")
    _assert_clean(drive.judge_api(drive.api_check, data), f"check {name} after {applied}")


@FAST
@given(rnd=st.randoms(use_true_random=False), which=st.integers(0, 100),
       count=st.integers(1, 4))
def test_annotations_of_both_dialects_fail_cleanly(seeds: Seeds, rnd: random.Random, which: int,
                                                   count: int) -> None:
    """`.klp.module_relocs.*` records (odd counts, bad positions, misplaced relocations) and
    `.klp.sym.*`/`.klp.sym.rela.*` names (malformed, too long, bad positions)."""
    pool = {n: d for n, d in seeds.all.items() if n != "m.ko"}
    name = sorted(pool)[which % len(pool)]
    data, applied = mutate.mutate(pool[name], rnd, count, only=("annotation", "names", "rename"))
    for driver in (drive.api_partial, drive.api_final):
        _assert_clean(drive.judge_api(driver, data), f"{name} after {applied}")


@pytest.mark.parametrize("name", ["seed_a.o", "dotted.o", "m.o"])
def test_every_truncation_fails_cleanly(seeds: Seeds, name: str) -> None:
    data = seeds.partial[name]
    step = 1 if len(data) <= 4096 else 3
    for cut in range(0, len(data), step):
        verdict = drive.judge_api(drive.api_partial, data[:cut])
        _assert_clean(verdict, f"{name} cut at {cut}")
        assert verdict.outcome == drive.CLEAN_ERROR, f"{name} cut at {cut} was accepted"


@settings(deadline=None, max_examples=150)
@given(rnd=st.randoms(use_true_random=False), which=st.integers(0, 100))
def test_modules_as_symbol_sources_fail_cleanly(seeds: Seeds, rnd: random.Random, which: int) -> None:
    """A mutated `.ko` (plain, xz or gzip) given as --klp-symbols is parsed by klp_ld.ksyms."""
    import gzip
    import lzma

    from klp_ld.ksyms.load import parse_source

    pool = {**seeds.final, **seeds.converted}
    name = sorted(pool)[which % len(pool)]
    data, applied = mutate.mutate(pool[name], rnd)
    wrap = rnd.choice((bytes, lzma.compress, gzip.compress))
    packed = wrap(data)
    if wrap is not bytes and rnd.random() < 0.3:   # a damaged container too
        cut = rnd.randrange(len(packed))
        packed = packed[:cut] + bytes([packed[cut] ^ 0x55]) + packed[cut + 1:]
    def parse(data: bytes, name: str) -> None:
        parse_source(data, name)

    verdict = drive.judge_api(parse, packed, "mutant.ko.xz")
    _assert_clean(verdict, f"{name} after {applied} ({wrap.__name__})")


# ---------------------------------------------------------------------------------------------
# The text parsers of klp_ld.ksyms.text: random lines among real ones


def _sample_lines() -> dict[str, list[str]]:
    root = Path(__file__).resolve().parents[2] / "testdata" / "symbols"
    return {
        "kallsyms": (root / "kallsyms.txt").read_text().splitlines(),
        "system-map": (root / "System.map").read_text().splitlines(),
        "symbols-list": (root / "Symbols.list").read_text().splitlines(),
        "symvers": (root / "Module.symvers").read_text().splitlines(),
    }


SAMPLES = _sample_lines()


def _parse(fmt: str, text: str) -> object:
    from klp_ld.ksyms import text as parsers

    if fmt == "kallsyms":
        return parsers.parse_kallsyms(text, "kallsyms")
    if fmt == "system-map":
        return parsers.parse_system_map(text, "System.map")
    if fmt == "symbols-list":
        return parsers.parse_symbols_list(text, "Symbols.list")
    return parsers.parse_module_symvers(text, "Module.symvers")


@st.composite
def source_texts(draw: st.DrawFn) -> tuple[str, str]:
    fmt = draw(st.sampled_from(sorted(SAMPLES)))
    rnd = draw(st.randoms(use_true_random=False))
    real = SAMPLES[fmt]
    lines = draw(st.lists(st.one_of(
        st.sampled_from(real),
        st.builds(lambda: mutate.random_line(rnd, fmt)),
        st.text(max_size=80),
    ), max_size=30))
    if fmt == "symbols-list" and draw(st.booleans()):
        lines.insert(0, real[0])
    newline = draw(st.sampled_from(("\n", "\r\n", "\r", "\x0b", "\x1c")))
    return fmt, newline.join(lines)


@settings(deadline=None, max_examples=400)
@given(source=source_texts())
@example(source=("kallsyms", "ffffffff81000000 t state_show [dummy"))
@example(source=("system-map", "f" * 40 + " t x"))
@example(source=("symvers", "0x\tx\tvmlinux\tEXPORT_SYMBOL"))
@example(source=("symbols-list", "klp-convert-symbol-data.0.1\n*\nfoo"))
def test_symbol_source_text_fails_cleanly(source: tuple[str, str]) -> None:
    fmt, text = source
    def parse(data: bytes, name: str) -> None:
        _parse(fmt, data.decode("utf-8", "surrogateescape"))

    verdict = drive.judge_api(parse, text.encode("utf-8", "surrogateescape"), fmt)
    _assert_clean(verdict, f"{fmt}: {text[:300]!r}")


@settings(deadline=None, max_examples=200)
@given(data=st.one_of(st.binary(max_size=300),
                      source_texts().map(lambda s: s[1].encode("utf-8", "surrogateescape"))),
       name=st.sampled_from(("kallsyms", "System.map-6.1.0-50-amd64", "Symbols.list", "Module.symvers",
                             "x.ko", "x.ko.xz")))
def test_any_bytes_as_a_symbol_source_fail_cleanly(data: bytes, name: str) -> None:
    """Format detection and the parser it picks, on anything a user may point --klp-symbols at."""
    from klp_ld.ksyms.index import SymbolIndex
    from klp_ld.ksyms.load import parse_source

    def load(d: bytes, n: str) -> None:
        source = parse_source(d, n)
        index = SymbolIndex.from_sources([source])
        for objname in index.objects():
            table = index.table(objname)
            if table is not None and table.names:
                index.resolve(objname, table.names[0], 0)
                index.resolve(objname, table.names[-1], 2)
        index.lookup_unannotated("state_show")

    _assert_clean(drive.judge_api(load, data, name), f"{name}: {data[:200]!r}")


def test_a_name_with_a_newline_stays_on_one_line(seeds: Seeds) -> None:
    """A section or symbol name is data from the object: a control character in it must not break
    the one-line `klp-ld: error:` format (nor reach the terminal as an escape sequence)."""
    data = bytearray(seeds.partial["seed_a.o"])
    lay = mutate.Layout.parse(bytes(data))
    text = next(h for h in lay.headers if h.name == ".text")
    names = lay.headers[lay.shstrndx]
    at = names.offset + mutate.SHDR.unpack_from(data, text.at)[0]
    data[at + 1] = ord("\n")                                   # ".text" -> ".\next"
    mutate._put(data, text.at + 48, 8, 3)                      # and an alignment klp-ld rejects
    with pytest.raises(KlpLdError) as info:
        drive.api_partial(bytes(data), "a.o")
    rendered = "\n".join(d.render() for d in info.value.diagnostics)
    assert drive.diagnostic_problem(rendered, need_error=True) is None, rendered


# ---------------------------------------------------------------------------------------------
# The real command line


def _cli_case(seeds: Seeds, data: bytes, args_for: str) -> tuple[drive.Verdict, str]:
    with tempfile.TemporaryDirectory(prefix="klp-fuzz-") as scratch:
        base = Path(scratch)
        rundir, tmp = base / "run", base / "tmp"
        rundir.mkdir()
        tmp.mkdir()
        real_ld = drive.install_marking_ld(base)
        (rundir / "mutant.o").write_bytes(data)
        if args_for == "partial":
            (rundir / "b.o").write_bytes(seeds.partial["seed_b.o"])
            args, output = ["-r", "-o", "out.o", "mutant.o", "b.o"], rundir / "out.o"
        elif args_for == "final":
            (rundir / "module.lds").write_bytes(seeds.lds.read_bytes())
            (rundir / "modinfo.o").write_bytes(seeds.modinfo.read_bytes())
            args = ["-r", "-m", "elf_x86_64", "--build-id=sha1", "-T", "module.lds", "-o", "out.ko",
                    "mutant.o", "modinfo.o"]
            output = rundir / "out.ko"
        else:
            args, output = ["check", "mutant.o"], None
        expected = {p.name for p in rundir.iterdir()}
        if args_for != "check":
            args = [f"--klp-real-ld={real_ld}", *args]
        status, _, stderr = drive.run_cli(args, rundir, tmpdir=tmp, timeout=60)
        verdict = drive.judge_cli(status, stderr, output=output, expected=expected, rundir=rundir,
                                  tmpdir=tmp, ld_ran=(rundir / drive.LD_MARK).exists())
        return verdict, stderr


@CLI
@given(rnd=st.randoms(use_true_random=False), which=st.integers(0, 100))
def test_partial_link_command_fails_cleanly(seeds: Seeds, rnd: random.Random, which: int) -> None:
    pool = {n: seeds.partial[n] for n in ("seed_a.o", "dotted.o", "m.o")}
    name = sorted(pool)[which % len(pool)]
    data, applied = mutate.mutate(pool[name], rnd)
    verdict, stderr = _cli_case(seeds, data, "partial")
    _assert_clean(verdict, f"klp-ld -r -o out.o {name}(after {applied}) b.o\n{stderr}")


@CLI
@given(rnd=st.randoms(use_true_random=False), which=st.integers(0, 100))
def test_final_link_command_fails_cleanly(seeds: Seeds, rnd: random.Random, which: int) -> None:
    pool = {"m.o": seeds.partial["m.o"], **seeds.final}
    name = sorted(pool)[which % len(pool)]
    data, applied = mutate.mutate(pool[name], rnd)
    verdict, stderr = _cli_case(seeds, data, "final")
    _assert_clean(verdict, f"klp-ld -r -T module.lds -o out.ko {name}(after {applied})\n{stderr}")


@settings(deadline=None, max_examples=8)
@given(rnd=st.randoms(use_true_random=False))
def test_check_command_fails_cleanly(seeds: Seeds, rnd: random.Random) -> None:
    data, applied = mutate.mutate(seeds.converted["m.ko"], rnd)
    verdict, stderr = _cli_case(seeds, data, "check")
    _assert_clean(verdict, f"klp-ld check m.ko(after {applied})\n{stderr}")
