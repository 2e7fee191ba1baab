"""One symbol source file, read with bounds and parsed by the parser its kind calls for.

The only file I/O of the parsing side: parsers take bytes or text, so the cache can keep their
results, and a file that is not a plain file of sane size is refused before anything is read.
"""

from __future__ import annotations

import itertools
import os
import stat

from klp_ld.diag import fail
from klp_ld.ksyms.decompress import CHUNK, MAX_SOURCE_BYTES, bounded_join, decompress
from klp_ld.ksyms.detect import detect_format
from klp_ld.ksyms.symtab import parse_module, parse_vmlinux
from klp_ld.ksyms.tables import SourceKind, SymbolSource
from klp_ld.ksyms.text import parse_kallsyms, parse_module_symvers, parse_symbols_list, parse_system_map


def parse_source(data: bytes, path: str, kind: SourceKind | None = None) -> SymbolSource:
    """Parse file contents of any supported kind (detected when `kind` is None)."""
    data = decompress(data, path)
    kind = kind or detect_format(data, path)
    if kind is SourceKind.MODULE:
        return parse_module(data, path)
    if kind is SourceKind.VMLINUX:
        return parse_vmlinux(data, path)
    text = data.decode("utf-8", "surrogateescape")
    if kind is SourceKind.KALLSYMS:
        return parse_kallsyms(text, path)
    if kind is SourceKind.SYSTEM_MAP:
        return parse_system_map(text, path)
    if kind is SourceKind.SYMBOLS_LIST:
        return parse_symbols_list(text, path)
    exports = parse_module_symvers(text, path)
    return SymbolSource(path, SourceKind.SYMVERS, exports=tuple(exports.values()))


def read_source_bytes(path: str, limit: int = MAX_SOURCE_BYTES) -> bytes:
    """Read a source file whole, refusing what is not a regular file or is larger than `limit`.

    `--klp-symbols=/dev/zero` (or a FIFO, or a growing file) would otherwise read until memory
    runs out. /proc files are regular but report size 0, so the size is only a hint and reading
    stops at the end or past `limit`, whichever comes first. The file is opened non-blocking
    because opening a FIFO would otherwise wait for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise fail(f"cannot read symbol source: {exc.strerror or exc}", obj=path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise fail("cannot read symbol source: not a regular file (a symbol source is a kallsyms "
                       "dump, System.map, vmlinux, module or Module.symvers file)", obj=path)
        if st.st_size > limit:
            raise fail(f"cannot read symbol source: {st.st_size} bytes, more than the {limit} klp-ld "
                       "reads from one symbol source", obj=path)
        os.set_blocking(fd, True)
        first = os.read(fd, st.st_size + 1 if st.st_size else CHUNK)
        rest = iter(lambda: os.read(fd, CHUNK), b"")
        return bounded_join(itertools.chain((first,), rest), limit, path,
                             "cannot read symbol source: it holds")
    except OSError as exc:
        raise fail(f"cannot read symbol source: {exc.strerror or exc}", obj=path) from None
    finally:
        os.close(fd)


def load_source(path: str, kind: SourceKind | None = None) -> SymbolSource:
    """Read and parse one symbol source file (uncached; `klp_ld.ksyms.cache` caches it)."""
    return parse_source(read_source_bytes(path), path, kind)
