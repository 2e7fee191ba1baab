"""Parallel and repeated kbuild builds through klp-ld: no shared temporaries, no cross-talk, same bytes.

- `make -j8` over one external-module tree of several multi-object livepatch modules, and several
  such trees built at once from threads: every `.ko` holds exactly its own identities and code,
  every klp-ld invocation had its own temporary directory, and one shared KLP_LD_REPORT file
  holds one valid JSON object per line.
- Determinism: a rebuild in the same directory gives a byte-identical `.ko` (on 6.12 with
  KBUILD_BUILD_TIMESTAMP set, which keeps pahole from running in parallel); reordering the
  objects of the seed module may move code but never changes which identity a site uses.
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
from pathlib import Path

import pytest

from klp_ld.elf.consts import SHF_RELA_LIVEPATCH, SHN_LIVEPATCH
from klp_ld.elf.model import ElfObject, Section, Symbol
from klp_ld.elf.read import read_elf_file

from .bench import Bench, Built
from .conftest import KMOD

pytestmark = pytest.mark.kernel

SEED = KMOD / "seed"
RELA_SIZE = 24  # Elf64_Rela
KEPT = re.compile(r"temporary files kept in (\S+)")


def _positions(k: int) -> tuple[int, int]:
    """The state_show copies module k's objects a and b mean (valid in 6.1's five and 6.12's six)."""
    return (k - 1) % 5 + 1, k % 5 + 1


def _generate_tree(dest: Path, modules: list[int]) -> Path:
    """One external-module directory with modules klp_c<k> (c<k>_main.o, c<k>_a.o, c<k>_b.o)."""
    dest.mkdir(parents=True)
    kbuild = ["ccflags-y += -I$(shell $(LD) --klp-print-include-dir)"]
    for k in modules:
        pa, pb = _positions(k)

        def local(text: str, k: int = k) -> str:
            for old, new in (("seed_a", f"c{k}_a"), ("seed_b", f"c{k}_b"), ("klp_seed", f"klp_c{k}"),
                             ('"seed.h"', f'"c{k}.h"'), ("struct seed_refs", f"struct c{k}_refs")):
                text = text.replace(old, new)
            return text

        (dest / f"c{k}.h").write_text(local((SEED / "seed.h").read_text()))
        (dest / f"c{k}_main.c").write_text(local((SEED / "seed_main.c").read_text()))
        for part, old, new in (("a", 2, pa), ("b", 3, pb)):
            text = local((SEED / f"seed_{part}.c").read_text())
            (dest / f"c{k}_{part}.c").write_text(text.replace(f"KLP_SYMPOS(state_show, {old})",
                                                              f"KLP_SYMPOS(state_show, {new})"))
        kbuild += [f"obj-m += klp_c{k}.o", f"klp_c{k}-y := c{k}_main.o c{k}_a.o c{k}_b.o"]
    (dest / "Kbuild").write_text("\n".join(kbuild) + "\n")
    return dest


def _klp_relocations(obj: ElfObject, sec: Section) -> tuple[Section, list[tuple[int, Symbol | None]]]:
    """A `.klp.rela.` section's target and (offset, symbol) entries. SHT_RELA ones the reader parses;
    where kbuild's module BTF step runs objcopy after the link (7.x), klp-ld writes them with another
    section type that objcopy leaves alone, and the entries are raw Elf64_Rela in the data."""
    if sec.info_section is not None:
        return sec.info_section, [(rela.offset, rela.symbol) for rela in sec.relocs]
    assert sec.flags & SHF_RELA_LIVEPATCH and sec.entsize == RELA_SIZE, sec
    assert 0 < sec.info < len(obj.sections), f"{sec.name}: sh_info {sec.info}"
    entries = [(offset, obj.symbols[info >> 32]) for offset, info, _ in struct.iter_unpack("<QQq", sec.data)]
    return obj.sections[sec.info], entries


def site_identities(ko: Path) -> dict[tuple[str, str, int], str]:
    """(section, owning symbol, offset within it) -> the `.klp.sym` name its klp relocation uses."""
    obj = read_elf_file(str(ko))
    out: dict[tuple[str, str, int], str] = {}
    for sec in obj.sections:
        if not sec.name.startswith(".klp.rela."):
            continue
        target, entries = _klp_relocations(obj, sec)
        for offset, symbol in entries:
            assert symbol is not None and symbol.special == SHN_LIVEPATCH, f"{ko}: {sec.name}"
            owner = obj.symbol_at(target, offset)
            assert owner is not None, f"{ko}: {target.name}+{offset:#x} lies in no symbol"
            kind = target.name.split(".")[1] if target.name.startswith(".") else target.name
            out[(kind, owner[0].name, owner[1])] = symbol.name
    return out


def _assert_own_identities(ko: Path, k: int) -> None:
    pa, pb = _positions(k)
    sites = site_identities(ko)
    assert sites, f"{ko.name} has no klp relocations"
    for (_, owner, offset), name in sites.items():
        want = pa if owner.startswith(f"c{k}_a") else pb if owner.startswith(f"c{k}_b") else None
        assert want is not None, f"{ko.name}: a klp site in {owner}, which is not module {k}'s"
        assert name == f".klp.sym.vmlinux.state_show,{want}", f"{ko.name}: {owner}+{offset:#x} uses {name}"
    names = {s.name for s in read_elf_file(str(ko)).symbols if s.name}
    foreign = sorted(n for n in names if re.match(r"c\d+_", n) and not n.startswith(f"c{k}_"))
    assert not foreign, f"{ko.name} holds another module's symbols: {foreign}"


