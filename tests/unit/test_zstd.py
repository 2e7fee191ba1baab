"""zstd-compressed modules (Ubuntu, Arch) read like any other, and no compressed source is a bomb.

The module is compressed the way distributions do it, with the `zstd` command; a module of a
real Debian kernel is used as well when the kernel bench has one cached.
"""

from __future__ import annotations

import gzip
import importlib
import io
import lzma
import os
import shutil
import subprocess
import sys
import tracemalloc
import types
from pathlib import Path
from typing import Any

import pytest

from klp_ld.diag import KlpLdError
from klp_ld.ksyms.decompress import decompress
from klp_ld.ksyms.discover import discover
from klp_ld.ksyms.load import load_source
from klp_ld.ksyms.tables import SourceKind, SymbolSource
from klp_ld.names import VMLINUX

from .test_discover import KALLSYMS, RELEASE, Tree, build_module

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "testdata" / "symbols"
needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="needs the zstd command")
needs_tools = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("ld")), reason="needs gcc and ld")


def _zstd_library() -> Any:
    """What klp-ld reads .zst with: Python 3.14's compression.zstd, else the zstandard package (a
    dependency of klp-ld before 3.14, so its absence is a failure here, not a skip)."""
    try:
        return importlib.import_module("compression.zstd")
    except ImportError:
        return importlib.import_module("zstandard")


def _compressor(level: int = 3) -> Any:
    """An incremental compressor with compress() and flush(), from either library."""
    lib = _zstd_library()
    if lib.__name__ == "zstandard":
        return lib.ZstdCompressor(level=level).compressobj()
    return lib.ZstdCompressor(level=level)


def _compress(data: bytes) -> bytes:
    comp = _compressor()
    return bytes(comp.compress(data)) + bytes(comp.flush())


def _zstd_cli(path: Path, *flags: str) -> Path:
    """`zstd` as kmod's build (and Ubuntu's and Arch's packaging) runs it."""
    out = path.with_name(path.name + ".zst")
    subprocess.run(["zstd", "-q", "-f", *flags, "-o", str(out), str(path)], check=True)
    return out


def _what_counts(src: SymbolSource) -> object:
    """Everything a parse says except the file name it came from."""
    return ([(t.objname, t.kind, t.names, t.types, t.values, t.sections, t.core, t.full_known, t.order,
              t.files) for t in src.tables], src.exports, src.release)


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shutil.which("gcc") and shutil.which("ld")):
        pytest.skip("needs gcc and ld")
    out = tmp_path_factory.mktemp("zstmod")
    objs = []
    for name in ("m1", "m2", "m3"):
        obj = out / f"{name}.o"
        subprocess.run(["gcc", "-c", "-o", str(obj), str(DATA / "module" / f"{name}.s")], check=True)
        objs.append(str(obj))
    subprocess.run(["ld", "-r", "-o", str(out / "fake-mod.ko"), *objs], check=True)
    return out / "fake-mod.ko"


def _debian_module() -> Path | None:
    """A module of a real distribution kernel, if the kernel bench has unpacked one."""
    base = os.environ.get("KLP_LD_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache"), "klp-ld", "bench")
    for path in sorted(Path(base).glob("*/image/lib/modules/*/kernel/net/key/af_key.ko")):
        return path
    return None


@needs_zstd
@pytest.mark.parametrize("flags", [(), ("-19", "--check"), ("--no-check", "--no-content-size")])
def test_a_zstd_module_reads_like_the_plain_one(module: Path, tmp_path: Path, flags: tuple[str, ...]) -> None:
    plain = tmp_path / "fake-mod.ko"
    shutil.copy(module, plain)
    packed = _zstd_cli(plain, *flags)
    got = load_source(str(packed))
    assert got.kind is SourceKind.MODULE and got.objects() == ("fake_mod",)
    assert _what_counts(got) == _what_counts(load_source(str(plain)))


@needs_zstd
def test_a_real_distribution_module(tmp_path: Path) -> None:
    real = _debian_module()
    if real is None:
        pytest.skip("no distribution module cached by the kernel bench (tests/kernel)")
    plain = tmp_path / real.name
    shutil.copy(real, plain)
    got = load_source(str(_zstd_cli(plain, "-19")))
    want = load_source(str(plain))
    assert got.release == want.release and got.release is not None
    assert len(got.tables[0]) > 100 and _what_counts(got) == _what_counts(want)


