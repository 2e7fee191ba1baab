"""Symbol sources and the kernel's sympos algorithm (klp_ld.ksyms).

Text fixtures live in testdata/symbols/; ELF fixtures are built here with gcc and ld from the
sources next to them, so positions can be checked against `nm -n` and readelf's `.symtab` order.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klp_ld.diag import KlpLdError
from klp_ld.ksyms.detect import detect_format
from klp_ld.ksyms.index import SymbolIndex
from klp_ld.ksyms.load import load_source, parse_source, read_source_bytes
from klp_ld.ksyms.resolution import Resolved, SymbolProblem
from klp_ld.ksyms.symtab import parse_vmlinux
from klp_ld.ksyms.tables import Export, ObjectTable, SourceKind, SymbolSource
from klp_ld.ksyms.text import parse_kallsyms, parse_module_symvers, parse_symbols_list, parse_system_map
from klp_ld.names import VMLINUX, normalize_objname

from .conftest import WRAPPER, Toolchain

DATA = Path(__file__).resolve().parents[2] / "testdata" / "symbols"
TOOLS = all(shutil.which(t) for t in ("gcc", "ld", "nm"))
needs_tools = pytest.mark.skipif(not TOOLS, reason="needs gcc, ld and nm")

# The five state_show of kallsyms.txt, by address (the file lists them in another order).
STATE_SHOW = [0xFFFFFFFF81050000, 0xFFFFFFFF81100000, 0xFFFFFFFF81234000, 0xFFFFFFFF81500000,
              0xFFFFFFFF81ABC000]


def index_of(*paths: Path) -> SymbolIndex:
    return SymbolIndex.from_sources(load_source(str(p)) for p in paths)


def table_of(holder: SymbolIndex | SymbolSource, objname: str) -> ObjectTable:
    got = holder.table(objname)
    assert got is not None, objname
    return got


def export_of(idx: SymbolIndex, name: str) -> Export:
    got = idx.export(name)
    assert got is not None, name
    return got


def resolved(r: Resolved | SymbolProblem) -> Resolved:
    assert isinstance(r, Resolved), r.diagnostic().render() if isinstance(r, SymbolProblem) else r
    return r


def problem(r: Resolved | SymbolProblem) -> SymbolProblem:
    assert isinstance(r, SymbolProblem), r
    return r


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """vmlinux (ET_EXEC) and fake-mod.ko (ET_REL), built from testdata/symbols sources."""
    if not TOOLS:
        pytest.skip("needs gcc, ld and nm")
    out = tmp_path_factory.mktemp("elf")
    vm_src = DATA / "vmlinux"
    subprocess.run(["gcc", "-O0", "-fno-pie", "-no-pie", "-nostdlib", "-static", "-Wl,--build-id=none",
                    "-o", str(out / "vmlinux"), *(str(vm_src / f) for f in ("start.c", "a.c", "b.c", "c.c"))],
                   check=True)
    objs = []
    for name in ("m1", "m2", "m3"):
        obj = out / f"{name}.o"
        subprocess.run(["gcc", "-c", "-o", str(obj), str(DATA / "module" / f"{name}.s")], check=True)
        objs.append(str(obj))
    subprocess.run(["ld", "-r", "-o", str(out / "fake-mod.ko"), *objs], check=True)
    subprocess.run(["ld", "-r", "-o", str(out / "no-modinfo.ko"), objs[1], objs[2]], check=True)
    return {"vmlinux": out / "vmlinux", "ko": out / "fake-mod.ko", "no_modinfo": out / "no-modinfo.ko"}


# --- /proc/kallsyms -------------------------------------------------------------------------


def test_kallsyms_positions_follow_addresses_not_lines() -> None:
    idx = index_of(DATA / "kallsyms.txt")
    for pos, addr in enumerate(STATE_SHOW, 1):
        got = resolved(idx.resolve(VMLINUX, "state_show", pos)).candidate
        assert (got.position, got.address) == (pos, addr)
    assert [c.type for c in idx.candidates(VMLINUX, "state_show")] == ["t", "t", "t", "d", "t"]


def test_ambiguous_position_zero_lists_every_candidate_and_the_lines_to_write() -> None:
    p = problem(index_of(DATA / "kallsyms.txt").resolve(VMLINUX, "state_show", 0))
    assert p.code == "sympos-ambiguous"
    assert p.message == ("state_show is ambiguous in vmlinux (5 copies); position 0 needs a unique name: "
                         "give KLP_SYMPOS(state_show, 1..5)")
    assert p.notes[:5] == tuple(
        f"KLP_SYMPOS(state_show, {i})  /* {a:016x} {t}, vmlinux */"
        for i, (a, t) in enumerate(zip(STATE_SHOW, "tttdt", strict=True), 1))
    assert p.notes[-1] == ("at load the kernel would say: unresolvable ambiguity for symbol 'state_show' "
                           "in object '(null)'")
    assert len(p.candidates) == 5
    rendered = p.diagnostic(obj="livepatch.o").render().splitlines()
    assert rendered[0].startswith("klp-ld: error: livepatch.o: state_show is ambiguous in vmlinux")
    assert rendered[1] == f">>> KLP_SYMPOS(state_show, 1)  /* {STATE_SHOW[0]:016x} t, vmlinux */"


def test_position_past_the_last_copy() -> None:
    p = problem(index_of(DATA / "kallsyms.txt").resolve(VMLINUX, "state_show", 6))
    assert p.code == "sympos-not-found"
    assert p.message == "state_show has 5 copies in vmlinux; position 6 does not exist"
    assert ("at load the kernel would say: symbol position 6 for symbol 'state_show' in object 'vmlinux' "
            "not found") in p.notes
    assert sum(n.startswith("KLP_SYMPOS(state_show, ") for n in p.notes) == 5


def test_unique_name_accepts_position_zero_and_one() -> None:
    idx = index_of(DATA / "kallsyms.txt")
    assert resolved(idx.resolve(VMLINUX, "saved_command_line", 0)).candidate.type == "B"
    assert resolved(idx.resolve(VMLINUX, "saved_command_line", 1)).candidate.position == 1
    assert problem(idx.resolve(VMLINUX, "saved_command_line", 2)).message == (
        "saved_command_line has 1 copy in vmlinux; position 2 does not exist")


def test_module_tags_make_separate_objects() -> None:
    src = load_source(str(DATA / "kallsyms.txt"))
    assert src.kind is SourceKind.KALLSYMS
    assert set(src.objects()) == {VMLINUX, "dummy", "ip6_tables", "ip_tables"}  # no [bpf], [__builtin__*]
    idx = SymbolIndex.from_sources([src])
    got = resolved(idx.resolve("dummy", "state_show", 0))
    assert got.candidate.address == 0xFFFFFFFFC0A00000 and got.candidate.objname == "dummy"
    assert got.candidate.full_position is None  # kallsyms only sees a loaded module
    assert any("could not be checked" in n for n in got.notes)
    # module lines keep their own order (the module's .symtab order), not address order
    assert table_of(src, "dummy").names == ("dummy_setup", "state_show", "numdummies", "__this_module")


def test_hidden_addresses_keep_line_order() -> None:
    text = "0000000000000000 t b\n0000000000000000 t a\n0000000000000000 T a\n"
    idx = SymbolIndex.from_sources([parse_kallsyms(text, "dump")])
    assert [c.type for c in idx.candidates(VMLINUX, "a")] == ["t", "T"]
    assert any("hides addresses" in n for n in resolved(idx.resolve(VMLINUX, "a", 2)).notes)
    assert any("all addresses are zero" in n for n in idx.notes)


def test_per_cpu_symbol_at_address_zero_is_refused_by_the_kernel() -> None:
    p = problem(index_of(DATA / "kallsyms.txt").resolve(VMLINUX, "fixed_percpu_data", 0))
    assert p.code == "zero-address"
    assert "treats address 0 as 'not found'" in p.message


def test_compiler_suffixes_are_names_of_their_own() -> None:
    idx = index_of(DATA / "kallsyms.txt")
    for name in ("foo.isra.0", "foo.cold", "foo"):
        assert resolved(idx.resolve(VMLINUX, name, 0)).candidate.name == name


def test_near_miss_suggestion_for_numbered_static() -> None:
    idx = index_of(DATA / "kallsyms.txt")
    p = problem(idx.resolve("ip6_tables", "uncond.48011", 0))
    assert p.code == "symbol-not-found"
    assert p.message == "uncond.48011 is not a symbol of ip6_tables; did you mean uncond.48012?"
    assert p.suggestions == ("uncond.48012",)
    assert any("compiler-made suffixes" in n for n in p.notes)
    assert any(n == "uncond.48012 is defined in vmlinux (1 copy)" for n in
               problem(idx.resolve("ip_tables", "uncond.48012", 0)).notes)


def test_unknown_object_is_named() -> None:
    p = problem(index_of(DATA / "kallsyms.txt").resolve("dumy", "state_show", 0))
    assert p.code == "object-not-found"
    assert p.message == "no symbols for object dumy: no symbol source covers it; did you mean dummy?"


@pytest.mark.parametrize("line", [
    "ffffffff81000000 T",
    "ffffffff81000000 TT name",
    "zzzz T name",
    "-1 T name",
    "ffffffff81000000 t name mod",
    "ffffffff81000000 t a b c d",
])
def test_malformed_kallsyms_line_names_file_and_line(line: str) -> None:
    with pytest.raises(KlpLdError) as exc:
        parse_kallsyms(f"ffffffff81000000 T _text\n{line}\n", "dump.txt")
    assert str(exc.value).startswith("klp-ld: error: dump.txt:2: ")


def test_kallsyms_speed_94k_lines() -> None:
    rng = random.Random(7)
    lines = [f"{0xFFFFFFFF81000000 + i * 16:016x} {rng.choice('tTdDbBrR')} sym_{i}" for i in range(94_096)]
    lines += [f"{a:016x} t state_show" for a in STATE_SHOW]
    rng.shuffle(lines)
    text = "\n".join(lines) + "\n"
    start = time.perf_counter()
    src = parse_source(text.encode(), "kallsyms")
    elapsed = time.perf_counter() - start
    assert len(table_of(src, VMLINUX)) == 94_101
    assert elapsed < 1.0, f"94k-line kallsyms took {elapsed:.3f}s"
    idx = SymbolIndex.from_sources([src])
    assert [c.address for c in idx.candidates(VMLINUX, "state_show")] == STATE_SHOW


# --- System.map, Symbols.list, Module.symvers -------------------------------------------------


def test_system_map_keeps_what_kallsyms_keeps() -> None:
    src = load_source(str(DATA / "System.map"))
    assert src.kind is SourceKind.SYSTEM_MAP
    names = set(table_of(src, VMLINUX).names)
    for dropped in ("abs_symbol", "local_abs", ".L_local_label", "$x", "__kstrtab_printk",
                    "__kstrtabns_printk", "debug_thing", "note_thing", "unique_thing", "weak_undefined",
                    "kallsyms_names", "__crc_printk"):
        assert dropped not in names, dropped
    assert {"__ksymtab_printk", "fixed_percpu_data", "__per_cpu_start", "printk"} <= names
    kallsyms = index_of(DATA / "kallsyms.txt").candidates(VMLINUX, "state_show")
    sysmap = SymbolIndex.from_sources([src]).candidates(VMLINUX, "state_show")
    assert [c.address for c in sysmap] == [c.address for c in kallsyms]


def test_debian_placeholder_system_map() -> None:
    text = "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n"
    with pytest.raises(KlpLdError, match="placeholder without symbols"):
        parse_source(text.encode(), "/boot/System.map-6.1.0-50-amd64")


def test_symbols_list() -> None:
    src = load_source(str(DATA / "Symbols.list"))
    assert src.kind is SourceKind.SYMBOLS_LIST
    assert src.objects() == (VMLINUX, "dm_persistent_data", "dummy")
    assert {e.name: e.objname for e in src.exports} == {"printk": VMLINUX,
                                                          "dm_bm_read_lock": "dm_persistent_data"}
    assert "__crc_printk" not in table_of(src, VMLINUX).names
    idx = SymbolIndex.from_sources([src])
    assert problem(idx.resolve(VMLINUX, "state_show", 0)).message.startswith(
        "state_show is ambiguous in vmlinux (3 copies)")
    got = resolved(idx.resolve(VMLINUX, "state_show", 2))
    assert got.candidate.address is None
    assert any("only as good as that order" in n for n in got.notes)
    assert any("only as good as that order" in n for n in idx.notes)
    assert "address unknown" in got.candidate.sympos_line()


@pytest.mark.parametrize(("text", "what"), [
    ("klp-convert-symbol-data.0.1\nfoo\n", "before any '*<object>'"),
    ("klp-convert-symbol-data.0.2\n*vmlinux\n", "expected the format line"),
    ("klp-convert-symbol-data.0.1\n*vmlinux\nfoo bar\n", "one symbol name per line"),
])
def test_symbols_list_errors(text: str, what: str) -> None:
    with pytest.raises(KlpLdError, match=re.escape(what)):
        parse_symbols_list(text, "Symbols.list")


def test_kallsyms_wins_over_symbols_list_whatever_the_order() -> None:
    idx = index_of(DATA / "Symbols.list", DATA / "kallsyms.txt")
    assert table_of(idx, VMLINUX).kind is SourceKind.KALLSYMS
    assert table_of(idx, "dm_persistent_data").kind is SourceKind.SYMBOLS_LIST


def test_module_symvers_with_namespaces() -> None:
    exports = parse_module_symvers((DATA / "Module.symvers").read_text(), "Module.symvers")
    assert exports["_printk"].crc == 0x6C2E2A8A and exports["_printk"].objname == VMLINUX
    assert exports["usb_stor_probe1"].namespace == "USB_STORAGE"
    assert exports["usb_stor_probe1"].objname == "usb_storage"
    assert exports["cxl_bus_type"].namespace == "CXL" and exports["cxl_bus_type"].crc == 0
    assert exports["dm_bm_read_lock"].namespace == ""
    src = load_source(str(DATA / "Module.symvers"))
    assert src.kind is SourceKind.SYMVERS and not src.tables
    idx = SymbolIndex.from_sources([src, load_source(str(DATA / "Symbols.list"))])
    assert export_of(idx, "printk").crc is None  # from a __ksymtab_ mark
    assert export_of(idx, "_printk").crc == 0x6C2E2A8A


def test_module_symvers_errors() -> None:
    with pytest.raises(KlpLdError, match=r"^klp-ld: error: Module.symvers:2: "):
        parse_module_symvers("0x1\ta\tvmlinux\tEXPORT_SYMBOL\t\nbogus line\n", "Module.symvers")
    with pytest.raises(KlpLdError, match="CRC is not hexadecimal"):
        parse_module_symvers("0xzz\ta\tvmlinux\tEXPORT_SYMBOL\t\n", "Module.symvers")


# --- object names -----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "message"), [
    ("zfs.ko", "object name 'zfs.ko' is a file name; the kernel calls this module 'zfs' (mod->name)"),
    ("abc-xyz.ko.xz", "object name 'abc-xyz.ko.xz' is a file name; the kernel calls this module 'abc_xyz'"),
    ("dm-persistent-data", "object name 'dm-persistent-data' is not the kernel's module name: mod->name "
                           "uses '_' for '-', so write 'dm_persistent_data'"),
    ("a.b", "contains '.'"),
    ("x" * 56, "has 56 characters; the kernel allows at most 55"),
    ("", "empty object name"),
    ("a b", "contains a blank"),
])
def test_objname_spellings_the_kernel_would_never_match(raw: str, message: str) -> None:
    with pytest.raises(KlpLdError) as exc:
        normalize_objname(raw)
    assert message in str(exc.value)


def test_objname_valid() -> None:
    assert normalize_objname("vmlinux") == VMLINUX
    assert normalize_objname("kvm_intel") == "kvm_intel"
    assert normalize_objname("x" * 55) == "x" * 55


# --- vmlinux ELF --------------------------------------------------------------------------------


@needs_tools
def test_vmlinux_positions_match_nm_n(built: dict[str, Path]) -> None:
    path = built["vmlinux"]
    src = load_source(str(path))
    assert src.kind is SourceKind.VMLINUX
    nm = subprocess.run(["nm", "-n", str(path)], check=True, capture_output=True, text=True).stdout
    expected = [int(line.split()[0], 16) for line in nm.splitlines() if line.endswith(" state_show")]
    idx = SymbolIndex.from_sources([src])
    cands = idx.candidates(VMLINUX, "state_show")
    assert [c.address for c in cands] == expected and len(expected) == 3
    assert [(c.type, c.file) for c in cands] == [("t", "b.c"), ("t", "c.c"), ("d", "a.c")]
    # the fixture is only meaningful if .symtab order differs from address order
    readelf = subprocess.run(["readelf", "-sW", str(path)], check=True, capture_output=True, text=True)
    in_symtab = [int(line.split()[1], 16) for line in readelf.stdout.splitlines()
                 if line.endswith(" state_show")]
    assert in_symtab != expected and sorted(in_symtab) == expected
    assert resolved(idx.resolve(VMLINUX, "state_show", 3)).candidate.file == "a.c"
    names = set(table_of(src, VMLINUX).names)
    assert "abs_symbol" not in names and "__kstrtab_exported_fn" not in names
    assert {"foo.isra.0", "foo.cold", "__ksymtab_exported_fn", "_start"} <= names
    assert idx.export("exported_fn") is None  # exports come from Module.symvers or Symbols.list
    p = problem(idx.resolve(VMLINUX, "state_show", 0))
    assert "KLP_SYMPOS(state_show, 3)  /* " in p.notes[2] and p.notes[2].endswith(" d, vmlinux, a.c */")


@needs_tools
def test_stripped_vmlinux_is_explained(built: dict[str, Path], tmp_path: Path) -> None:
    stripped = tmp_path / "vmlinux"
    subprocess.run(["strip", "-o", str(stripped), str(built["vmlinux"])], check=True)
    with pytest.raises(KlpLdError, match=r"has no \.symtab"):
        load_source(str(stripped))


# --- modules --------------------------------------------------------------------------------------


@needs_tools
def test_module_counts_in_symtab_order_both_load_orders(built: dict[str, Path]) -> None:
    src = load_source(str(built["ko"]))
    assert src.kind is SourceKind.MODULE and src.release == "6.1.0-test"
    assert src.objects() == ("fake_mod",)
    idx = SymbolIndex.from_sources([src])
    cands = idx.candidates("fake_mod", "state_show")
    assert [(c.section, c.address, c.position, c.full_position, c.core) for c in cands] == [
        (".text.x", 0x40, 1, 1, True), (".init.text", 0, None, 2, False), (".text", 0, 2, 3, True)]
    got = resolved(idx.resolve("fake_mod", "state_show", 1)).candidate
    assert (got.section, got.address, got.file) == (".text.x", 0x40, "m1.c")


@needs_tools
def test_module_position_differs_between_load_orders(built: dict[str, Path]) -> None:
    idx = index_of(built["ko"])
    p = problem(idx.resolve("fake_mod", "state_show", 2))
    assert p.code == "sympos-module-paths"
    assert p.message == (
        "KLP_SYMPOS(state_show, 2) means different symbols in module fake_mod: if fake_mod is already "
        "loaded when the patch loads, it selects state_show at .text+0x0 (the kernel counts only symbols "
        "kept after init); if fake_mod loads after the patch, it selects state_show at .init.text+0x0 "
        "(the kernel also counts init and non-allocated sections); positions valid for both: "
        "KLP_SYMPOS(state_show, 1) (.text.x+0x40)")
    assert p.suggestions == ("1",)
    assert p.notes[:3] == (
        "KLP_SYMPOS(state_show, 1)  /* .text.x+0x40 t, fake_mod, m1.c */",
        "no KLP_SYMPOS reaches this state_show once fake_mod is loaded  /* .init.text+0x0 t, fake_mod, "
        "m2.c; position 2 only while fake_mod is still loading */",
        "KLP_SYMPOS(state_show, 2)  /* .text+0x0 t, fake_mod, m3.c; position 3 if fake_mod loads after "
        "the patch */")
    p3 = problem(idx.resolve("fake_mod", "state_show", 3))
    assert p3.code == "sympos-module-paths" and "it does not exist (2 copies)" in p3.message
    p0 = problem(idx.resolve("fake_mod", "state_show", 0))
    assert p0.code == "sympos-ambiguous"
    assert p0.message == ("state_show is ambiguous in fake_mod (2 copies; 3 while fake_mod is still "
                          "loading); position 0 needs a unique name: positions valid in both load "
                          "orders: 1")
    p4 = problem(idx.resolve("fake_mod", "state_show", 4))
    assert p4.message == ("state_show has 2 copies in fake_mod (3 while it is still loading); "
                          "position 4 does not exist")


@needs_tools
def test_module_duplicates_outside_core(built: dict[str, Path]) -> None:
    idx = index_of(built["ko"])
    # dup_meta: once in .text, once in .modinfo (the loader clears its SHF_ALLOC)
    p = problem(idx.resolve("fake_mod", "dup_meta", 0))
    assert p.code == "sympos-module-paths"
    assert "finds no" not in p.message and "is ambiguous (2 copies)" in p.message
    assert "no position selects the same dup_meta in both cases" in p.message
    # only in .init.text: gone once the module is loaded
    p = problem(idx.resolve("fake_mod", "init_only", 0))
    assert "it finds no init_only" in p.message
    assert resolved(idx.resolve("fake_mod", "pcpu_counter", 0)).candidate.core  # per-CPU is core
    assert resolved(idx.resolve("fake_mod", "unique_fn", 0)).candidate.section == ".text"
    assert export_of(idx, "exported_fn").objname == "fake_mod"


@needs_tools
def test_module_name_from_file_without_modinfo(built: dict[str, Path]) -> None:
    src = load_source(str(built["no_modinfo"]))
    assert src.objects() == ("no_modinfo",) and src.release is None


@needs_tools
@pytest.mark.parametrize("suffix", [".ko.xz", ".ko.gz"])
def test_compressed_modules(built: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    raw = built["ko"].read_bytes()
    packed = lzma.compress(raw, check=lzma.CHECK_CRC32) if suffix == ".ko.xz" else gzip.compress(raw)
    path = tmp_path / f"fake-mod{suffix}"
    path.write_bytes(packed)
    src = load_source(str(path))
    plain = load_source(str(built["ko"]))
    assert src.kind is SourceKind.MODULE and src.objects() == ("fake_mod",)
    assert src.tables[0].names == plain.tables[0].names and src.tables[0].core == plain.tables[0].core
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(KlpLdError, match="corrupt compressed data"):
        load_source(str(path))


# --- reading a source ----------------------------------------------------------------------------


def _limit_memory() -> None:
    """Run before the child: were the source read without bound, it ends in a MemoryError here
    instead of in the machine's OOM killer."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "directory"])
