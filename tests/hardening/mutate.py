"""Structure-aware mutations of x86_64 ELF relocatable objects and of symbol-source text.

Shared by the hypothesis properties (tests/hardening/test_fuzz_properties.py) and the long campaign
(benchmarks/fuzz_campaign.py). Every mutator takes the original object's layout, parsed here with
`struct` independently of klp_ld's reader, so a bug in the reader cannot hide the inputs that trip
it. A mutator aims at one thing a corrupt or hostile object can get wrong: a truncated file, an
offset or size past the end, a string index outside its table, a relocation past its section, a
symbol index out of range, an annotation section whose size is not a whole number of records, a
malformed livepatch name.

The random source is any `random.Random`: hypothesis passes one it controls (`st.randoms()`), the
campaign a seeded one, so a campaign finding is reproduced from (seed file, seed number).
"""

from __future__ import annotations

import contextlib
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
SHDR = struct.Struct("<IIQQQQIIQQ")
SYM = struct.Struct("<IBBHQQ")
RELA = struct.Struct("<QQq")

SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_GROUP = 2, 3, 4, 8, 17
SHN_LIVEPATCH, SHN_ABS, SHN_COMMON = 0xFF20, 0xFFF1, 0xFFF2

# Offsets of the e_* fields in the ELF header that a mutation may hit, with their widths.
EHDR_FIELDS = {
    "e_ident[EI_CLASS]": (4, 1), "e_ident[EI_DATA]": (5, 1), "e_type": (16, 2), "e_machine": (18, 2),
    "e_version": (20, 4), "e_phoff": (32, 8), "e_shoff": (40, 8), "e_flags": (48, 4),
    "e_ehsize": (52, 2), "e_phnum": (56, 2), "e_shentsize": (58, 2), "e_shnum": (60, 2),
    "e_shstrndx": (62, 2),
}
# Offsets within a section header.
SHDR_FIELDS = {
    "sh_name": (0, 4), "sh_type": (4, 4), "sh_flags": (8, 8), "sh_addr": (16, 8), "sh_offset": (24, 8),
    "sh_size": (32, 8), "sh_link": (40, 4), "sh_info": (44, 4), "sh_addralign": (48, 8),
    "sh_entsize": (56, 8),
}
SYM_FIELDS = {"st_name": (0, 4), "st_info": (4, 1), "st_other": (5, 1), "st_shndx": (6, 2),
              "st_value": (8, 8), "st_size": (16, 8)}

NAME_CHARS = ".,0123456789_-+ azAZ\x00\xff/%*"


@dataclass
class Header:
    index: int
    at: int          # file offset of the header itself
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int

    @property
    def end(self) -> int:
        return self.offset + (0 if self.type == SHT_NOBITS else self.size)


