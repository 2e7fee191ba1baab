"""Read and write `ar` archives, so that the objects inside them are harvested like any other object.

`ld -r` merges an archive's members as it merges object files (`--whole-archive lib.a` brings in
every member, a plain `lib.a` the members its symbol index names), so each ELF member needs the
per-object treatment, and an archive with a rewritten member has to be written anew for ld.

Read: GNU/SysV archives (`/` and `/SYM64/` symbol indexes, the `//` long-name table) and BSD ones
(`#1/N` names, `__.SYMDEF*` indexes); plain (`!<arch>`) and thin (`!<thin>`, whose members are
files named relative to the archive's directory, or members of an archive it names, `/N:offset`).
Written: always a plain GNU archive. GNU ld reads no other index, and a plain copy refers to no
path, so it works from a temporary directory.

Parsing and writing are pure functions over frozen dataclasses. Files are touched only by
`is_archive_file` and `read_archive_file`; every malformation is one `KlpLdError` naming the
archive and the member.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

from klp_ld.cmdline import LIVEPATCH_MARKERS, LinkCommand, find_library, mentions_livepatch
from klp_ld.diag import Diagnostic, KlpLdError, error, fail
from klp_ld.elf.consts import ELFMAG
from klp_ld.elf.model import ElfObject, ordered_symbols

ARMAG = b"!<arch>\n"
THINMAG = b"!<thin>\n"
HEADER_SIZE = 60
_FMAG = b"`\n"
_HEADER = struct.Struct("16s12s6s6s8s10s2s")
GNU_INDEX = "/"
GNU_INDEX64 = "/SYM64/"
LONG_NAMES = "//"
_BSD_INDEXES = ("__.SYMDEF", "__.SYMDEF SORTED", "__.SYMDEF_64", "__.SYMDEF_64 SORTED")
# Members whose data a thin archive holds itself.
_IN_THIN = (GNU_INDEX, GNU_INDEX64, LONG_NAMES)
# A short GNU name is `name/` in the 16-byte field; longer ones go to the `//` table.
_SHORT_NAME_MAX = 15
# A thin archive may name archives (thin ones too); a cycle has to end in an error.
MAX_NESTING = 8
_MAX_MEMBER_SIZE = 10**10 - 1  # what the 10-digit size field holds
_MAX_OFFSET32 = 0xFFFFFFFF

# Reads one of a thin archive's members: its path relative to the archive's directory -> bytes.
# It raises OSError; the parser reports that against the archive and member.
Loader = Callable[[str], bytes]


@dataclass(frozen=True, slots=True)
class Member:
    """One member and its bytes, whether the archive holds them or (thin) names a file.

    `name` is the name the archive stores: for a thin member, its path relative to the archive's
    directory. `display` is how GNU ld names the member in messages: `lib.a(foo.o)`, and for a thin
    member the path of the file (`dir/foo.o`). `symbols` are what the input's index lists for the
    member; the writer keeps them for members nobody reads as ELF. `date`, `uid`, `gid` and `mode`
    are the header's text fields, written back unchanged.
    """

    name: str
    display: str
    data: bytes
    symbols: tuple[str, ...] = ()
    date: str = "0"
    uid: str = "0"
    gid: str = "0"
    mode: str = "644"

    @property
    def is_elf(self) -> bool:
        return self.data.startswith(ELFMAG)


@dataclass(frozen=True, slots=True)
class Archive:
    """The members in order. `indexed`: the input had a symbol index, so a rewrite gets one too
    (an archive without one is one ld refuses to search, and a copy must not change that)."""

    display: str
    thin: bool
    indexed: bool
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class _Header:
    offset: int       # of the header: what index entries and `/N:offset` names point at
    raw_name: bytes
    date: str
    uid: str
    gid: str
    mode: str
    size: int
    body: int         # where the data starts (a thin member's data is not in the archive)


def is_archive(head: bytes) -> bool:
    return head.startswith((ARMAG, THINMAG))


def is_archive_file(path: str, display: str) -> bool:
    """Whether `path` starts like an archive; a missing file is ld's to report, in its own words."""
    try:
        with open(path, "rb") as f:
            return is_archive(f.read(len(ARMAG)))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}", obj=display) from None


