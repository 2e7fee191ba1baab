"""A cache of parsed symbol sources that can save time but never change an answer.

Every link of a `make -j` reads the same 100k-line kallsyms or System.map, and parsing one costs
100-200 ms. An entry is used only when it was made from exactly the bytes read now (a SHA-256 of
the whole content: a few ms for a 4 MB kallsyms) by this klp-ld (its version, this format and its
source code), for the same path and requested kind. File metadata proves nothing: a rewrite of
the same size within one mtime tick, or an entry from elsewhere, keeps it.

An entry is a small JSON header and length-checked columns of plain bytes: decoding them executes
nothing and takes time linear in their size, whatever the bytes (marshal or pickle promise
neither). A SHA-256 of the key and the payload catches torn or damaged files before anything is
decoded, and every field is checked before it becomes a table. Whoever can write an entry can
choose the answer, so the directory, and each entry, must belong to the user and be writable by
nobody else. Anything unexpected is a miss and a fresh parse, never an error. An entry is written
to a temporary file and renamed into place, so parallel links never see half of one; its file
name depends on the path only, so a changed source replaces its entry instead of adding one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import struct
import sys
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import klp_ld
from klp_ld.ksyms.decompress import MAX_SOURCE_BYTES
from klp_ld.ksyms.load import parse_source, read_source_bytes
from klp_ld.ksyms.tables import Export, ObjectTable, SourceKind, SymbolSource

# Bump whenever the entry layout changes; parser changes are covered by the code digest in the key.
CACHE_FORMAT = 3
_MAGIC = b"klp-ld symbol cache %d\n" % CACHE_FORMAT
_HEX = 64  # a SHA-256 in hex
_SUFFIX = ".symcache"


class _Invalid(ValueError):
    """An entry, or a parse, that this format cannot carry faithfully."""


def cache_dir() -> str:
    """`$XDG_CACHE_HOME/klp-ld`; the XDG rules ignore a relative XDG_CACHE_HOME."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "klp-ld")


def load_cached(path: str, kind: SourceKind | None = None, *, use_cache: bool = True) -> SymbolSource:
    """Parse `path`, or take the parse of these very bytes from the cache."""
    data = read_source_bytes(path)
    if not use_cache:
        return parse_source(data, path, kind)
    directory = cache_dir()
    name = entry_name(path, kind)
    key = entry_key(path, kind, data)
    cached = _load(directory, name, key)
    if cached is not None:
        return cached
    src = parse_source(data, path, kind)
    _store(directory, name, key, src)
    return src


# ---------------------------------------------------------------------------------------------
# Names and keys


def _spelled(path: str, kind: SourceKind | None) -> bytes:
    return f"{kind.value if kind else ''}\0{path}".encode("utf-8", "surrogateescape")


def entry_name(path: str, kind: SourceKind | None) -> str:
    """The entry's file name: one per (path, kind), so a changed file overwrites its old entry."""
    digest = hashlib.sha256(b"%d\0%s" % (CACHE_FORMAT, _spelled(path, kind))).hexdigest()
    return digest[:40] + _SUFFIX


