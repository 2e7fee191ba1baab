"""Where a site is for the person reading the diagnostic: `fa+0x1c`, and the C line behind it.

objtool names a place in code by the symbol that covers it (`fa+0x1c` rather than `.text+0x1c4`),
which stays meaningful when many functions share one section; lld adds the source line of a
reference on a `>>>` line. `annotate` does both for the diagnostics a stage has already made:

    klp-ld: error: m.ko: fa+0x1c: .klp.sym.vmlinux.jiffies,0: ...
    >>> referenced by net/foo.c:17 (fa)

The symbol comes from klp-ld's own reader; `section` and `offset` keep the exact place (the JSON
report carries those). The line comes from the object's DWARF line table, read with pyelftools,
which is imported here only, and only once a site lies in code and the object has `.debug_line`.

In a relocatable object (a `.o`, and a `.ko` too, which is the output of `ld -r`) every section
starts at address 0, and the line table reaches its code through relocations (`.rela.debug_line`).
pyelftools reads a copy in which they are applied as a linker would, with each SHF_ALLOC section
at an address of its own, which tells apart the rows of `.text`, `.text.unlikely` and
`.init.text`. klp-ld applies them itself, from the relocations its reader has already parsed:
pyelftools would take about 0.2 ms for each (a third of a second for a small module built with
`-g`). DWARF that pyelftools cannot read costs the note, never the diagnostic.
"""

from __future__ import annotations

import bisect
import io
import itertools
import posixpath
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from klp_ld.arch import arch_of
from klp_ld.diag import Diagnostic, KlpLdError
from klp_ld.elf.consts import SHN_ABS
from klp_ld.elf.model import ElfObject, Section, Symbol
from klp_ld.elf.read import read_elf

# Where the first SHF_ALLOC section is put, and the least room between two: far from the 0 (or -1)
# that ld leaves in the line table for code it discarded, and never one section's end at the next
# one's start.
_FIRST_ADDRESS = 1 << 20
_GAP = 1 << 12
# sh_flags: the section holds an Elf64_Chdr and compressed contents.
_SHF_COMPRESSED = 0x800
# The whole fields DWARF relocations write, by byte order and width (the architecture's
# `data_fields` say which types write one, and whether the value is PC-relative; a debug
# section's address is 0).
_FORMS = {order: {8: struct.Struct(order + "Q"), 4: struct.Struct(order + "I")} for order in "<>"}


