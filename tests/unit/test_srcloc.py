"""Source locations in diagnostics: `func+0xoff` from the symbol table, as objtool prints it, and
`>>> referenced by FILE:LINE (FUNCTION)` from the DWARF line table, as lld prints it.

testdata/objects/srcloc.c and srcloc.h mark each site with a `site: NAME` comment; the expected
line is that comment's line. pyelftools may only be imported when a message needs a source line.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from klp_ld.diag import Diagnostic, error
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf, read_elf_file
from klp_ld.elf.write import write_elf
from klp_ld.srcloc import LocatedDiagnostic, annotate

from .conftest import KERNEL_CFLAGS, OBJECTS, ROOT, Toolchain, run_klp_ld

# One .text for every function, so that a site at `.text+0x13` reads `srcloc_abs+0x3`.
CFLAGS = [f for f in KERNEL_CFLAGS if f != "-ffunction-sections"]
# function -> (file of its site, marker): srcloc_outer's site is in the inline function of srcloc.h.
SITES = {
    "srcloc_abs": ("srcloc.c", "srcloc_abs"),
    "srcloc_call": ("srcloc.c", "srcloc_call"),
    "srcloc_outer": ("include/srcloc.h", "srcloc_inline"),
}
# How each object is compiled: the debug option, and whether gcc runs in another directory and is
# given absolute paths, as kbuild runs it for an M= module (the line table names files absolutely).
BUILDS = {
    "dwarf5": (["-gdwarf-5"], False),
    "dwarf4": (["-gdwarf-4"], False),
    "absolute": (["-g"], True),
    "nodebug": ([], False),
}


def marker_line(source: str, marker: str) -> int:
    """The line of the `site: MARKER` comment in a fixture source."""
    lines = (OBJECTS / Path(source).name).read_text().splitlines()
    found = [n for n, text in enumerate(lines, 1) if f"/* site: {marker} */" in text]
    assert len(found) == 1, f"{source}: {len(found)} markers for {marker}"
    return found[0]


@pytest.fixture(scope="module")
def srcdir(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """srcloc.c with its headers, srcloc.h in an include directory, compiled once per BUILDS entry."""
    d = tmp_path_factory.mktemp("srcloc")
    (d / "include").mkdir()
    (d / "elsewhere").mkdir()
    for name, place in (("srcloc.c", "srcloc.c"), ("klp.h", "klp.h"), ("srcloc.h", "include/srcloc.h")):
        shutil.copy(OBJECTS / name, d / place)
    for build, (debug, absolute) in BUILDS.items():
        where, top = (d / "elsewhere", f"{d}/") if absolute else (d, "")
        subprocess.run([toolchain.gcc, "-c", *CFLAGS, *debug, f"-I{top}include", "-o", str(d / f"{build}.o"),
                        f"{top}srcloc.c"], cwd=where, check=True, capture_output=True)
    return d


def text_sites(obj: ElfObject) -> dict[str, int]:
    """function -> offset in .text of its reference to state_show."""
    text = obj.section(".text")
    assert text is not None
    out = {}
    for target, rela in obj.relocs_against():
        if target is text and rela.symbol is not None and rela.symbol.name == "state_show":
            owner = max((s for s in obj.symbols if s.section is text and s.name and s.value <= rela.offset),
                        key=lambda s: s.value)
            out[owner.name] = rela.offset
    assert set(out) == set(SITES)
    return out


def symbol_value(obj: ElfObject, name: str) -> int:
    return next(s.value for s in obj.symbols if s.name == name)


def site_errors(display: str, offsets: dict[str, int], notes: tuple[str, ...] = ()) -> list[Diagnostic]:
    return [error("site is 1 byte into the immediate", code="site-encoding", obj=display, section=".text",
                  offset=off, symbol="state_show", notes=notes) for off in offsets.values()]


@pytest.mark.parametrize("build", ["dwarf5", "dwarf4", "absolute"])
def test_a_site_in_an_object_built_with_g_names_its_source_line(srcdir: Path, build: str) -> None:
    data = (srcdir / f"{build}.o").read_bytes()
    obj = read_elf(data, "a.o")
    assert obj.section(".rela.debug_line") is not None
    offsets = text_sites(obj)
    out = annotate(data, "a.o", site_errors("a.o", offsets))
    for (function, off), diag in zip(offsets.items(), out, strict=True):
        source, marker = SITES[function]
        shown = str(srcdir / source) if BUILDS[build][1] else source
        assert diag.render().splitlines() == [
            f"klp-ld: error: a.o: {function}+{off - symbol_value(obj, function):#x}: state_show: site is 1 "
            "byte into the immediate",
            f">>> referenced by {shown}:{marker_line(source, marker)} ({function})",
        ]


def test_the_location_is_the_symbol_that_covers_the_site(srcdir: Path) -> None:
    """`srcloc_abs+0x3`, not `.text+0x13`; the JSON report keeps the exact section and offset."""
    data = (srcdir / "nodebug.o").read_bytes()
    obj = read_elf(data, "a.o")
    off = text_sites(obj)["srcloc_abs"]
    assert off > symbol_value(obj, "srcloc_abs") > 0
    (diag,) = annotate(data, "a.o", site_errors("a.o", {"srcloc_abs": off}))
    assert isinstance(diag, LocatedDiagnostic)
    assert diag.location() == f"a.o: srcloc_abs+{off - symbol_value(obj, 'srcloc_abs'):#x}: state_show"
    assert diag.as_json() == {"severity": "error", "code": "site-encoding", "obj": "a.o", "section": ".text",
                              "offset": off, "symbol": "state_show",
                              "message": "site is 1 byte into the immediate"}


def test_an_object_without_debug_information_gives_no_note(srcdir: Path) -> None:
    data = (srcdir / "nodebug.o").read_bytes()
    obj = read_elf(data, "a.o")
    assert obj.section(".debug_line") is None
    out = annotate(data, "a.o", site_errors("a.o", text_sites(obj), notes=("decoded: mov",)))
    assert [d.notes for d in out] == [("decoded: mov",)] * len(SITES)
    assert all(d.render().startswith("klp-ld: error: a.o: srcloc_") for d in out)


def test_a_site_no_symbol_covers_keeps_its_section(tmp_path: Path) -> None:
    src = tmp_path / "d.s"
    src.write_text('\t.section .data.p,"aw"\n\t.quad 0\n'
                   '\t.section .data.q,"aw"\n\t.type q,@object\nq:\n\t.quad 0, 0\n\t.size q, 16\n'
                   '\t.text\n\t.globl f\n\t.type f,@function\nf:\n\tnop\n\tret\n\t.size f, .-f\n')
    subprocess.run(["as", "-o", str(tmp_path / "d.o"), str(src)], check=True)
    data = (tmp_path / "d.o").read_bytes()
    diags = [error("m", obj="d.o", section=s, offset=o, symbol="x") for s, o in
             ((".data.p", 0), (".data.q", 8), (".text", 1), (".nosuch", 4))]
    diags.append(error("m", obj="d.o", section=".data.q"))
    diags.append(error("m", obj="other.o", section=".text", offset=1))
    shown = [d.render() for d in annotate(data, "d.o", diags)]
    assert shown == ["klp-ld: error: d.o: .data.p+0x0: x: m", "klp-ld: error: d.o: q+0x8: x: m",
                     "klp-ld: error: d.o: f+0x1: x: m", "klp-ld: error: d.o: .nosuch+0x4: x: m",
                     "klp-ld: error: d.o: .data.q: m", "klp-ld: error: other.o: .text+0x1: m"]


def _corrupt(data: bytes, section: str, fill: int | None = None, at: int = 0, value: bytes = b"") -> bytes:
    obj = read_elf(data, "a.o")
    sec = obj.section(section)
    assert sec is not None and sec.file_offset is not None
    out = bytearray(data)
    if fill is not None:
        out[sec.file_offset:sec.file_offset + len(sec.data)] = bytes([fill]) * len(sec.data)
    out[sec.file_offset + at:sec.file_offset + at + len(value)] = value
    return bytes(out)


CORRUPTIONS = {
    ".debug_line filled with 0xff": (".debug_line", 0xFF, 0, b""),
    ".debug_line filled with zeros": (".debug_line", 0x00, 0, b""),
    ".debug_line line_range 0": (".debug_line", None, 16, b"\x00"),
    ".debug_line unit length past the end": (".debug_line", None, 0, b"\xf0\xff\xff\x7f"),
    ".debug_info filled with 0xff": (".debug_info", 0xFF, 0, b""),
    ".debug_info address size 3": (".debug_info", None, 7, b"\x03"),
    ".debug_abbrev filled with 0xff": (".debug_abbrev", 0xFF, 0, b""),
    ".debug_line_str filled with 0xff": (".debug_line_str", 0xFF, 0, b""),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_dwarf_costs_the_note_and_nothing_else(srcdir: Path, case: str) -> None:
    good = (srcdir / "dwarf5.o").read_bytes()
    offsets = text_sites(read_elf(good, "a.o"))
    data = _corrupt(good, *CORRUPTIONS[case])
    before = site_errors("a.o", offsets, notes=("decoded: mov",))
    after = annotate(data, "a.o", before)
    for old, new in zip(before, after, strict=True):
        assert (new.severity, new.message, new.code, new.section, new.offset, new.symbol) == \
            (old.severity, old.message, old.code, old.section, old.offset, old.symbol)
        assert new.notes == old.notes
        assert new.render().startswith("klp-ld: error: a.o: srcloc_")


def test_an_unreadable_object_leaves_the_diagnostics_as_they_are() -> None:
    diags = site_errors("a.o", {"f": 0x13})
    assert annotate(b"\x7fELF", "a.o", diags) == diags


def test_annotating_twice_adds_nothing(srcdir: Path) -> None:
    data = (srcdir / "dwarf5.o").read_bytes()
    once = annotate(data, "a.o", site_errors("a.o", text_sites(read_elf(data, "a.o"))))
    assert annotate(data, "a.o", once) == once
    assert all(len(d.notes) == 1 for d in once)


@pytest.fixture(scope="module")
def debug_ko(srcdir: Path, toolchain: Toolchain) -> Path:
    """A module linked from the -g object as kbuild links one: the partial link, then the final."""
    shutil.copy(OBJECTS / "module.lds", srcdir / "module.lds")
    partial = run_klp_ld(["-r", "-o", "lp.o", "dwarf5.o"], srcdir)
    assert partial.returncode == 0, partial.stderr
    final = run_klp_ld(["-r", "-T", "module.lds", "-o", "m.ko", "lp.o", str(toolchain.build("modinfo.c"))],
                       srcdir)
    assert final.returncode == 0, final.stderr
    ko = srcdir / "m.ko"
    assert read_elf_file(str(ko)).section(".rela.debug_line") is not None
    return ko


def _shifted(ko: Path, function: str) -> Path:
    """The module with the livepatch relocation of `function`'s site moved one byte on."""
    model = read_elf_file(str(ko))
    klp = next(s for s in model.sections if s.name == ".klp.rela.vmlinux..text")
    start = symbol_value(model, function)
    rela = min((r for r in klp.relocs if r.offset > start), key=lambda r: r.offset)
    rela.offset += 1
    out = ko.with_name(f"{function}-broken.ko")
    out.write_bytes(write_elf(model))
    return out