@dataclass
class Layout:
    """Where things are in a well-formed seed object."""

    size: int
    shoff: int
    shnum: int
    shstrndx: int
    headers: list[Header] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes) -> Layout:
        (_, _, _, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx) = EHDR.unpack_from(data, 0)
        lay = cls(len(data), shoff, shnum, shstrndx)
        raw = [SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
        names = raw[shstrndx] if shstrndx < shnum else None
        for i, (name, type_, flags, _addr, offset, size, link, info, _align, entsize) in enumerate(raw):
            text = ""
            if names is not None:
                start = names[4] + name
                end = data.find(b"\0", start)
                text = data[start:end].decode("latin-1") if end >= 0 else ""
            lay.headers.append(Header(i, shoff + i * shentsize, text, type_, flags, offset, size, link, info,
                                      entsize))
        return lay

    def of_type(self, sh_type: int) -> list[Header]:
        return [h for h in self.headers if h.type == sh_type]

    @property
    def symtab(self) -> Header | None:
        found = self.of_type(SHT_SYMTAB)
        return found[0] if found else None

    @property
    def strtab(self) -> Header | None:
        sym = self.symtab
        return self.headers[sym.link] if sym is not None and sym.link < self.shnum else None

    @property
    def annotations(self) -> list[Header]:
        return [h for h in self.headers if h.name.startswith(".klp.module_relocs.") and h.type != SHT_RELA]

    def rela_for(self, target: Header) -> Header | None:
        for h in self.of_type(SHT_RELA):
            if h.info == target.index:
                return h
        return None

    def strings(self, table: Header | None, data: bytes) -> list[tuple[int, int]]:
        """(file offset, length) of every non-empty string in a string table."""
        if table is None:
            return []
        out = []
        pos = table.offset
        end = table.offset + table.size
        while pos < end:
            stop = data.find(b"\0", pos, end)
            if stop < 0:
                break
            if stop > pos:
                out.append((pos, stop - pos))
            pos = stop + 1
        return out


Mutator = Callable[[bytearray, Layout, random.Random], bytearray]


def interesting(rnd: random.Random, width: int, around: tuple[int, ...] = ()) -> int:
    """A value that tends to hit an edge: 0, 1, powers of two, all ones, or near a given number."""
    bits = width * 8
    pool = [0, 1, 2, 3, 4, 7, 8, 11, 12, 13, 16, 23, 24, 25, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000,
            0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]
    for a in around:
        pool.extend(a + d for d in (-24, -12, -8, -4, -1, 0, 1, 4, 8, 12, 24))
    if rnd.random() < 0.15:
        return rnd.getrandbits(bits)
    return rnd.choice(pool) % (1 << bits)


def _put(buf: bytearray, at: int, width: int, value: int) -> None:
    if at >= 0 and at + width <= len(buf):
        buf[at:at + width] = (value % (1 << (width * 8))).to_bytes(width, "little")


def _get(buf: bytearray, at: int, width: int) -> int:
    if at >= 0 and at + width <= len(buf):
        return int.from_bytes(buf[at:at + width], "little")
    return 0


def truncate(buf: bytearray, lay: Layout, rnd: random.Random) -> bytearray:
    """Cut the file: anywhere, inside the ELF header, at or inside a section or the header table."""
    points = [rnd.randrange(max(1, len(buf))), 63, 64, 65, lay.shoff, lay.shoff + 1]
    for h in rnd.sample(lay.headers, min(3, len(lay.headers))):
        points += [h.offset, h.offset + 1, h.end - 1, h.at + 10, h.at + 63]
    cut = rnd.choice([p for p in points if 0 <= p < len(buf)] or [0])
    return buf[:cut]


def ehdr_field(buf: bytearray, lay: Layout, rnd: random.Random) -> bytearray:
    name = rnd.choice(list(EHDR_FIELDS))
    at, width = EHDR_FIELDS[name]
    _put(buf, at, width, interesting(rnd, width, (lay.shnum, lay.shoff, lay.shstrndx, len(buf), 64)))
    return buf


def _pick_header(lay: Layout, rnd: random.Random) -> Header:
    favoured = [h for h in lay.headers if h.type in (SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_GROUP)
                or h.name.startswith(".klp.")]
    if favoured and rnd.random() < 0.6:
        return rnd.choice(favoured)
    return rnd.choice(lay.headers)


def shdr_field(buf: bytearray, lay: Layout, rnd: random.Random) -> bytearray:
    """A bad offset, size, link, info, type, alignment or entry size in one section header."""
    h = _pick_header(lay, rnd)
    name = rnd.choice(list(SHDR_FIELDS))
    at, width = SHDR_FIELDS[name]
    around = (lay.shnum, h.size, h.offset, len(buf), len(buf) - h.offset, h.index)
    _put(buf, h.at + at, width, interesting(rnd, width, around))
    return buf


def sym_field(buf: bytearray, lay: Layout, rnd: random.Random) -> bytearray:
    """A bad string index, section index, binding, type or value in one symbol."""
    sym = lay.symtab
    if sym is None or sym.size < SYM.size:
        return ehdr_field(buf, lay, rnd)
    count = sym.size // SYM.size
    at = sym.offset + rnd.randrange(count) * SYM.size
    name = rnd.choice(list(SYM_FIELDS))
    off, width = SYM_FIELDS[name]
    strtab = lay.strtab
    around: tuple[int, ...] = (lay.shnum, strtab.size if strtab else 0, SHN_LIVEPATCH, SHN_ABS, SHN_COMMON)
    if name == "st_info" and rnd.random() < 0.7:
        value = rnd.choice((0, 1, 2, 3, 4, 10)) | rnd.choice((0, 1, 2, 10)) << 4
    else:
        value = interesting(rnd, width, around)
    _put(buf, at + off, width, value)
    return buf


def rela_field(buf: bytearray, lay: Layout, rnd: random.Random) -> bytearray:
    """A relocation past its section, against a symbol that does not exist, of an odd type or addend."""
    relas = [h for h in lay.of_type(SHT_RELA) if h.size >= RELA.size]
    if not relas:
        return sym_field(buf, lay, rnd)
    h = rnd.choice(relas)
    at = h.offset + rnd.randrange(h.size // RELA.size) * RELA.size
    target = lay.headers[h.info] if h.info < lay.shnum else None
    nsym = (lay.symtab.size // SYM.size) if lay.symtab else 0
    what = rnd.choice(("offset", "symbol", "type", "addend", "swap"))
    if what == "offset":
        _put(buf, at, 8, interesting(rnd, 8, (target.size if target else 0,)))
    elif what == "symbol":
        r_info = _get(buf, at + 8, 8)
        _put(buf, at + 8, 8, interesting(rnd, 4, (nsym,)) << 32 | (r_info & 0xFFFFFFFF))
    elif what == "type":
        r_info = _get(buf, at + 8, 8)
        r_type = rnd.choice((0, 1, 2, 4, 9, 10, 11, 24, 42, 43, 0xFF, rnd.getrandbits(32)))
        _put(buf, at + 8, 8, (r_info & ~0xFFFFFFFF) | r_type)
    elif what == "addend":
        _put(buf, at + 16, 8, interesting(rnd, 8, (0, 4, -4 % (1 << 64))))
    else:  # copy one relocation over another: two relocations at one site
        other = h.offset + rnd.randrange(h.size // RELA.size) * RELA.size
        buf[at:at + RELA.size] = buf[other:other + RELA.size]
    return buf


def annotation(buf: bytearray, lay: Layout, rnd: random.Random) -> bytearray:
    """Odd record counts, bad positions and misplaced relocations in `.klp.module_relocs.*`."""
    anns = lay.annotations
    if not anns:
        return names(buf, lay, rnd)
    h = rnd.choice(anns)
    rela = lay.rela_for(h)
    what = rnd.choice(("size", "size", "sympos", "reloc", "reloc", "norelocs"))
    if what == "size":   # not a whole number of 12-byte records, or a size reaching into what follows
        _put(buf, h.at + 32, 8, max(0, h.size + rnd.choice((-13, -12, -11, -8, -4, -1, 1, 4, 8, 11, 12, 13))))
    elif what == "sympos" and h.size >= 12:
        record = h.offset + rnd.randrange(h.size // 12) * 12
        _put(buf, record + 8, 4, rnd.choice((0, 1, 2, 5, 6, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)))
    elif what == "reloc" and rela is not None and rela.size >= RELA.size:
        at = rela.offset + rnd.randrange(rela.size // RELA.size) * RELA.size
        field_ = rnd.choice(("offset", "type", "addend", "symbol"))
        if field_ == "offset":
            _put(buf, at, 8, _get(buf, at, 8) + rnd.choice((-12, -8, -4, -1, 1, 4, 8, 12, h.size)))
        elif field_ == "type":
            r_info = _get(buf, at + 8, 8)
            _put(buf, at + 8, 8, (r_info & ~0xFFFFFFFF) | rnd.choice((0, 2, 4, 10, 11, 24)))
        elif field_ == "addend":
            _put(buf, at + 16, 8, rnd.choice((4, 8, -4 % (1 << 64), 1 << 40)))
        else:
            nsym = (lay.symtab.size // SYM.size) if lay.symtab else 1
            r_info = _get(buf, at + 8, 8)
            _put(buf, at + 8, 8, rnd.randrange(max(1, nsym + 2)) << 32 | (r_info & 0xFFFFFFFF))
    elif rela is not None:   # records left without the relocations that name their symbols
        _put(buf, rela.at + 32, 8, rnd.choice((0, RELA.size, max(0, rela.size - RELA.size))))
    return buf


def names(buf: bytearray, lay: Layout, rnd: random.Random) -> bytearray:
    """Damage a symbol or section name, preferring the livepatch ones: `.klp.sym.*`, `.klp.sym.rela.*`,
    `.klp.module_relocs.*`; a bad position, a missing separator, a name running into the next one."""
    tables = [t for t in (lay.strtab, lay.headers[lay.shstrndx] if lay.shstrndx < lay.shnum else None) if t]
    if not tables:
        return buf
    table = rnd.choice(tables)
    strings = lay.strings(table, bytes(buf))
    if not strings:
        return buf
    klp = [s for s in strings if bytes(buf[s[0]:s[0] + 5]) == b".klp."]
    start, length = rnd.choice(klp if klp and rnd.random() < 0.75 else strings)
    what = rnd.choice(("char", "char", "digits", "terminator", "cut", "table-end"))
    if what == "char":
        buf[start + rnd.randrange(length)] = ord(rnd.choice(NAME_CHARS))
    elif what == "digits":   # a position that overflows, goes negative or is not a number
        text = bytes(buf[start:start + length])
        for sep in (b",", b"."):
            cut = text.rfind(sep)
            if cut >= 0 and cut + 1 < length:
                tail = length - cut - 1
                filler = rnd.choice((b"9", b"-", b"x", b"0", b" "))
                buf[start + cut + 1:start + length] = (filler * tail)[:tail]
                break
    elif what == "terminator":   # runs into the next string (or past the table)
        buf[start + length] = ord(rnd.choice("xy.,"))
    elif what == "cut":
        buf[start + rnd.randrange(1, length + 1) - 1] = 0
    else:
        end = table.offset + table.size - 1
        if 0 <= end < len(buf):
            buf[end] = ord("z")
    return buf


def flip_bytes(buf: bytearray, lay: Layout, rnd: random.Random) -> bytearray:
    """A few bytes anywhere, or a run of 0x00/0xff, biased towards the tables."""
    if not buf:
        return buf
    tables = [h for h in lay.headers if h.type in (SHT_SYMTAB, SHT_RELA, SHT_STRTAB) and h.size]
    if tables and rnd.random() < 0.6:
        h = rnd.choice(tables)
        lo, hi = h.offset, min(h.end, len(buf))
    else:
        lo, hi = 0, len(buf)
    if hi <= lo:
        return buf
    if rnd.random() < 0.7:
        for _ in range(rnd.randint(1, 8)):
            buf[rnd.randrange(lo, hi)] = rnd.getrandbits(8)
    else:
        at = rnd.randrange(lo, hi)
        run = rnd.randint(1, 64)
        buf[at:at + run] = bytes([rnd.choice((0, 0xFF))]) * len(buf[at:at + run])
    return buf


def splice(buf: bytearray, lay: Layout, rnd: random.Random) -> bytearray:
    """Copy one chunk of the file over another (a header over a table, a table over a header)."""
    if len(buf) < 16:
        return buf
    size = rnd.choice((8, 24, 64, 128))
    src = rnd.randrange(len(buf))
    dst = rnd.choice([h.at for h in lay.headers] + [rnd.randrange(len(buf))])
    chunk = buf[src:src + size]
    buf[dst:dst + len(chunk)] = chunk
    return buf


# Names a patch author (or a corrupt object) could produce, for `rename`.
_PREFIXES = (".klp.sym.", ".klp.sym.rela.", ".klp.", ".klp.sym.vmlinux.", ".klp.sym.rela.vmlinux.", "")
_OBJNAMES = ("vmlinux", "dummy", "dummy-net", "x" * 56, "x" * 55, "", "a.b", "ext4", "VMLINUX")
_SYMNAMES = ("state_show", "a" * 511, "a" * 512, "", "foo.isra.0", "bar.cold", "ä", "x,y", "1abc", " ")
_SEPS = (",", ".", ",,", "", ", ")
_POSITIONS = ("2", "0", "1", "-1", "99999999999999999999999", "x", "", "0x2", " 3", "٣")


def identity_like(rnd: random.Random) -> str:
    """A string shaped like a livepatch identity, often malformed."""
    prefix = rnd.choice(_PREFIXES)
    parts = [rnd.choice(_OBJNAMES)]
    if prefix.startswith(".klp.sym.rela") or rnd.random() < 0.2:
        parts.append(rnd.choice(_OBJNAMES))
    name = prefix + ".".join(parts) + "." + rnd.choice(_SYMNAMES) + rnd.choice(_SEPS) + rnd.choice(_POSITIONS)
    return name if rnd.random() < 0.9 else name[: rnd.randrange(len(name) + 1)]


def rename(buf: bytearray, lay: Layout, rnd: random.Random) -> bytearray:
    """Give a symbol or an annotation section an identity-shaped name (through klp_ld's writer)."""
    from klp_ld.diag import KlpLdError
    from klp_ld.elf.read import read_elf
    from klp_ld.elf.write import write_elf

    try:
        obj = read_elf(bytes(buf), "mutant")
    except KlpLdError:
        return names(buf, lay, rnd)
    if rnd.random() < 0.7:
        candidates = [s for s in obj.symbols[1:] if s.name and (s.is_undefined or rnd.random() < 0.2)]
        if not candidates:
            return buf
        sym = rnd.choice(candidates)
        sym.name = identity_like(rnd)
        sym.name_offset = None
    else:
        secs = [s for s in obj.sections if s.name.startswith(".klp.module_relocs.") and not s.is_rela]
        if not secs:
            return buf
        sec = rnd.choice(secs)
        sec.name = ".klp.module_relocs." + rnd.choice((*_OBJNAMES, "", "a/b", "vmlinux.x"))
        sec.name_offset = None
        rsec = obj.rela_for(sec)
        if rsec is not None:
            rsec.name = ".rela" + sec.name
            rsec.name_offset = None
    try:
        return bytearray(write_elf(obj))
    except KlpLdError:
        return buf


MUTATORS: dict[str, Mutator] = {
    "truncate": truncate, "ehdr": ehdr_field, "shdr": shdr_field, "sym": sym_field, "rela": rela_field,
    "annotation": annotation, "names": names, "flip": flip_bytes, "splice": splice, "rename": rename,
}
# Relative weights: structure-aware mutations dominate, blind ones keep the rest honest.
WEIGHTS = {"truncate": 1, "ehdr": 1, "shdr": 3, "sym": 3, "rela": 3, "annotation": 4, "names": 3, "flip": 2,
           "splice": 1, "rename": 2}


def mutate(seed: bytes, rnd: random.Random, count: int | None = None,
           only: tuple[str, ...] | None = None) -> tuple[bytes, list[str]]:
    """Apply 1-3 (or `count`) mutations to a copy of `seed`; returns the mutant and their names."""
    lay = Layout.parse(seed)
    buf = bytearray(seed)
    pool = list(only or MUTATORS)
    weights = [WEIGHTS[m] for m in pool]
    applied = []
    for _ in range(count if count is not None else rnd.choice((1, 1, 1, 2, 2, 3))):
        name = rnd.choices(pool, weights)[0]
        buf = MUTATORS[name](buf, lay, rnd)
        applied.append(name)
        if name == "rename" and bytes(buf[:4]) == b"\x7fELF":
            # the writer laid the file out anew: aim the next mutations at the new layout
            with contextlib.suppress(struct.error, IndexError, OverflowError):
                lay = Layout.parse(bytes(buf))
    return bytes(buf), applied


# ---------------------------------------------------------------------------------------------
# Text sources: kallsyms, System.map, Symbols.list, Module.symvers


_TYPES = "TtDdBbRrWwVvAaUuNn?C"


def random_line(rnd: random.Random, fmt: str) -> str:
    """One plausible or broken line of a symbol source, in the given format's shape."""
    addr = rnd.choice(("ffffffff81000000", "0", "0000000000000000", "-1", "xyz", "f" * 17, "f" * 40, "",
                       "0x10", "1_0", "ffffffff8" + "1" * rnd.randint(0, 9)))
    kind = rnd.choice(_TYPES) if rnd.random() < 0.9 else rnd.choice(("TT", "", "é", "\t"))
    name = rnd.choice(("state_show", "a" * rnd.randint(0, 600), "__pfx_state_show", "x y", "é", "\x00",
                       "foo.isra.0", "__ksymtab_printk", "__crc_x", "$x", "init_module"))
    module = rnd.choice(("", " [dummy]", " [dummy", " []", " [a b]", " [__builtin__ftrace]", " [bpf]",
                         " [" + "m" * 70 + "]"))
    if fmt == "symvers":
        crc = rnd.choice(("0x6c2e2a8a", "0x", "zz", "-0x1", "0x" + "f" * 20, ""))
        fields = [crc, name, rnd.choice(("vmlinux", "drivers/net/dummy", "", "a\tb")),
                  rnd.choice(("EXPORT_SYMBOL", "EXPORT_SYMBOL_GPL", ""))]
        if rnd.random() < 0.3:
            fields.append(rnd.choice(("CXL", "")))
        if rnd.random() < 0.1:
            fields.append("extra")
        return "\t".join(fields[: rnd.randint(1, len(fields))] if rnd.random() < 0.2 else fields)
    if fmt == "symbols-list":
        return rnd.choice(("*vmlinux", "*", "* ", "*drivers/net/dummy.ko", "*a b", name, name + " x", ""))
    line = f"{addr} {kind} {name}{module if fmt == 'kallsyms' else ''}"
    if rnd.random() < 0.1:
        line = line.replace(" ", rnd.choice(("\t", "  ", "")))
    return line


# ---------------------------------------------------------------------------------------------
# Command-line shapes: the same link spelled every way ld reads it, around real objects


@dataclass(frozen=True)
class Entry:
    """A file the run directory holds before the link.

    kind: "copy" (of a seed named by `source`), "text" (`source` is the contents), "dir", "fifo",
    "chardev" (a private /dev/null), "symlink" / "hardlink" (to `source`), "ar" / "thin-ar" (an
    archive of the `members`, made with `ar rcs` / `ar rcsT`).
    """

    path: str
    kind: str
    source: str = ""
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shape:
    """One command line and the files it needs. `output` is the file ld writes (a.out without
    -o); `final` is a link klp-ld must convert (-T module.lds, -o X.ko); `sides` are the side
    outputs ld writes (-Map, --dependency-file); `klp` are klp-ld's own options, given first."""

    entries: tuple[Entry, ...]
    args: tuple[str, ...]
    output: str
    final: bool
    inputs: tuple[str, ...] = ()  # the seeds linked, however they are spelled
    sides: tuple[str, ...] = ()
    klp: tuple[str, ...] = ()
    traits: tuple[str, ...] = ()


_ODD_NAMES = ("with space.o", "it's.o", 'dq"x.o', "back\\slash.o", "-dash.o", "@at.o", "tab\tx.o")
_OUTPUT_SPELLINGS = (("-o", ""), ("-o", "attached"), ("--output", "="), ("--output", ""),
                     ("--outp", "="), ("--outpu", ""))
_RELOCATABLE = (("-r",), ("--relocatable",), ("-i",), ("-S", "-r"), ("-Sr",), ("--relo",), ("-relocatable",))
_SCRIPT_SPELLINGS = (("-T", ""), ("-T", "attached"), ("--script", "="), ("--scr", ""))
_HARMLESS = (("-m", "elf_x86_64"), ("-z", "noexecstack"), ("--no-warn-rwx-segments",), ("-melf_x86_64",),
             ("--build-id=sha1",), ("-X",))


def _spell(option: str, how: str, value: str) -> list[str]:
    if how == "attached":
        return [option + value]
    if how == "=":
        return [f"{option}={value}"]
    return [option, value]


def command_shape(rnd: random.Random, objects: tuple[str, ...], annotated: tuple[str, ...],
                  final_inputs: tuple[str, ...], *, can_mknod: bool = False) -> Shape:
    """A random but well-understood command line: which files are inputs, where the output goes,
    and how each is spelled (response files nested, recursive and quoted; archives plain and thin
    with --whole-archive; outputs that are missing directories, FIFOs, devices, inputs, long names).

    `objects` are seed objects for partial links (`annotated` among them carry annotations);
    `final_inputs` the partial-link output and the .mod.o of a module, linked with module.lds.
    """
    entries: list[Entry] = []
    traits: list[str] = []
    final = rnd.random() < 0.3
    inputs: list[str] = []
    named: list[tuple[str, str]] = []  # (seed, the argument that names it)
    pool = list(final_inputs) if final else rnd.sample(objects, rnd.randint(1, min(3, len(objects))))
    if not final and rnd.random() < 0.5:
        pool = [o for o in pool if o not in annotated] or pool  # often nothing to do: a pass-through
    for name in pool:
        dice = rnd.random()
        if dice < 0.15:
            odd = rnd.choice(_ODD_NAMES)
            entries.append(Entry(odd, "copy", name))
            inputs.append(odd)
            named.append((name, odd))
            traits.append("odd-name")
        elif dice < 0.35 and not final:
            kind = rnd.choice(("ar", "thin-ar"))
            lib = f"lib{len(entries)}{name.replace('.', '_')}.a"
            entries.append(Entry(lib, kind, members=(name,)))
            whole = rnd.random() < 0.7
            spelled = ["--whole-archive", lib, "--no-whole-archive"] if whole else [lib]
            if rnd.random() < 0.25:
                spelled = ["-L.", f"-l:{lib}"] if not whole else ["-L.", "--whole-archive", f"-l:{lib}",
                                                                   "--no-whole-archive"]
                traits.append("library")
            inputs.extend(spelled)
            named.append((name, next(a for a in spelled if lib in a)))
            traits.append(f"{kind}{'-whole' if whole else ''}")
        else:
            inputs.append(name)
            named.append((name, name))
    args: list[str] = []
    for harmless in rnd.sample(_HARMLESS, rnd.randint(0, 2)):
        args.extend(harmless)
    args.extend(rnd.choice(_RELOCATABLE))
    if final:
        option, how = rnd.choice(_SCRIPT_SPELLINGS)
        args.extend(_spell(option, how, "module.lds"))

    # the output: its name, what is already there, how -o is spelled
    suffix = ".ko" if final else ".o"
    output = "out" + suffix
    kind = rnd.choices(("plain", "previous", "missing-dir", "fifo", "chardev", "input", "symlink-input",
                        "hardlink-input", "long", "too-long", "directory", "subdir", "none"),
                       (30, 8, 4, 4, 3 if can_mknod else 0, 4, 3, 3, 5, 2, 2, 4, 0 if final else 6))[0]
    traits.append(f"output-{kind}")
    if kind == "previous":
        entries.append(Entry(output, "text", "a previous output\n"))
    elif kind == "missing-dir":
        output = "nodir/" + output
    elif kind == "fifo":
        entries.append(Entry(output, "fifo"))
    elif kind == "chardev":
        entries.append(Entry(output, "chardev"))
    elif kind == "input":
        output = pool[0]
    elif kind in ("symlink-input", "hardlink-input"):
        entries.append(Entry(output, kind.split("-")[0], pool[0]))
    elif kind in ("long", "too-long"):
        output = "o" * (rnd.randint(200, 255) if kind == "long" else 256 - len(suffix)) + suffix
    elif kind == "directory":
        entries.append(Entry(output, "dir"))
    elif kind == "subdir":
        entries.append(Entry("sub", "dir"))
        output = "sub/" + output
    if kind == "none":
        output = "a.out"
    else:
        option, how = rnd.choice(_OUTPUT_SPELLINGS)
        args.extend(_spell(option, how, output))
    sides: list[str] = []
    if rnd.random() < 0.15:
        spelled, side = rnd.choice(((["-Map=%"], output + ".map"), (["-Map", "out.map"], "out.map"),
                                    (["--dependency-file=out.d"], "out.d")))
        args.extend(spelled)
        sides.append(side)
        traits.append("side-output")
    args.extend(inputs)
    linked = [seed for seed, _ in named]
    if rnd.random() < 0.1:
        at = rnd.randrange(len(args) + 1)
        args.insert(at, "--")
        # ld reads nothing after --; inputs come after the output, so look for each one's last mention
        linked = [seed for seed, arg in named if len(args) - 1 - args[::-1].index(arg) < at]
        traits.append("dashdash")

    # response files: a slice of the arguments, nested, recursive, quoted
    if rnd.random() < 0.5:
        start = rnd.randrange(len(args))
        end = rnd.randint(start + 1, len(args))
        inner = args[start:end]
        shape = rnd.choice(("flat", "flat", "nested", "recursive", "mutual", "empty", "dir", "missing"))
        traits.append(f"rsp-{shape}")
        if shape in ("flat", "nested"):
            if shape == "nested" and len(inner) > 1:
                cut = rnd.randrange(1, len(inner))
                entries.append(Entry("inner.rsp", "text", _rsp(rnd, inner[cut:])))
                inner = [*inner[:cut], "@inner.rsp"]
            entries.append(Entry("args.rsp", "text", _rsp(rnd, inner)))
            args[start:end] = ["@args.rsp"]
        elif shape == "recursive":
            entries.append(Entry("args.rsp", "text", _rsp(rnd, [*inner, "@args.rsp"])))
            args[start:end] = ["@args.rsp"]
        elif shape == "mutual":
            entries.append(Entry("args.rsp", "text", _rsp(rnd, [*inner, "@other.rsp"])))
            entries.append(Entry("other.rsp", "text", "@args.rsp\n"))
            args[start:end] = ["@args.rsp"]
        elif shape == "empty":
            entries.append(Entry("empty.rsp", "text", " \n\t"))
            args.insert(start, "@empty.rsp")
        elif shape == "dir":
            entries.append(Entry("rspdir", "dir"))
            args.insert(start, "@rspdir")
        else:
            args.insert(start, "@missing.rsp")
    klp = ("--dry-run",) if rnd.random() < 0.08 else ()
    if klp:
        traits.append("dry-run")
    return Shape(tuple(entries), tuple(args), output, final and output.endswith(".ko"), tuple(linked),
                 tuple(sides), klp, tuple(traits))


def _rsp(rnd: random.Random, args: list[str]) -> str:
    """A response file holding `args`, quoted one of the ways libiberty reads."""
    out = []
    for arg in args:
        if arg and not any(c in arg for c in " \t\n\v\f\r'\"\\") and rnd.random() < 0.7:
            out.append(arg)
        elif "'" not in arg and "\\" not in arg and rnd.random() < 0.5:
            out.append("'" + arg + "'")
        else:
            out.append('"' + "".join("\\" + c if c in '"\\' else c for c in arg) + '"')
    sep = rnd.choice((" ", "\n", "\t", "  \n"))
    return sep.join(out) + rnd.choice(("", "\n"))