def read_archive_file(path: str, display: str) -> Archive:
    """Read the archive at `path` and, when it is thin, the files its members name."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}", obj=display) from None
    base = os.path.dirname(path)

    def load(name: str) -> bytes:
        with open(os.path.join(base, name), "rb") as f:
            return f.read()

    return parse_archive(data, display, load)


def parse_archive(data: bytes, display: str, load: Loader | None = None) -> Archive:
    """Parse `data`, an archive ld knows as `display`; `load` reads a thin archive's members."""
    return _parse(data, display, load, 0)[0]


def _parse(data: bytes, display: str, load: Loader | None,
           depth: int) -> tuple[Archive, tuple[int, ...]]:
    """The archive and each member's header offset, by which a thin archive names a nested member."""
    thin = data.startswith(THINMAG)
    if not thin and not data.startswith(ARMAG):
        raise fail("not an archive: no !<arch> or !<thin> magic", obj=display)
    if thin and load is None:
        raise ValueError("a thin archive needs a loader for its members")
    long_names: bytes | None = None
    index: dict[int, list[str]] = {}
    indexed = False
    members: list[Member] = []
    offsets: list[int] = []
    nested: dict[str, tuple[Archive, tuple[int, ...]]] = {}
    for position, hdr in enumerate(_headers(data, display, thin)):
        name, origin, skip = _name(hdr, data, long_names, thin, display)
        where = f"{display}({name})"
        is_index = name in (GNU_INDEX, GNU_INDEX64) or (not thin and name in _BSD_INDEXES)
        if (not thin or name in _IN_THIN) and hdr.body + hdr.size > len(data):
            raise fail(f"member is cut off: its header at {hdr.offset:#x} gives {hdr.size} bytes, the "
                       f"archive has {max(len(data) - hdr.body, 0)} after it", obj=where)
        body = data[hdr.body + skip:hdr.body + hdr.size]
        if is_index:
            # The index is the first member; ld looks for it nowhere else.
            if position == 0:
                indexed = True
                index = _parse_index(name, body, where)
            continue
        if name == LONG_NAMES:
            long_names = body
            continue
        offsets.append(hdr.offset)
        symbols = tuple(index.get(hdr.offset, ()))
        if not thin:
            members.append(Member(name, where, body, symbols, hdr.date, hdr.uid, hdr.gid, hdr.mode))
            continue
        assert load is not None
        path = os.path.join(os.path.dirname(display), name)
        if origin is None:
            members.append(Member(name, path, _load(load, name, where), symbols, hdr.date, hdr.uid,
                                  hdr.gid, hdr.mode))
            continue
        # A member of an archive that this thin archive names: ld takes the member whose header is
        # at `origin` in that archive, and calls it `inner.a(foo.o)`.
        if name not in nested:
            if depth + 1 > MAX_NESTING:
                raise fail(f"thin archives nest more than {MAX_NESTING} deep", obj=where)
            nested[name] = _parse(_load(load, name, where), path, _within(load, os.path.dirname(name)),
                                  depth + 1)
        inner, inner_offsets = nested[name]
        if origin not in inner_offsets:
            raise fail(f"names the member at offset {origin:#x} of {path}, which has no member there",
                       obj=where)
        found = inner.members[inner_offsets.index(origin)]
        members.append(replace(found, symbols=symbols, date=hdr.date, uid=hdr.uid, gid=hdr.gid,
                               mode=hdr.mode))
    return Archive(display, thin, indexed, tuple(members)), tuple(offsets)