@needs_tools
@needs_zstd
def test_discovery_finds_and_uses_a_ko_zst(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    tree.put("/proc/kallsyms", KALLSYMS)
    ko = tree.build / "foo.ko"
    ko.write_bytes(build_module(tree.build, "foo"))
    path = tree.put(f"/lib/modules/{RELEASE}/kernel/drivers/foo.ko.zst", _zstd_cli(ko).read_bytes())
    d = discover(str(tree.headers), [VMLINUX, "foo"])
    assert [f.path for f in d.found if "foo" in f.objnames] == [str(path)]
    assert [c.position for c in d.index().candidates("foo", "state_show")] == [1, 2]


def test_frames_are_read_to_the_end_and_a_cut_one_is_an_error() -> None:
    data = os.urandom(1 << 16) * 8
    one = _compress(data)
    two = _compress(data[:1000]) + _compress(data[1000:])
    assert decompress(one, "a.ko.zst") == decompress(two, "a.ko.zst") == data
    with pytest.raises(KlpLdError, match=r"^klp-ld: error: a\.ko\.zst: corrupt compressed data \(zstd\): "):
        decompress(one[:-7], "a.ko.zst")
    with pytest.raises(KlpLdError, match=r"corrupt compressed data \(zstd\)"):
        decompress(one + b"trailing garbage", "a.ko.zst")


def _bomb(kind: str, size: int) -> bytes:
    """`size` zero bytes compressed: a few kilobytes that expand to whatever the header promises."""
    chunk = bytes(1 << 20)
    if kind == "zstd":
        comp = _compressor()
        return b"".join([*(comp.compress(chunk) for _ in range(size >> 20)), comp.flush()])
    buf = io.BytesIO()
    with (lzma.LZMAFile(buf, "w", preset=0) if kind == "xz"
          else gzip.GzipFile(fileobj=buf, mode="w", compresslevel=1)) as writer:
        for _ in range(size >> 20):
            writer.write(chunk)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["zstd", "xz", "gzip"])
def test_decompression_is_bounded_in_size_and_memory(kind: str) -> None:
    bomb = _bomb(kind, 256 << 20)
    assert len(bomb) < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(KlpLdError, match=r"^klp-ld: error: bomb\.ko: decompresses to more than 8388608 "):
            decompress(bomb, "bomb.ko", limit=8 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak} bytes held while refusing a 256 MiB bomb"


def test_the_standard_library_zstd_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.14's compression.zstd, where present, is used instead of the package."""
    packed = _compress(b"module bytes")
    opened: list[bytes] = []

    def zstd_file(file: io.BytesIO) -> io.BytesIO:
        opened.append(file.read())
        return io.BytesIO(b"read by the standard library")

    fake = types.ModuleType("compression.zstd")
    fake.ZstdFile = zstd_file  # type: ignore[attr-defined]
    fake.ZstdError = type("ZstdError", (Exception,), {})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "compression", types.ModuleType("compression"))
    monkeypatch.setitem(sys.modules, "compression.zstd", fake)
    monkeypatch.setitem(sys.modules, "zstandard", None)  # importing it would now fail
    assert decompress(packed, "m.ko.zst") == b"read by the standard library" and opened == [packed]


def test_without_any_zstd_library_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "compression.zstd", None)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(KlpLdError) as exc:
        decompress(b"\x28\xb5\x2f\xfd" + bytes(32), "foo.ko.zst")
    message = str(exc.value)
    assert message.startswith("klp-ld: error: foo.ko.zst: ") and "pip install zstandard" in message


LAZY = r"""
import sys
from klp_ld.ksyms.load import load_source
load_source(sys.argv[1])
print(any(m in sys.modules for m in ("zstandard", "compression.zstd")))
load_source(sys.argv[2])
print(any(m in sys.modules for m in ("zstandard", "compression.zstd")))
"""


@needs_zstd
def test_the_zstd_library_is_imported_only_for_a_zst_file(module: Path, tmp_path: Path) -> None:
    plain = tmp_path / "fake-mod.ko"
    shutil.copy(module, plain)
    packed = _zstd_cli(plain)
    done = subprocess.run([sys.executable, "-c", LAZY, str(plain), str(packed)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert done.stdout.split() == ["False", "True"]
