"""Turn an `ElfObject` back into bytes, in the records of `klp_ld.elf.layout` that the readers use.

Invariants the kernel, ld and objtool rely on:
- `.symtab` holds the null symbol, then every local, then the rest; `sh_info` is the first
  non-local index;
- every relocation, group and `sh_link`/`sh_info` reference is renumbered from the model's object
  references, so no index survives from the input;
- reserved section indices (SHN_ABS, SHN_COMMON, SHN_LIVEPATCH) are written as they are;
- from 65,280 sections on, ELF's extended numbering: the count and the section-name table index
  in section 0, SHN_XINDEX in `st_shndx` with the real index in the SHT_SYMTAB_SHNDX table
  (rebuilt from the symbols like `.symtab`, and added when an object first needs one);
- addends are signed 64-bit;
- the same model always gives the same bytes: layout follows section order, and string tables keep
  the input's offsets and append new names in first-use order.
"""

from __future__ import annotations

from klp_ld.elf.consts import (
    ELFMAG,
    SHN_LORESERVE,
    SHN_XINDEX,
    SHT_GROUP,
    SHT_NOBITS,
    SHT_NULL,
    SHT_RELA,
    SHT_SYMTAB,
    SHT_SYMTAB_SHNDX,
)
from klp_ld.elf.layout import EHDR_SIZE, RELA_SIZE, SHDR_SIZE, SYM_SIZE, WORD_SIZE
from klp_ld.elf.model import ElfObject, Section, ordered_symbols


class StringTable:
    """A string table that keeps every offset of the table it starts from and appends the rest."""

    def __init__(self, original: bytes = b"\0") -> None:
        self._data = bytearray(original if original.startswith(b"\0") else b"\0" + original)
        self._offsets: dict[bytes, int] = {}
        start = 0
        for piece in bytes(self._data).split(b"\0"):
            self._offsets.setdefault(piece, start)
            start += len(piece) + 1
        self._offsets[b""] = 0

    def offset(self, name: str, hint: int | None = None) -> int:
        key = name.encode("utf-8", "surrogateescape")
        if hint is not None and self._data.startswith(key + b"\0", hint):
            return hint
        found = self._offsets.get(key)
        if found is None:
            # Assemblers share tails (`.rela.text` ends in `.text`); reuse them to keep offsets.
            found = self._data.find(key + b"\0") if key else 0
            if found < 0:
                found = len(self._data)
                self._data += key + b"\0"
            self._offsets[key] = found
        return found

    def bytes(self) -> bytes:
        return bytes(self._data)


def _layout_key(sec: Section, index: int) -> tuple[int, int]:
    """Sections keep the order they had in the input file; new ones follow, in section order."""
    if sec.file_offset is None:
        return (1 << 64, index)
    return (sec.file_offset, index)


def _align(value: int, alignment: int) -> int:
    return value if alignment <= 1 else (value + alignment - 1) // alignment * alignment


def _with_extended_table(obj: ElfObject) -> list[Section]:
    """The sections to write: with an SHT_SYMTAB_SHNDX section added at the end when a symbol is
    defined in a section numbered SHN_LORESERVE or above and the object has no such table yet."""
    sections = obj.sections
    if len(sections) <= SHN_LORESERVE or obj.symtab is None:
        return sections
    if any(s.type == SHT_SYMTAB_SHNDX for s in sections):
        return sections
    high = {id(s) for s in sections[SHN_LORESERVE:]}
    if not any(id(sym.section) in high for sym in obj.symbols if sym.section is not None):
        return sections
    return [*sections, Section(".symtab_shndx", SHT_SYMTAB_SHNDX, addralign=WORD_SIZE, entsize=WORD_SIZE,
                                link=obj.symtab)]