def test_a_source_that_is_not_a_file_is_one_clean_error(tmp_path: Path, toolchain: Toolchain,
                                                        kind: str) -> None:
    """`--klp-symbols=/dev/zero` read until memory ran out; a FIFO blocked the link forever."""
    if kind == "/dev/zero":
        source = kind
    elif kind == "fifo":
        source = str(tmp_path / "fifo")
        os.mkfifo(source)
    else:
        source = str(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD_")}
    env.update(KLP_LD_PYTHON=sys.executable, XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run([str(WRAPPER), f"--klp-symbols={source}", "-r", "-o", "m.o",
                           str(toolchain.build("seed_a.c"))], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, preexec_fn=_limit_memory, check=False)
    assert (done.returncode, done.stderr.splitlines()) == (1, [
        f"klp-ld: error: {source}: cannot read symbol source: not a regular file (a symbol source is a "
        "kallsyms dump, System.map, vmlinux, module or Module.symvers file)"])
    assert not (tmp_path / "m.o").exists()


def test_reading_a_source_stops_past_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "System.map"
    path.write_bytes((DATA / "System.map").read_bytes())
    size = path.stat().st_size
    assert read_source_bytes(str(path), limit=size) == path.read_bytes()
    with pytest.raises(KlpLdError, match=rf"^klp-ld: error: {re.escape(str(path))}: cannot read symbol "
                                         rf"source: {size} bytes, more than the {size - 1} "):
        read_source_bytes(str(path), limit=size - 1)
    # /proc files say size 0 whatever they hold: the limit must hold while reading, too.
    with pytest.raises(KlpLdError, match=r"^klp-ld: error: /proc/self/maps: cannot read symbol source: it "
                                         r"holds more than 64 bytes"):
        read_source_bytes("/proc/self/maps", limit=64)


def test_module_lookup_is_not_mixed_with_vmlinux() -> None:
    idx = index_of(DATA / "kallsyms.txt")
    assert len(idx.candidates(VMLINUX, "state_show")) == 5
    assert len(idx.candidates("dummy", "state_show")) == 1


@needs_tools
def test_cross_check_with_loaded_module(built: dict[str, Path]) -> None:
    ko = load_source(str(built["ko"]))
    agree = parse_kallsyms("ffffffffc0000040 t state_show\t[fake_mod]\n"
                           "ffffffffc0000000 t state_show\t[fake_mod]\n", "/proc/kallsyms")
    idx = SymbolIndex.from_sources([agree, ko], [("/proc/kallsyms", "fake_mod")])
    assert table_of(idx, "fake_mod").kind is SourceKind.MODULE
    assert resolved(idx.resolve("fake_mod", "state_show", 1)).candidate.section == ".text.x"
    disagree = parse_kallsyms("ffffffffc0000040 t state_show\t[fake_mod]\n", "/proc/kallsyms")
    p = problem(SymbolIndex.from_sources([ko, disagree]).resolve("fake_mod", "state_show", 1))
    assert p.code == "sources-disagree"
    assert p.message == (f"symbol sources disagree about state_show in fake_mod: {built['ko']} has 2 "
                         "core copies, /proc/kallsyms has 1; positions cannot be trusted")


# --- automatic resolution ------------------------------------------------------------------------


@needs_tools
def test_lookup_unannotated(built: dict[str, Path]) -> None:
    idx = SymbolIndex.from_sources([load_source(str(built["ko"])), load_source(str(DATA / "kallsyms.txt")),
                                    load_source(str(DATA / "Module.symvers"))])
    for name in ("__this_module", "init_module", "cleanup_module"):
        look = idx.lookup_unannotated(name)
        assert look.skipped is not None and look.unique() is None and look.problem() is None
    own = idx.lookup_unannotated("unique_fn", own={"unique_fn"})
    assert own.skipped == "unique_fn is defined by the patch module itself"
    assert idx.lookup_unannotated("unique_fn").unique() == ("fake_mod", 0)
    assert idx.lookup_unannotated("saved_command_line").unique() == (VMLINUX, 0)
    assert idx.lookup_unannotated("_printk").export is not None
    assert idx.lookup_unannotated("no_such_symbol").definitions == ()
    look = idx.lookup_unannotated("state_show")
    assert look.objects == ("fake_mod", VMLINUX, "dummy")
    p = look.problem()
    assert p is not None and p.code == "unannotated-ambiguous"
    assert p.message == ("state_show is not exported and not annotated, and it is not unique: fake_mod "
                         "(2 copies; 3 while fake_mod is still loading), vmlinux (5 copies), dummy "
                         "(1 copy); annotate it with KLP_SYMPOS in KLP_MODULE_RELOC(<object>)")
    assert len(p.notes) == 3 + 5 + 1
    assert p.notes[3] == ("KLP_MODULE_RELOC(vmlinux): KLP_SYMPOS(state_show, 1)  "
                          f"/* {STATE_SHOW[0]:016x} t, vmlinux */")
    init_only = idx.lookup_unannotated("init_only")
    assert init_only.unique() is None
    init_problem = init_only.problem()
    assert init_problem is not None and init_problem.message == (
        "init_only is defined in fake_mod only in .init.text, which the kernel frees or never loads: "
        "a patch cannot reach it once fake_mod is loaded")
    assert idx.lookup_unannotated("dup_meta").unique() is None


# --- format detection and robustness ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [
    ("kallsyms.txt", SourceKind.KALLSYMS), ("System.map", SourceKind.SYSTEM_MAP),
    ("Symbols.list", SourceKind.SYMBOLS_LIST), ("Module.symvers", SourceKind.SYMVERS)])