def test_check_names_the_source_line_of_a_broken_site_in_a_module(debug_ko: Path) -> None:
    broken = _shifted(debug_ko, "srcloc_abs")
    result = run_klp_ld(["check", broken.name], broken.parent)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.splitlines()
    errors = [n for n, x in enumerate(lines) if x.startswith(f"klp-ld: error: {broken.name}: srcloc_abs+0x")]
    assert errors, result.stderr
    note = f">>> referenced by srcloc.c:{marker_line('srcloc.c', 'srcloc_abs')} (srcloc_abs)"
    assert all(lines[n + 1] == note for n in errors), result.stderr
    assert ".klp.sym.vmlinux.state_show,2: " in lines[errors[0]]


PROBE = """
import sys
from klp_ld.diag import error
from klp_ld.srcloc import annotate
{setup}
assert "klp_ld.srcloc" in sys.modules
print("elftools" in sys.modules)
"""


def _loads_pyelftools(setup: str) -> bool:
    done = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


@pytest.mark.parametrize(("case", "setup"), [
    ("no diagnostics", "annotate(open({o!r}, 'rb').read(), 'a.o', [])"),
    ("no site", "annotate(open({o!r}, 'rb').read(), 'a.o', [error('m', obj='a.o', section='.text')])"),
    ("a data site", "annotate(open({o!r}, 'rb').read(), 'a.o', "
                    "[error('m', obj='a.o', section='.klp.module_relocs.vmlinux', offset=0)])"),
    ("another object", "annotate(open({o!r}, 'rb').read(), 'a.o', [error('m', obj='b.o', section='.text', "
                       "offset=0x13)])"),
    ("no debug information", "annotate(open({n!r}, 'rb').read(), 'a.o', "
                             "[error('m', obj='a.o', section='.text', offset=0x13)])"),
])
def test_pyelftools_is_not_imported_without_a_message_that_needs_it(srcdir: Path, case: str,
                                                                     setup: str) -> None:
    code = setup.format(o=str(srcdir / "dwarf5.o"), n=str(srcdir / "nodebug.o"))
    assert not _loads_pyelftools(code), case
    # the control: a site in code of an object with a line table is what needs it
    needed = "annotate(open({o!r}, 'rb').read(), 'a.o', [error('m', obj='a.o', section='.text', offset=1)])"
    assert _loads_pyelftools(needed.format(o=str(srcdir / "dwarf5.o")))