def _code_digest() -> bytes:
    """klp-ld's own source, so that an edited checkout never reads a parse made by older code.

    All of it rather than the parsers alone: what a parse depends on moves between modules, and
    reading some 30 small files costs about a millisecond.
    """
    h = hashlib.sha256(sys.version.encode())
    package = os.path.dirname(os.path.abspath(klp_ld.__file__ or ""))
    sources: list[str] = []
    for directory, subdirs, files in os.walk(package):
        subdirs[:] = [d for d in subdirs if d != "__pycache__"]
        sources.extend(os.path.relpath(os.path.join(directory, f), package)
                       for f in files if f.endswith(".py"))
    sources.sort()
    for rel in sources:
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        try:
            with open(os.path.join(package, rel), "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        except OSError:
            h.update(b"?")
    return h.digest()


def entry_key(path: str, kind: SourceKind | None, data: bytes) -> bytes:
    """What an entry must have been made from to stand for a fresh parse of `data` at `path`."""
    h = hashlib.sha256(_MAGIC)
    h.update(klp_ld.__version__.encode() + b"\0")
    h.update(_code_digest())
    h.update(_spelled(path, kind) + b"\0")
    h.update(hashlib.sha256(data).digest())
    return h.digest()


# ---------------------------------------------------------------------------------------------
# The directory


def _private(st: os.stat_result) -> bool:
    """Owned by us and writable by nobody else: otherwise someone else may choose the answer."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _open_dir(directory: str, create: bool) -> int | None:
    """A descriptor of the cache directory when it is private, else None (no cache this time).

    Entries are then opened relative to it, so the directory checked is the one used even if
    its path is swapped meanwhile.
    """
    if create:
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(directory), exist_ok=True)
        with contextlib.suppress(OSError):
            os.mkdir(directory, 0o700)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _private(os.fstat(fd)):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _load(directory: str, name: str, key: bytes) -> SymbolSource | None:
    dir_fd = _open_dir(directory, create=False)
    if dir_fd is None:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _private(st) or st.st_size > MAX_SOURCE_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            blob = f.read(st.st_size)
    except OSError:
        return None
    finally:
        os.close(fd)
    return decode_entry(blob, key)


def _store(directory: str, name: str, key: bytes, src: SymbolSource) -> None:
    try:
        blob = encode_entry(key, src)
    except _Invalid:
        return  # e.g. an address beyond 64 bits in a hand-made dump: parse it every time
    if len(blob) > MAX_SOURCE_BYTES:
        return
    dir_fd = _open_dir(directory, create=True)
    if dir_fd is None:
        return
    tmp = f".tmp-{os.getpid()}-{os.urandom(6).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------------------------------
# The entry format
#
#   b"klp-ld symbol cache 3\n" <key> b"\n" <digest> b"\n" <JSON header> b"\n" <columns>
#
# key and digest are SHA-256 in hex, the digest over the raw key and everything after it. The
# header holds the small fields and the byte length of every column; the columns follow in
# the header's order and must use up the entry exactly. A column of strings is their UTF-8
# (surrogate escapes kept) joined with NUL, addresses are little-endian u64, core flags one
# byte each. Building 100k strings from one split is what a cached load costs; JSON lists of
# 100k items would take several times longer, and each item would need its own type check.

_TABLE_KEYS = frozenset({"objname", "source", "kind", "count", "full_known", "order", "columns"})
_TABLE_COLUMNS = ("names", "types", "values", "sections", "core", "files")
_EXPORT_KEYS = frozenset({"count", "crcs", "columns"})
_EXPORT_COLUMNS = ("names", "modules", "types", "namespaces")
_SOURCE_KEYS = frozenset({"path", "kind", "tables", "exports", "notes", "release"})


def _text(value: object) -> str:
    if type(value) is not str:
        raise _Invalid("not a string")
    return value


def _count(value: object, limit: int) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise _Invalid("count out of range")
    return value


def _exact_keys(value: object, keys: frozenset[str]) -> dict[str, Any]:
    if type(value) is not dict or value.keys() != keys:
        raise _Invalid("unexpected fields")
    return value


def _encode_strings(items: Sequence[str]) -> bytes:
    """NUL-joined UTF-8; a string with a NUL is refused (the parse is then not cached)."""
    text = "\0".join(items)
    if text.count("\0") != max(len(items) - 1, 0):
        raise _Invalid("a string holds a NUL")
    return _encode_text(text)


def _encode_text(text: str) -> bytes:
    """UTF-8 with surrogate escapes, refused unless it decodes back to `text` exactly."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise _Invalid("a string cannot be encoded") from None
    if str(raw, "utf-8", "surrogateescape") != text:
        raise _Invalid("a string does not survive encoding")
    return raw


class _Columns:
    """Consecutive slices of the entry's column area, each length from the header."""

    def __init__(self, area: memoryview) -> None:
        self._area = area
        self._pos = 0

    def take(self, size: object) -> memoryview:
        n = _count(size, len(self._area) - self._pos)
        piece = self._area[self._pos:self._pos + n]
        self._pos += n
        return piece

    def text(self, size: object) -> str:
        return str(self.take(size), "utf-8", "surrogateescape")

    def strings(self, size: object, count: int, shared: bool = False) -> tuple[str, ...]:
        """`count` strings; `shared` for a column of few distinct values (modules, sections, files),
        which then take one string object each instead of one per row."""
        text = self.text(size)
        items = tuple(text.split("\0")) if count else ()
        if shared:
            items = tuple(map(sys.intern, items))
        if len(items) != count or (not count and text):
            raise _Invalid("column length")
        return items

    def finish(self) -> None:
        if self._pos != len(self._area):
            raise _Invalid("bytes left over")


def _encode_table(t: ObjectTable, columns: list[bytes]) -> dict[str, object]:
    count = len(t.names)
    if any(c is not None and len(c) != count for c in (t.types, t.values, t.sections, t.core, t.files)):
        raise _Invalid("ragged table")
    values = None
    if t.values is not None:
        if t.values and (min(t.values) < 0 or max(t.values) >= 1 << 64):
            raise _Invalid("value beyond 64 bits")
        values = struct.pack(f"<{count}Q", *t.values)
    parts = (_encode_strings(t.names), _encode_text(t.types), values,
             None if t.sections is None else _encode_strings(t.sections), t.core,
             None if t.files is None else _encode_strings(t.files))
    columns.extend(p for p in parts if p is not None)
    return {"objname": t.objname, "source": t.source, "kind": t.kind.value, "count": count,
            "full_known": t.full_known, "order": t.order,
            "columns": {name: None if part is None else len(part)
                        for name, part in zip(_TABLE_COLUMNS, parts, strict=True)}}


def _decode_table(value: object, columns: _Columns, limit: int) -> ObjectTable:
    doc = _exact_keys(value, _TABLE_KEYS)
    count = _count(doc["count"], limit)
    sizes = _exact_keys(doc["columns"], frozenset(_TABLE_COLUMNS))
    if type(doc["full_known"]) is not bool:
        raise _Invalid("full_known")
    names = columns.strings(sizes["names"], count)
    types = columns.text(sizes["types"])
    if len(types) != count:
        raise _Invalid("types")
    values = None
    if sizes["values"] is not None:
        raw = columns.take(sizes["values"])
        if len(raw) != 8 * count:
            raise _Invalid("values length")
        values = struct.unpack(f"<{count}Q", raw)
    sections = None if sizes["sections"] is None else columns.strings(sizes["sections"], count, shared=True)
    core = None
    if sizes["core"] is not None:
        core = bytes(columns.take(sizes["core"]))
        if len(core) != count or core.translate(None, b"\0\1"):
            raise _Invalid("core flags")
    files = None if sizes["files"] is None else columns.strings(sizes["files"], count, shared=True)
    return ObjectTable(_text(doc["objname"]), _text(doc["source"]), SourceKind(_text(doc["kind"])), names,
                       types, values, sections, core, doc["full_known"], _text(doc["order"]), files)


def _encode_exports(exports: tuple[Export, ...], columns: list[bytes]) -> dict[str, object]:
    crcs = [e.crc for e in exports]
    if any(c is not None and c < 0 for c in crcs):
        raise _Invalid("negative CRC")
    parts = (_encode_strings([e.name for e in exports]), _encode_strings([e.module for e in exports]),
             _encode_strings([e.export_type for e in exports]),
             _encode_strings([e.namespace for e in exports]))
    columns.extend(parts)
    return {"count": len(exports), "crcs": crcs,
            "columns": {name: len(p) for name, p in zip(_EXPORT_COLUMNS, parts, strict=True)}}


def _decode_exports(value: object, columns: _Columns, limit: int) -> tuple[Export, ...]:
    doc = _exact_keys(value, _EXPORT_KEYS)
    count = _count(doc["count"], limit)
    sizes = _exact_keys(doc["columns"], frozenset(_EXPORT_COLUMNS))
    crcs = doc["crcs"]
    if type(crcs) is not list or len(crcs) != count:
        raise _Invalid("crcs")
    if not set(map(type, crcs)) <= {int, type(None)} or any(c is not None and c < 0 for c in crcs):
        raise _Invalid("crc values")
    names, modules, types, namespaces = (columns.strings(sizes[c], count, shared=c != "names")
                                         for c in _EXPORT_COLUMNS)
    # all `count` long, checked; tuple.__new__ skips the named tuple's Python-level constructor,
    # half the cost of 25,000 exports
    rows = zip(names, crcs, modules, types, namespaces, strict=True)
    return tuple(map(tuple.__new__, repeat(Export), rows))


def encode_entry(key: bytes, src: SymbolSource) -> bytes:
    """The entry for `src`; raises `_Invalid` (a ValueError) for a parse the format cannot carry."""
    columns: list[bytes] = []
    doc = {"path": src.path, "kind": src.kind.value, "notes": list(src.notes), "release": src.release,
           "tables": [_encode_table(t, columns) for t in src.tables],
           "exports": _encode_exports(src.exports, columns)}
    try:
        header = json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    except ValueError as exc:  # an integer too long for int() to read back, say
        raise _Invalid(str(exc)) from None
    payload = [header, b"\n", *columns]
    digest = hashlib.sha256(key)
    for part in payload:
        digest.update(part)
    return b"".join((_MAGIC, key.hex().encode(), b"\n", digest.hexdigest().encode(), b"\n", *payload))


def decode_entry(blob: bytes, key: bytes) -> SymbolSource | None:
    """The parse in `blob` if it is whole, well-formed and made for `key`; None otherwise."""
    start = len(_MAGIC) + 2 * (_HEX + 1)
    if blob[:start - _HEX - 1] != _MAGIC + key.hex().encode() + b"\n":
        return None  # another format, or made from other bytes, code or path
    view = memoryview(blob)
    digest = hashlib.sha256(key)
    digest.update(view[start:])
    if blob[start - _HEX - 1:start] != digest.hexdigest().encode() + b"\n":
        return None  # torn or damaged
    end = blob.find(b"\n", start)  # the header is ASCII JSON: no raw newline inside
    if end < 0:
        return None
    try:
        doc = _exact_keys(json.loads(blob[start:end]), _SOURCE_KEYS)
        notes = doc["notes"]
        if type(notes) is not list or type(doc["tables"]) is not list:
            raise _Invalid("notes or tables")
        release = None if doc["release"] is None else _text(doc["release"])
        columns = _Columns(view[end + 1:])
        limit = len(blob)  # no column has more rows than the entry has bytes
        tables = tuple(_decode_table(t, columns, limit) for t in doc["tables"])
        exports = _decode_exports(doc["exports"], columns, limit)
        columns.finish()
        return SymbolSource(_text(doc["path"]), SourceKind(_text(doc["kind"])), tables, exports,
                            tuple(map(_text, notes)), release)
    except (ValueError, RecursionError, struct.error):  # JSON, SourceKind and _Invalid raise ValueError
        return None