def test_detect_text_formats(name: str, kind: SourceKind) -> None:
    assert detect_format((DATA / name).read_bytes(), "src") is kind


def test_detect_by_content_when_names_say_nothing() -> None:
    sysmap = (DATA / "System.map").read_bytes()
    assert detect_format(sysmap, "symbols.txt") is SourceKind.SYSTEM_MAP
    kallsyms = b"ffffffff81000000 T _text\nffffffffc0000000 t x\t[mod]\n"
    assert detect_format(kallsyms, "symbols.txt") is SourceKind.KALLSYMS
    assert detect_format(gzip.compress(kallsyms), "dump.gz") is SourceKind.KALLSYMS
    assert parse_source(gzip.compress(kallsyms), "dump.gz").objects() == (VMLINUX, "mod")


@pytest.mark.parametrize("data", [b"", b"\n\n", b"hello world\n", b"\x7fELF\x02\x01"])
def test_unknown_formats(data: bytes) -> None:
    with pytest.raises(KlpLdError):
        parse_source(data, "mystery")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(KlpLdError, match=r"mystery: cannot read symbol source"):
        load_source(str(tmp_path / "mystery"))


_line = st.one_of(
    st.text(max_size=60),
    st.builds(lambda a, t, n, m: f"{a} {t} {n}{m}", st.text("0123456789abcdefx-", max_size=18),
              st.text(max_size=2), st.text(max_size=12), st.sampled_from(["", "\t[mod]", "\t[", " [x] y"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, max_size=8))
def test_text_parsers_raise_only_klp_errors(lines: list[str]) -> None:
    text = "\n".join(lines)
    for parse in (parse_kallsyms, parse_system_map, parse_symbols_list):
        with contextlib.suppress(KlpLdError):
            parse(text, "fuzz")
    for head in ("", "klp-convert-symbol-data.0.1\n", "0x1\ta\tb\tc\n"):
        with contextlib.suppress(KlpLdError):
            parse_source((head + text).encode("utf-8", "surrogatepass"), "fuzz")
    with contextlib.suppress(KlpLdError):
        parse_module_symvers(text.replace(" ", "\t"), "fuzz")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"", b"\x7fELF\x02\x01\x01", b"\xfd7zXZ\x00", b"\x1f\x8b",
                                                 b"\x28\xb5\x2f\xfd"]))