def test_check_loads_pyelftools_only_for_a_module_with_a_site_problem(debug_ko: Path) -> None:
    check = "from klp_ld.check import check_module_file\nlines, found = check_module_file({k!r})"
    assert not _loads_pyelftools(check.format(k=str(debug_ko)))
    assert _loads_pyelftools(check.format(k=str(_shifted(debug_ko, "srcloc_call"))))


def test_a_final_link_names_the_source_line_of_a_refused_site(tmp_path: Path, toolchain: Toolchain) -> None:
    """An assembly source assembled with -g has a line table too: the refused R_X86_64_32 is on line 5."""
    src = tmp_path / "s.s"
    src.write_text('\t.section .text.f,"ax"\n\t.globl f\n\t.type f,@function\nf:\n'
                   '\tmovl $".klp.sym.vmlinux.state_show,2", %eax\n\tret\n\t.size f, .-f\n')
    subprocess.run(["as", "-g", "-o", str(tmp_path / "s.o"), str(src)], cwd=tmp_path, check=True)
    shutil.copy(OBJECTS / "module.lds", tmp_path / "module.lds")
    result = run_klp_ld(["-r", "-T", "module.lds", "-o", "m.ko", "s.o", str(toolchain.build("modinfo.c"))],
                        tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    at = next(n for n, x in enumerate(lines) if "R_X86_64_32 " in x)
    assert lines[at].startswith("klp-ld: error: m.ko: f+0x1: .klp.sym.vmlinux.state_show,2: "), result.stderr
    assert lines[at + 1] == f">>> referenced by {src}:5 (f)", result.stderr