def _headers(data: bytes, display: str, thin: bool) -> Iterator[_Header]:
    """Each member header in order. Data follows its header, padded to an even offset, except a
    thin member's, which is the file its name gives."""
    pos = len(ARMAG)
    while pos < len(data):
        if len(data) - pos < HEADER_SIZE:
            raise fail(f"{len(data) - pos} bytes at {pos:#x} after the last member, too few for a member "
                       "header", obj=display)
        name, date, uid, gid, mode, size, fmag = _HEADER.unpack_from(data, pos)
        if fmag != _FMAG:
            raise fail(f"member header at {pos:#x} does not end in `\\n: not an archive member",
                       obj=display)
        text = size.rstrip(b" ")
        if not text.isdigit():
            raise fail(f"member header at {pos:#x} has a size that is not a decimal number: "
                       f"{size.decode('latin-1')!r}", obj=display)
        hdr = _Header(pos, name, _text(date), _text(uid), _text(gid), _text(mode), int(text),
                      pos + HEADER_SIZE)
        yield hdr
        pos = hdr.body
        if not thin or _decode(name.rstrip(b" ")) in _IN_THIN:
            pos += hdr.size + (hdr.size & 1)


def _text(field: bytes) -> str:
    return field.decode("latin-1").rstrip(" ")