def test_random_bytes_raise_only_klp_errors(data: bytes, magic: bytes) -> None:
    with contextlib.suppress(KlpLdError):
        parse_source(magic + data, "fuzz.ko")


@needs_tools
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_truncated_or_damaged_elf_raises_only_klp_errors(built: dict[str, Path], data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(["vmlinux", "ko"]))
    raw = bytearray(built[which].read_bytes())
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if which == "ko" and data.draw(st.booleans()):
        raw = bytearray(lzma.compress(bytes(raw)))
    with contextlib.suppress(KlpLdError):
        parse_source(bytes(raw), f"fuzz-{which}")


def test_btf_only_vmlinux_is_not_a_symbol_source(tmp_path: Path) -> None:
    """Debian's 6.12 headers ship a vmlinux with .BTF and a few symbols, but no code."""
    src = tmp_path / "btf.s"
    src.write_text('.section .BTF,"a"\n.globl btf_sym\nbtf_sym:\n.long 0\n')
    obj, exe = tmp_path / "btf.o", tmp_path / "vmlinux"
    subprocess.run(["as", "-o", str(obj), str(src)], check=True)
    subprocess.run(["ld", "-e", "0", "-o", str(exe), str(obj)], check=True)
    with pytest.raises(KlpLdError, match="no code sections \\(a BTF-only vmlinux\\)"):
        parse_vmlinux(exe.read_bytes(), str(exe))