def write_elf(obj: ElfObject) -> bytes:
    """Serialise `obj`; the caller decides where the bytes go (the writer never touches files)."""
    sections = _with_extended_table(obj)
    if not sections or sections[0].type != SHT_NULL:
        raise ValueError("the first section must be the null section")
    shndx_table = next((s for s in sections if s.type == SHT_SYMTAB_SHNDX), None)
    sec_index = {id(sec): i for i, sec in enumerate(sections)}

    def index_of(sec: Section | None) -> int:
        if sec is None:
            return 0
        try:
            return sec_index[id(sec)]
        except KeyError:
            raise ValueError(f"{obj.path}: reference to section {sec.name}, not in the object") from None

    # Bound once: CPython 3.11 compiles a method call on an imported name as an attribute load
    # and a call, which costs a tenth of the whole write in these per-record loops.
    layout = obj.layout
    pack_sym, pack_rela, pack_shdr = layout.sym.pack, layout.rela.pack, layout.shdr.pack
    pack_words = layout.pack_words
    symbols = ordered_symbols(obj.symbols)
    sym_index = {id(sym): i for i, sym in enumerate(symbols)}
    first_global = next((i for i, s in enumerate(symbols) if i and not s.is_local), len(symbols))

    contents: dict[int, bytes] = {}
    infos: dict[int, int] = {}
    shstrtab = StringTable(obj.shstrtab.data if obj.shstrtab is not None else b"\0")
    if obj.symtab is not None:
        shared = obj.symtab.link is not None and obj.symtab.link is obj.shstrtab
        strtab = shstrtab if shared else StringTable(obj.strtab_original)
        packed = bytearray()
        extended = [0] * len(symbols)
        for i, sym in enumerate(symbols):
            shndx = index_of(sym.section) if sym.section is not None else sym.special
            if sym.section is not None and shndx >= SHN_LORESERVE:
                extended[i], shndx = shndx, SHN_XINDEX
            packed += pack_sym(strtab.offset(sym.name, sym.name_offset), (sym.bind << 4) | sym.type,
                               sym.other, shndx, sym.value, sym.size)
        contents[id(obj.symtab)] = bytes(packed)
        if shndx_table is not None:
            contents[id(shndx_table)] = pack_words(extended)
        infos[id(obj.symtab)] = first_global
        if obj.symtab.link is not None and not shared:
            contents[id(obj.symtab.link)] = strtab.bytes()

    for sec in sections:
        if sec.type == SHT_RELA:
            packed = bytearray()
            for rela in sec.relocs:
                symndx = 0 if rela.symbol is None else sym_index[id(rela.symbol)]
                packed += pack_rela(rela.offset, (symndx << 32) | rela.type, rela.addend)
            contents[id(sec)] = bytes(packed)
            infos[id(sec)] = index_of(sec.info_section) if sec.info_section is not None else sec.info
        elif sec.type == SHT_GROUP:
            words = [sec.group_flags, *(index_of(m) for m in sec.members)]
            contents[id(sec)] = pack_words(words)
            infos[id(sec)] = sym_index[id(sec.info_symbol)] if sec.info_symbol is not None else 0

    name_offsets = [shstrtab.offset(sec.name, sec.name_offset) for sec in sections]
    if obj.shstrtab is not None:
        contents[id(obj.shstrtab)] = shstrtab.bytes()

    out = bytearray(EHDR_SIZE)
    placed: dict[int, tuple[int, int]] = {}
    for i in sorted(range(1, len(sections)), key=lambda i: _layout_key(sections[i], i)):
        sec = sections[i]
        body = contents.get(id(sec), sec.data)
        offset = _align(len(out), sec.addralign)
        if sec.file_offset is not None and len(out) <= sec.file_offset:
            # Where the input had it, when that overlaps nothing: binutils 2.46+ objcopy packs
            # sections below their alignment and leaves gaps and empty sections where they were.
            offset = sec.file_offset
        if sec.type != SHT_NOBITS and body:
            out += bytes(offset - len(out))
            out += body
        placed[i] = (offset, sec.nobits_size if sec.type == SHT_NOBITS else len(body))
    shstrndx = index_of(obj.shstrtab) if obj.shstrtab is not None else 0
    # Counts and indices that do not fit the 16-bit header fields go to section 0.
    e_shnum = len(sections) if len(sections) < SHN_LORESERVE else 0
    e_shstrndx = shstrndx if shstrndx < SHN_LORESERVE else SHN_XINDEX
    headers = [pack_shdr(0, SHT_NULL, 0, 0, 0, 0 if e_shnum else len(sections),
                         0 if e_shstrndx == shstrndx else shstrndx, 0, 0, 0)]
    for i, sec in enumerate(sections[1:], start=1):
        offset, size = placed[i]
        entsize = sec.entsize
        if sec.type == SHT_SYMTAB:
            entsize = SYM_SIZE
        elif sec.type == SHT_RELA:
            entsize = RELA_SIZE
        elif sec.type == SHT_SYMTAB_SHNDX:
            entsize = WORD_SIZE
        headers.append(pack_shdr(name_offsets[i], sec.type, sec.flags, sec.addr, offset, size,
                                 index_of(sec.link), infos.get(id(sec), sec.info), sec.addralign, entsize))
    shoff = _align(len(out), 8)
    out += bytes(shoff - len(out))
    for packed_header in headers:
        out += packed_header
    layout.ehdr.pack_into(out, 0, ELFMAG + obj.e_ident_tail, obj.e_type, obj.e_machine, obj.e_version, 0, 0,
                          shoff, obj.e_flags, EHDR_SIZE, 0, 0, SHDR_SIZE, e_shnum, e_shstrndx)
    return bytes(out)
