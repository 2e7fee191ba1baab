"""Undo the compression of module files, without letting a small file become a huge one.

kmod loads `.ko.xz`, `.ko.gz` and `.ko.zst`, and distributions ship them so; a symbol source is
read whole, so decompressing must stop at a limit instead of at the end of memory.
"""

from __future__ import annotations

import gzip
import importlib
import io
import lzma
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from klp_ld.diag import fail

_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZ_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# The most klp-ld reads from one symbol source, on disk or decompressed. Debug vmlinux files run
# to several hundred MB; a source beyond this is corrupt or hostile (and would end in a
# MemoryError, or the OOM killer, rather than in a message).
MAX_SOURCE_BYTES = 2 << 30
# Read and decompressed this many bytes at a time, so that the limit is checked as data arrives.
CHUNK = 1 << 20


def decompress(data: bytes, path: str, limit: int = MAX_SOURCE_BYTES) -> bytes:
    """Undo the compression kmod accepts for modules (xz, gzip, zstd); other data is returned as is.

    Output is read in chunks and refused past `limit`: a few kilobytes of hostile input can
    expand to gigabytes and end in a MemoryError, or in the OOM killer, instead of a message.
    """
    if data.startswith(_XZ_MAGIC):
        return _decompress_stream(lambda: lzma.LZMAFile(io.BytesIO(data)), path, limit, "xz")
    if data.startswith(_GZ_MAGIC):
        return _decompress_stream(lambda: gzip.GzipFile(fileobj=io.BytesIO(data)), path, limit, "gzip")
    if data.startswith(_ZSTD_MAGIC):
        return _zstd_decompress(data, path, limit)
    return data


def bounded_join(chunks: Iterable[bytes], limit: int, path: str, what: str) -> bytes:
    """Join `chunks`, failing as soon as they add up to more than `limit` bytes."""
    out: list[bytes] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise fail(f"{what} more than {limit} bytes, the most klp-ld reads from one symbol source "
                       "(a corrupt or hostile file?)", obj=path)
        out.append(chunk)
    return out[0] if len(out) == 1 else b"".join(out)


def _decompress_stream(open_stream: Callable[[], io.BufferedIOBase], path: str, limit: int,
                       what: str, errors: tuple[type[Exception], ...] = ()) -> bytes:
    """Read a decompressing file object to its end, `CHUNK` bytes at a time.

    The stdlib readers (LZMAFile, GzipFile, compression.zstd.ZstdFile) read every concatenated
    stream and raise EOFError for a truncated one, as `lzma.decompress` and friends do.
    """
    corrupt: tuple[type[Exception], ...] = (lzma.LZMAError, OSError, EOFError, zlib.error, *errors)
    try:
        with open_stream() as stream:
            return bounded_join(iter(lambda: stream.read(CHUNK), b""), limit, path, "decompresses to")
    except corrupt as exc:
        raise fail(f"corrupt compressed data ({what}): {str(exc) or type(exc).__name__}", obj=path) from None


def _zstd_decompress(data: bytes, path: str, limit: int) -> bytes:
    """zstd is in the standard library from Python 3.14 on; before, the `zstandard` package reads it.

    Both are imported only here: most links never see a .zst file.
    """
    try:
        stdlib_zstd = importlib.import_module("compression.zstd")
    except ImportError:
        pass
    else:
        return _decompress_stream(lambda: stdlib_zstd.ZstdFile(io.BytesIO(data)), path, limit, "zstd",
                                  (stdlib_zstd.ZstdError,))
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        raise fail("this module is zstd-compressed and reading it needs the Python package 'zstandard' "
                   "(pip install zstandard), or decompress it first with 'unzstd'", obj=path) from None
    try:
        return bounded_join(_zstandard_chunks(zstandard, data), limit, path, "decompresses to")
    except zstandard.ZstdError as exc:
        raise fail(f"corrupt compressed data (zstd): {exc}", obj=path) from None


# Input fed to zstandard per call. Its decompressor has no output limit, and a zstd block of 4
# bytes can stand for 128 KiB: 1 KiB of input makes at most 32 MiB before the limit is checked.
_ZSTD_INPUT_STEP = 1024


def _zstandard_chunks(zstandard: Any, data: bytes) -> Iterator[bytes]:
    """Decompress every frame of `data` in bounded steps (the package's stream_reader returns a
    truncated frame's output without any error)."""
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        decoder = zstandard.ZstdDecompressor().decompressobj()
        while not decoder.eof:
            if pos >= len(data):
                raise zstandard.ZstdError("truncated: the data ends inside a frame")
            step = view[pos:pos + _ZSTD_INPUT_STEP]
            pos += len(step)
            chunk = decoder.decompress(step)
            if chunk:
                yield chunk
        pos -= len(decoder.unused_data)