def _check_report(path: Path, expected_records: int) -> list[dict[str, object]]:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", "the report does not end with a newline"
    records = []
    for number, line in enumerate(lines[:-1], 1):
        record = json.loads(line)  # a torn or interleaved write fails here
        assert isinstance(record, dict) and record["schema"] == "klp-ld-report/1", f"line {number}"
        assert record["status"] == "ok", f"line {number}: {record['status']} {record['diagnostics']}"
        records.append(record)
    assert len(records) == expected_records
    outputs = [str(r["output"]) for r in records]
    assert len(set(outputs)) == len(outputs), "two invocations reported the same output"
    for record in records:  # each partial link renamed only its own module's objects
        module = re.search(r"klp_c(\d+)\.(?:o|ko)$", str(record["output"]))
        assert module is not None, record["output"]
        renames = record["renames"]
        assert isinstance(renames, list)
        for rename in renames:
            assert Path(rename["obj"]).name.startswith(f"c{module.group(1)}_"), (record["output"], rename)
    return records


def _env(bench: Bench, tmpdir: Path, **extra: str) -> dict[str, str]:
    env = {"KLP_LD_PYTHON": bench.python, "TMPDIR": str(tmpdir)}
    if bench.series != "6.1":
        env["KBUILD_BUILD_TIMESTAMP"] = "Thu Jan  1 00:00:00 UTC 2026"
    env.update(extra)
    return env


def _klp_temporaries(*places: Path) -> list[str]:
    left = []
    for place in places:
        left += [str(p) for p in place.rglob("*")
                 if p.name.startswith("klp-ld-") or p.name.endswith(".klp-ld.tmp")]
    return left


def test_make_j8_over_a_tree_of_livepatch_modules(bench: Bench, klp_ld: Path, tmp_path: Path) -> None:
    modules = [1, 2, 3, 4, 5]
    tree = _generate_tree(tmp_path / "tree", modules)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    report = tmp_path / "report.jsonl"
    built = bench.build(tree, ld=klp_ld, env=_env(bench, tmp, KLP_LD_REPORT=str(report)), jobs=8)
    for k in modules:
        _assert_own_identities(built.module(f"klp_c{k}"), k)
    records = _check_report(report, 2 * len(modules))
    assert sorted(str(r["kind"]) for r in records) == ["final"] * 5 + ["partial"] * 5
    assert _klp_temporaries(tmp, built.directory) == []


def test_several_trees_built_at_once(bench: Bench, klp_ld: Path, tmp_path: Path) -> None:
    """Three trees from three threads, each `make -j4`, one TMPDIR, one report, --klp-keep-tmp so
    that every invocation's temporary directory can be counted: all distinct."""
    trees = {t: _generate_tree(tmp_path / f"tree{t}", [3 * t + 1, 3 * t + 2, 3 * t + 3]) for t in range(3)}
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    report = tmp_path / "report.jsonl"
    env = _env(bench, tmp, KLP_LD_REPORT=str(report), KLP_LD_KEEP_TMP="1")
    results: dict[int, Built | BaseException] = {}

    def build(t: int) -> None:
        try:
            results[t] = bench.build(trees[t], ld=klp_ld, env=env, jobs=4)
        except BaseException as exc:  # reported below, in the test's thread
            results[t] = exc

    threads = [threading.Thread(target=build, args=(t,)) for t in trees]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for t in trees:
        outcome = results[t]
        if isinstance(outcome, BaseException):
            raise outcome
        for k in (3 * t + 1, 3 * t + 2, 3 * t + 3):
            _assert_own_identities(outcome.module(f"klp_c{k}"), k)
    records = _check_report(report, 18)
    kept = [m.group(1) for r in records for d in r["diagnostics"]  # type: ignore[attr-defined]
            for m in [KEPT.search(str(d["message"]))] if m]
    assert len(kept) == 18 and len(set(kept)) == 18, f"temporary directories were shared: {kept}"
    assert sorted(p.name for p in tmp.iterdir()) == sorted(Path(k).name for k in kept)


def _make(bench: Bench, directory: Path, ld: Path, env: dict[str, str], *targets: str) -> None:
    cmd = bench.make_command(directory, *targets, ld=ld, jobs=2)
    done = bench.run(cmd, env={**os.environ, **env})
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


def test_rebuild_in_the_same_directory_is_byte_identical(bench: Bench, klp_ld: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = _env(bench, tmp)
    built = bench.build(SEED, ld=klp_ld, env=env, jobs=2)
    ko = built.module("klp_seed")
    first = ko.read_bytes()
    _make(bench, built.directory, klp_ld, env, "clean")
    assert not ko.exists()
    _make(bench, built.directory, klp_ld, env, "modules")
    assert ko.read_bytes() == first, "a rebuild in the same directory gave a different .ko"


def test_input_order_changes_offsets_not_meanings(bench: Bench, klp_ld: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = _env(bench, tmp)
    orders = (["seed_main.o", "seed_a.o", "seed_b.o"], ["seed_b.o", "seed_main.o", "seed_a.o"],
              ["seed_a.o", "seed_b.o", "seed_main.o"])
    maps = []
    for n, order in enumerate(orders):
        source = tmp_path / f"seed{n}"
        source.mkdir()
        for f in SEED.iterdir():
            (source / f.name).write_bytes(f.read_bytes())
        kbuild = (SEED / "Kbuild").read_text()
        kbuild = re.sub(r"klp_seed-y := .*", "klp_seed-y := " + " ".join(order), kbuild)
        (source / "Kbuild").write_text(kbuild)
        ko = bench.build(source, ld=klp_ld, env=env, jobs=2).module("klp_seed")
        maps.append(site_identities(ko))
    assert len(maps[0]) >= 6, maps[0]
    for order, sites in zip(orders[1:], maps[1:], strict=True):
        assert sites == maps[0], f"the order {order} changed what a site means"