@dataclass(frozen=True, slots=True)
class LocatedDiagnostic(Diagnostic):
    """A diagnostic at a site that a symbol covers, shown as `owner+0xoff` the way objtool does.

    `section` and `offset` still hold the exact place, for the JSON report and for a reader who
    wants the section.
    """

    owner: str = ""
    owner_offset: int = 0

    def location(self) -> str:
        parts = [self.obj, f"{self.owner}+{self.owner_offset:#x}", self.symbol]
        return ": ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class SourceLine:
    """One row of a DWARF line table: the file as the compiler named it, and the line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def annotate(data: bytes, display: str, diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    """`diagnostics`, each site in the object `display` located by the symbol that covers it and
    given a `referenced by FILE:LINE (FUNCTION)` note where the object's DWARF has the line.

    `data` is that object's contents (an ET_REL `.o` or `.ko`) with the sections and symbols the
    diagnostics refer to. Diagnostics about other files, and those without a section and an
    offset, come back unchanged, and so does everything when `data` cannot be read.
    """
    out = list(diagnostics)
    wanted = [i for i, d in enumerate(out) if d.obj == display and d.section is not None
              and d.offset is not None and not isinstance(d, LocatedDiagnostic)]
    if not wanted:
        return out
    try:
        obj = read_elf(data, display)
    except KlpLdError:
        return out  # whoever made the diagnostics has said what is wrong with the file
    sites: dict[int, tuple[Section, int]] = {}
    for i in wanted:
        sec = obj.section(out[i].section or "")
        offset = out[i].offset
        if sec is not None and offset is not None:
            sites[i] = (sec, offset)
    in_code = [(sec, offset) for sec, offset in sites.values() if sec.is_exec]
    has_lines = obj.section(".debug_line") is not None
    lines = source_lines(data, obj, in_code) if in_code and has_lines else {}
    for i, (sec, offset) in sites.items():
        diag = out[i]
        owner = obj.symbol_at(sec, offset)
        notes = diag.notes
        line = lines.get((id(sec), offset))
        if line is not None:
            referenced = f"referenced by {line}" + (f" ({owner[0].name})" if owner is not None else "")
            if referenced not in notes:
                notes = (referenced, *notes)
        if owner is None:
            out[i] = replace(diag, notes=notes)
        else:
            out[i] = LocatedDiagnostic(diag.severity, diag.message, diag.obj, diag.section, diag.offset,
                                       diag.symbol, diag.code, notes, owner[0].name, owner[1])
    return out


def source_lines(data: bytes, obj: ElfObject,
                 sites: Iterable[tuple[Section, int]]) -> dict[tuple[int, int], SourceLine]:
    """(id(section), offset) -> the source line of the instruction there, for each site whose
    line the DWARF in `data` (read into `obj`) gives; empty when it has none or cannot be read."""
    layout = _layout(obj)
    image = _debug_image(data, obj, layout)
    tables = _read_line_tables(image) if image is not None else None
    if not tables:
        return {}
    rows = sorted((row for table in tables for row in _rows(table)), key=lambda row: row[0])
    starts = [row[0] for row in rows]
    found: dict[tuple[int, int], SourceLine] = {}
    for sec, offset in sites:
        base = layout.get(id(sec))
        if base is None or not 0 <= offset < sec.size:
            continue
        address = base + offset
        at = bisect.bisect_right(starts, address) - 1
        if at >= 0 and address < rows[at][1]:
            found[(id(sec), offset)] = rows[at][2]
    return found


def _layout(obj: ElfObject) -> dict[int, int]:
    """id(section) -> the address given to each SHF_ALLOC section, one after the other."""
    layout: dict[int, int] = {}
    address = _FIRST_ADDRESS
    for sec in obj.sections:
        if sec.is_alloc:
            layout[id(sec)] = address
            address += -(-(sec.size + _GAP) // _GAP) * _GAP
    return layout


def _debug_image(data: bytes, obj: ElfObject, layout: dict[int, int]) -> bytes | None:
    """`data` with the relocations of its `.debug_*` sections applied in place, code at the
    addresses of `layout`; None when a debug section is compressed (its relocations apply to the
    uncompressed bytes, which have no place in the file)."""
    arch = arch_of(obj)
    forms = _FORMS[obj.layout.order]
    fields = {t: (forms[arch.widths[t]], pc) for t, pc in arch.data_fields.items() if arch.widths[t] in forms}
    image = bytearray(data)
    for rsec in obj.rela_sections():
        target = rsec.info_section
        if target is None or not target.name.startswith(".debug_") or target.file_offset is None:
            continue
        if target.flags & _SHF_COMPRESSED:
            return None
        for rela in rsec.relocs:
            field = fields.get(rela.type)
            if field is None:
                continue  # NONE, or a type DWARF does not use: the bytes stay as they are
            form, pc_relative = field
            if rela.offset + form.size > len(target.data):
                continue
            value = _address(rela.symbol, layout) + rela.addend - (rela.offset if pc_relative else 0)
            form.pack_into(image, target.file_offset + rela.offset, value & ((1 << (8 * form.size)) - 1))
    return bytes(image)


def _address(sym: Symbol | None, layout: dict[int, int]) -> int:
    """A symbol's address: in code or data, where `layout` put its section; in a debug section,
    its offset there; an absolute symbol's value; 0 for an undefined one."""
    if sym is None:
        return 0
    if sym.section is not None:
        return layout.get(id(sym.section), 0) + sym.value
    return sym.value if sym.special == SHN_ABS else 0


@dataclass(frozen=True, slots=True)
class _LineTable:
    """What one compilation unit's line program says."""

    version: int
    directories: tuple[str, ...]
    files: tuple[tuple[str, int], ...]  # (name, directory index)
    states: tuple[tuple[int, int, int, bool], ...]  # (address, file, line, end_sequence)