def _decode(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def _name(hdr: _Header, data: bytes, long_names: bytes | None, thin: bool,
          display: str) -> tuple[str, int | None, int]:
    """(name, the nested member's header offset for `/N:offset`, name bytes ahead of the data)."""
    raw = hdr.raw_name
    text = raw.rstrip(b" ")
    label = f"member header at {hdr.offset:#x}"
    if _decode(text) in _IN_THIN:
        return _decode(text), None, 0
    if text.startswith(b"#1/"):  # BSD: the name is the first N bytes of the data
        if thin or not text[3:].isdigit():
            raise fail(f"{label} has a malformed BSD name {_decode(text)!r}", obj=display)
        length = int(text[3:])
        if length > hdr.size or hdr.body + length > len(data):
            raise fail(f"{label} has a name of {length} bytes, longer than its data", obj=display)
        return _member_name(data[hdr.body:hdr.body + length].split(b"\0", 1)[0], label, display), None, length
    if text.startswith(b"/"):  # GNU: /N, an offset into the long-name table (thin: /N:origin)
        ref, colon, origin = text[1:].partition(b":")
        if not ref.isdigit() or (colon and not (thin and origin.isdigit())):
            raise fail(f"{label} has a malformed name {_decode(text)!r}", obj=display)
        start = int(ref)
        if long_names is None or start >= len(long_names):
            table = "none" if long_names is None else f"{len(long_names)} bytes"
            raise fail(f"{label} names the long name at {start}, but the long-name table has {table}",
                       obj=display)
        end = long_names.find(b"\n", start)
        name = long_names[start:end if end >= 0 else len(long_names)]
        name = name[:-1] if name.endswith(b"/") else name
        if not name:
            raise fail(f"{label} names an empty long name at {start}", obj=display)
        return _member_name(name, label, display), int(origin) if colon else None, 0
    short = raw.split(b"\0", 1)[0]
    # GNU ends a short name with '/'; BSD pads it with spaces.
    short = short.split(b"/", 1)[0] if b"/" in short else short.rstrip(b" ")
    if not short:
        raise fail(f"{label} has an empty name", obj=display)
    return _member_name(short, label, display), None, 0


def _member_name(raw: bytes, label: str, display: str) -> str:
    """A member name as ar writes names: no NUL, no newline (the long-name table's separator)."""
    if b"\0" in raw or b"\n" in raw:
        raise fail(f"{label} has a malformed name {_decode(raw)!r}", obj=display)
    return _decode(raw)


def _parse_index(name: str, body: bytes, where: str) -> dict[int, list[str]]:
    """Header offset -> the names the index lists for that member, in index order."""
    if name in (GNU_INDEX, GNU_INDEX64):
        width = 4 if name == GNU_INDEX else 8
        word = ">I" if width == 4 else ">Q"
        if len(body) < width:
            raise fail(f"symbol index of {len(body)} bytes has no symbol count", obj=where)
        (count,) = struct.unpack_from(word, body)
        table = width + count * width
        if table > len(body):
            raise fail(f"symbol index lists {count} symbols, more than its {len(body)} bytes hold",
                       obj=where)
        at = [struct.unpack_from(word, body, width + i * width)[0] for i in range(count)]
        names = body[table:].split(b"\0")
        if len(names) <= count:
            raise fail(f"symbol index lists {count} symbols but has {len(names) - 1} names", obj=where)
        entries = list(zip(at, names, strict=False))
    else:
        width = 8 if "_64" in name else 4
        word = "<I" if width == 4 else "<Q"
        if len(body) < width:
            raise fail(f"symbol index of {len(body)} bytes has no size", obj=where)
        (size,) = struct.unpack_from(word, body)
        strings_at = width + size + width
        if size % (2 * width) or strings_at > len(body):
            raise fail(f"symbol index gives its table {size} bytes, which its {len(body)} bytes do not "
                       "hold", obj=where)
        (strsize,) = struct.unpack_from(word, body, width + size)
        strings = body[strings_at:strings_at + strsize]
        entries = []
        for i in range(size // (2 * width)):
            strx, offset = struct.unpack_from(word[0] + 2 * word[1], body, width + i * 2 * width)
            end = strings.find(b"\0", strx)
            if strx >= len(strings) or end < 0:
                raise fail(f"symbol index entry {i} names string {strx}, outside its {len(strings)}-byte "
                           "string table", obj=where)
            entries.append((offset, strings[strx:end]))
    index: dict[int, list[str]] = {}
    for offset, sym in entries:
        index.setdefault(offset, []).append(_decode(sym))
    return index


def index_symbols(obj: ElfObject) -> tuple[str, ...]:
    """The names GNU ar indexes for an ELF member: global, weak and unique symbols it defines
    (common and absolute ones included), in symbol-table order, so a rewrite lists what `ar` would."""
    return tuple(s.name for s in ordered_symbols(obj.symbols)[1:]
                 if s.name and not s.is_local and not s.is_undefined)


def write_archive(archive: Archive) -> bytes:
    """A plain GNU archive of `archive`'s members, in order and under their names, with a symbol
    index (`/`, or `/SYM64/` once a member lies past 4 GiB) when the input had one."""
    names = bytearray()
    name_fields: list[bytes] = []
    for member in archive.members:
        encoded = member.name.encode("utf-8", "surrogateescape")
        where = f"{archive.display}({member.name})"
        if not encoded or b"\n" in encoded or b"\0" in encoded:
            raise fail("member name cannot be written to an archive (empty, or holds a newline or NUL)",
                       obj=where)
        if len(member.data) > _MAX_MEMBER_SIZE:
            raise fail(f"member of {len(member.data)} bytes is too large for an archive", obj=where)
        if len(encoded) <= _SHORT_NAME_MAX and b"/" not in encoded:
            name_fields.append(encoded + b"/")
        else:
            name_fields.append(b"/%d" % len(names))
            names += encoded + b"/\n"
    if len(names) % 2:
        names += b"\n"
    long_part = _header(b"//", b"", b"", b"", b"", len(names)) + bytes(names) if names else b""

    def layout(wide: bool) -> tuple[bytes, list[int]]:
        width = 8 if wide else 4
        symbols = [(n, s) for n, m in enumerate(archive.members) for s in m.symbols]
        strings = b"".join(s.encode("utf-8", "surrogateescape") + b"\0" for _, s in symbols)
        size = width + width * len(symbols) + len(strings)
        size += -size % (8 if wide else 2)
        at = len(ARMAG) + (HEADER_SIZE + size if archive.indexed else 0) + len(long_part)
        offsets = []
        for member in archive.members:
            offsets.append(at)
            at += HEADER_SIZE + len(member.data) + (len(member.data) & 1)
        if not archive.indexed:
            return b"", offsets
        word = ">Q" if wide else ">I"
        body = struct.pack(word, len(symbols)) + b"".join(struct.pack(word, offsets[n]) for n, _ in symbols)
        body += strings
        body += bytes(size - len(body))
        if not wide and any(offsets[n] > _MAX_OFFSET32 for n, _ in symbols):
            return layout(True)
        name = GNU_INDEX64 if wide else GNU_INDEX
        return _header(name.encode(), b"0", b"0", b"0", b"0", size) + body, offsets

    index_part, _ = layout(False)
    out = bytearray(ARMAG)
    out += index_part
    out += long_part
    for member, field in zip(archive.members, name_fields, strict=True):
        out += _header(field, member.date.encode("latin-1"), member.uid.encode("latin-1"),
                       member.gid.encode("latin-1"), member.mode.encode("latin-1"), len(member.data))
        out += member.data
        if len(member.data) % 2:
            out += b"\n"
    return bytes(out)


def _header(name: bytes, date: bytes, uid: bytes, gid: bytes, mode: bytes, size: int) -> bytes:
    # Every field fits: names are checked, sizes limited, the rest read from fields of this width.
    return _HEADER.pack(*(value.ljust(width, b" ") for value, width in (
        (name, 16), (date, 12), (uid, 6), (gid, 6), (mode, 8), (b"%d" % size, 10))), _FMAG)


def _within(load: Loader, directory: str) -> Loader:
    """The loader of an archive a thin archive names: its members are relative to its directory."""
    return lambda name: load(os.path.join(directory, name))


def _load(load: Loader, name: str, where: str) -> bytes:
    try:
        return load(name)
    except OSError as exc:
        raise fail(f"cannot read the member's file {exc.filename or name}: {exc.strerror or exc}",
                   obj=where) from None



def with_members(archive: Archive, contents: Mapping[int, tuple[bytes, tuple[str, ...]]]) -> Archive:
    """`archive` with the members at the positions in `contents` given new (data, index symbols)."""
    return replace(archive, members=tuple(
        replace(member, data=contents[n][0], symbols=contents[n][1]) if n in contents else member
        for n, member in enumerate(archive.members)))


# ---------------------------------------------------------------------------------------------
# Libraries: `-l` archives are searched by ld, not given as inputs


def _annotated(data: bytes, name: str) -> bool:
    """Whether an object carries annotations klp-ld would have acted on (one it cannot read at all
    counts: klp-ld cannot tell that it does not)."""
    if not any(m in data for m in LIVEPATCH_MARKERS):
        return False
    from klp_ld.annotations import harvest
    from klp_ld.elf.read import read_elf

    try:
        found = harvest(read_elf(data, name))
    except KlpLdError:
        return True
    return bool(found.annotations) or bool(found.problems)


def annotated_libraries(cmd: LinkCommand) -> list[Diagnostic]:
    """`-l` libraries whose members carry livepatch annotations.

    Archives named as inputs have their members renamed like any object (pipeline.write_copies); a
    library ld finds by searching is not an input klp-ld can replace, and ld would pull its
    members in unrenamed, so that their annotations merge. Such a link is refused, naming the member.
    """
    out: list[Diagnostic] = []
    for lib in cmd.libraries:
        path = find_library(lib.path, cmd.library_dirs, cmd.cwd)
        display = f"-l{lib.path}"
        if path is None or not is_archive_file(path, display) or not mentions_livepatch(path):
            continue
        archive = read_archive_file(path, os.path.relpath(path, cmd.cwd))
        bad = [m.display for m in archive.members if m.is_elf and _annotated(m.data, m.display)]
        if bad:
            out.append(error(f"library member {bad[0]} carries livepatch annotations: klp-ld renames "
                             "references in the objects and archives given as inputs, not in libraries "
                             "ld searches for, and ld would merge them; give the archive itself as an input",
                             obj=display, code="library-member",
                             notes=tuple(f"also {name}" for name in bad[1:4])))
    return out
