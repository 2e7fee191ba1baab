"""Fixtures of the cross-compiled architectures (ppc64le, arm64): the cross toolchain, built with
kbuild's module flags, and the objects read back with pyelftools for the site checks.

Each test file names its toolchain prefix, fixture directory, flags and text checker; what is
built and read is the same for every architecture.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from klp_ld.arch.sites import RelocSite, Severity, SiteCheck

from .conftest import ROOT, _need

INCLUDE = ROOT / "klp_ld" / "include"

CheckText = Callable[[bytes, str, list[tuple[int, int]], list[RelocSite]], list[SiteCheck]]


@dataclass
class Section:
    name: str
    data: bytes
    flags: int
    checker: CheckText
    func_at: dict[str, tuple[int, int]] = field(default_factory=dict)
    sites: list[RelocSite] = field(default_factory=list)

    def check(self, sites: list[RelocSite] | None = None) -> list[SiteCheck]:
        return self.checker(self.data, self.name, list(self.func_at.values()),
                            self.sites if sites is None else sites)

    def sites_in(self, func: str) -> list[RelocSite]:
        start, size = self.func_at[func]
        return [s for s in self.sites if start <= s.offset < start + size]


@dataclass
class Obj:
    path: Path
    sections: dict[str, Section]

    def case(self, name: str) -> Section:
        return next(sec for sec in self.sections.values() if name in sec.func_at)


def load(path: Path, checker: CheckText) -> Obj:
    """Section bytes, FUNC symbols and relocations, read with pyelftools (in the tests only)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    with path.open("rb") as fh:
        elf = ELFFile(fh)
        by_index = {idx: Section(s.name, s.data(), s["sh_flags"], checker)
                    for idx, s in enumerate(elf.iter_sections()) if s["sh_type"] == "SHT_PROGBITS"}
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        symbols = list(symtab.iter_symbols())
        for sym in symbols:
            shndx = sym["st_shndx"]
            if sym["st_info"]["type"] == "STT_FUNC" and isinstance(shndx, int) and shndx in by_index:
                by_index[shndx].func_at[sym.name] = (sym["st_value"], sym["st_size"])
        for rel in elf.iter_sections():
            if isinstance(rel, RelocationSection) and rel["sh_info"] in by_index:
                for r in rel.iter_relocations():
                    sym = symbols[r["r_info_sym"]]
                    is_sec = sym["st_info"]["type"] == "STT_SECTION"
                    label = elf.get_section(sym["st_shndx"]).name if is_sec else sym.name
                    by_index[rel["sh_info"]].sites.append(
                        RelocSite(r["r_offset"], r["r_info_type"], r["r_addend"], label, is_sec))
    for sec in by_index.values():
        sec.sites.sort(key=lambda s: s.offset)
    return Obj(path, {s.name: s for s in by_index.values()})


class Cross:
    """One cross toolchain; builds each fixture once per session. Missing, the tests skip, or fail
    under CI, naming the package to install."""

    def __init__(self, arch: str, prefix: str, package: str, directory: Path, fixtures: Path,
                 cflags: Sequence[str]) -> None:
        needed_for = f"the {arch} fixtures need it: apt-get install --no-install-recommends {package}"
        self.directory = directory
        self.fixtures = fixtures
        self.cflags = list(cflags)
        self.gcc = _need(prefix + "gcc", needed_for)
        self.ld = _need(prefix + "ld", needed_for)
        self.readelf = _need(prefix + "readelf", needed_for)

    def build(self, source: str, flags: list[str] | None = None, name: str | None = None) -> Path:
        out = self.directory / (name or Path(source).stem + ".o")
        if not out.exists():
            cmd = [self.gcc, "-c", *self.cflags, *(flags or []), "-I", str(self.fixtures / "include"),
                   "-I", str(INCLUDE), "-o", str(out), str(self.fixtures / source)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
        return out

    def assemble(self, name: str, text: str) -> Path:
        source = self.directory / f"{name}.s"
        source.write_text(text)
        out = self.directory / f"{name}.o"
        subprocess.run([self.gcc, "-c", "-o", str(out), str(source)], check=True)
        return out


def one(sec: Section, site: RelocSite) -> SiteCheck:
    """The check of a single site of `sec`."""
    (result,) = sec.check([site])
    return result


def case_check(obj: Obj, name: str) -> list[SiteCheck]:
    """The checks of the sites in the fixture function `name`."""
    sec = obj.case(name)
    found = sec.sites_in(name)
    assert found, f"{name} has no relocation"
    return sec.check(found)


def error_of(check: SiteCheck, *fragments: str) -> str:
    """An error's message, after checking it is one line holding every fragment."""
    assert not check.ok and not check.skipped, check
    assert check.problem is not None and check.problem.severity is Severity.ERROR
    return _has(check.problem.message, fragments)


def warning_of(check: SiteCheck, *fragments: str) -> str:
    """A warning's message, as `error_of`."""
    assert check.ok, check
    assert check.problem is not None and check.problem.severity is Severity.WARNING
    return _has(check.problem.message, fragments)


def _has(message: str, fragments: tuple[str, ...]) -> str:
    assert "\n" not in message
    for frag in fragments:
        assert frag in message, f"{frag!r} not in {message!r}"
    return message