# What pyelftools raises on DWARF it cannot read besides its own errors: what its parsing lets
# through (a short read, a missing table entry or field, a zero line_range, a failed assertion),
# and NotImplementedError for the forms it does not read (DW_FORM_strx in a line table header).
_MALFORMED_DWARF = (struct.error, zlib.error, IndexError, KeyError, AttributeError, ValueError,
                    ArithmeticError, AssertionError, NotImplementedError)


def _read_line_tables(image: bytes) -> list[_LineTable] | None:
    """Every line program of the object (its debug sections already relocated); None when
    pyelftools is missing or the DWARF is malformed.

    Only pyelftools runs under the guard, copying out what it parsed; checking what was copied
    comes after it, so that a mistake of klp-ld's is never taken for a bad file.
    """
    try:
        from elftools.common.exceptions import DWARFError, ELFError
        from elftools.elf.elffile import ELFFile
    except ImportError:
        return None
    raw: list[tuple[Any, ...]] = []
    try:
        elf = ELFFile(io.BytesIO(image))
        if elf.get_section_by_name(".debug_info") is None:
            return None
        dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
        for unit in dwarf.iter_CUs():
            program = dwarf.line_program_for_CU(unit)
            if program is None:
                continue
            header = program.header
            raw.append((header.get("version"), list(header.get("include_directory") or ()),
                        [(f.get("name"), f.get("dir_index")) for f in header.get("file_entry") or ()],
                        [(e.state.address, e.state.file, e.state.line, e.state.end_sequence)
                         for e in program.get_entries() if e.state is not None]))
    except (ELFError, DWARFError, *_MALFORMED_DWARF):
        return None
    tables = [_line_table(*unit) for unit in raw]
    return [t for t in tables if t is not None]


def _line_table(version: Any, directories: list[Any], files: list[tuple[Any, Any]],
                states: list[tuple[Any, Any, Any, Any]]) -> _LineTable | None:
    """The copied line program, or None when a field is not what DWARF allows there."""
    names = [_text(d) for d in directories]
    entries = [(_text(name), index) for name, index in files]
    if not isinstance(version, int) or None in names or any(
            name is None or not isinstance(index, int) for name, index in entries):
        return None
    if not all(isinstance(a, int) and isinstance(f, int) and isinstance(n, int) for a, f, n, _ in states):
        return None
    return _LineTable(version, tuple(n for n in names if n is not None),
                      tuple((n, i) for n, i in entries if n is not None),
                      tuple((a, f, n, bool(end)) for a, f, n, end in states))


def _text(name: Any) -> str | None:
    """A name from a line table: pyelftools gives bytes (str for some forms in some versions)."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "surrogateescape")
    return name if isinstance(name, str) else None


def _rows(table: _LineTable) -> list[tuple[int, int, SourceLine]]:
    """(start, end, source line) for each address range of the table that has a line.

    A row holds from its address to the next row's; several rows at one address leave the last
    one in force, as addr2line reads them; line 0 means code with no source line.
    """
    rows: list[tuple[int, int, SourceLine]] = []
    for (address, file, line, end), (next_address, *_) in itertools.pairwise(table.states):
        if end or next_address <= address or line <= 0:
            continue
        path = _file_path(table, file)
        if path is not None:
            rows.append((address, next_address, SourceLine(path, line)))
    return rows


def _file_path(table: _LineTable, file: int) -> str | None:
    """The file as the compiler was given it: relative to the compilation directory unless the
    compiler saw it elsewhere (a header from an include directory, a source named absolutely)."""
    modern = table.version >= 5  # DWARF 5 counts files from 0; its directory 0 is the compilation dir
    index = file if modern else file - 1
    if not 0 <= index < len(table.files):
        return None
    name, dir_index = table.files[index]
    if not name:
        return None
    directory = ""
    if not posixpath.isabs(name) and dir_index > 0:
        position = dir_index if modern else dir_index - 1
        if position < len(table.directories):
            directory = table.directories[position]
    return posixpath.normpath(posixpath.join(directory, name))
