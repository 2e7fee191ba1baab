"""The symbol cache (klp_ld.ksyms.cache): faster on a hit, never a different answer.

Every test points XDG_CACHE_HOME at its own directory. A `Counter` stands in for the parser to
tell a hit (no parse) from a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import klp_ld
import klp_ld.ksyms.cache as symcache
from klp_ld.diag import KlpLdError
from klp_ld.ksyms.cache import cache_dir, decode_entry, encode_entry, entry_key, entry_name, load_cached
from klp_ld.ksyms.index import SymbolIndex
from klp_ld.ksyms.load import load_source, parse_source, read_source_bytes
from klp_ld.ksyms.resolution import Resolved
from klp_ld.ksyms.system import TEST_ROOT_ENV
from klp_ld.ksyms.tables import Export, ObjectTable, SourceKind, SymbolSource
from klp_ld.names import VMLINUX

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "testdata" / "symbols"


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: bytes, path: str, kind: SourceKind | None = None) -> SymbolSource:
        self.calls += 1
        return parse_source(data, path, kind)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Counter:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(TEST_ROOT_ENV, raising=False)
    counter = Counter()
    monkeypatch.setattr(symcache, "parse_source", counter)
    return counter


@pytest.fixture
def system_map(tmp_path: Path) -> Path:
    path = tmp_path / "System.map"
    shutil.copy(DATA / "System.map", path)
    return path


def entries() -> list[Path]:
    return sorted(p for p in Path(cache_dir()).iterdir() if p.name.endswith(".symcache"))


def big_kallsyms(path: Path, lines: int = 94_101) -> Path:
    rng = random.Random(3)
    rows = [f"{0xFFFFFFFF81000000 + i * 16:016x} {rng.choice('tTdDbBrR')} sym_{i}.{rng.randint(0, 99999)}"
            for i in range(lines)]
    rows += [f"{0xFFFFFFFFC0000000 + i * 16:016x} {rng.choice('tT')} mod_sym_{i}\t[mod{i % 40}]"
             for i in range(2000)]
    path.write_text("\n".join(rows) + "\n")
    return path


# --- hits and misses -----------------------------------------------------------------------------


def test_a_hit_needs_the_same_bytes_not_the_same_metadata(system_map: Path, counted: Counter) -> None:
    first = load_cached(str(system_map))
    assert counted.calls == 1 and len(entries()) == 1
    assert load_cached(str(system_map)) == first and counted.calls == 1
    st_ = system_map.stat()
    os.utime(system_map, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))  # touched, same bytes
    assert load_cached(str(system_map)) == first and counted.calls == 1
    system_map.write_text(system_map.read_text() + "ffffffff81abd000 t state_show\n")
    changed = load_cached(str(system_map))
    assert counted.calls == 2 and len(changed.tables[0]) == len(first.tables[0]) + 1
    assert load_cached(str(system_map)) == changed and counted.calls == 2
    assert len(entries()) == 1, "a changed file replaces its entry"


def test_a_same_size_rewrite_within_one_mtime_is_not_served_stale(system_map: Path, counted: Counter) -> None:
    """Path, size, mtime, inode and device all stay the same here; only the content changed."""
    first = load_cached(str(system_map))
    before = system_map.stat()
    text = system_map.read_text()
    swapped = text.replace("state_show", "state_shox", 1)
    assert len(swapped) == len(text)
    with open(system_map, "r+") as f:  # in place: same inode
        f.write(swapped)
    os.utime(system_map, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = system_map.stat()
    identity = ("st_ino", "st_dev", "st_size", "st_mtime_ns")
    assert [getattr(after, f) for f in identity] == [getattr(before, f) for f in identity]
    got = load_cached(str(system_map))
    assert got == load_source(str(system_map)) != first


def test_path_kind_and_version_are_part_of_the_key(system_map: Path, counted: Counter,
                                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    as_map = load_cached(str(system_map))
    as_kallsyms = load_cached(str(system_map), SourceKind.KALLSYMS)
    assert counted.calls == 2
    assert as_map.kind is SourceKind.SYSTEM_MAP and as_kallsyms.kind is SourceKind.KALLSYMS
    other = tmp_path / "System.map-copy"
    shutil.copy(system_map, other)
    assert load_cached(str(other)).path == str(other) and counted.calls == 3
    monkeypatch.setattr(klp_ld, "__version__", "0.0.0-other")
    assert load_cached(str(system_map)) == as_map and counted.calls == 4


def test_changed_parser_code_is_a_miss(system_map: Path, counted: Counter,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout keeps its version number while its parsers change: their code is in the key."""
    load_cached(str(system_map))
    monkeypatch.setattr(symcache, "_code_digest", lambda: hashlib.sha256(b"edited parser").digest())
    load_cached(str(system_map))
    assert counted.calls == 2


def test_the_cache_can_be_disabled(system_map: Path, counted: Counter) -> None:
    load_cached(str(system_map), use_cache=False)
    load_cached(str(system_map), use_cache=False)
    assert counted.calls == 2 and not os.path.exists(cache_dir())


def test_an_unusable_cache_location_is_no_error(system_map: Path, counted: Counter,
                                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert load_cached(str(system_map)).kind is SourceKind.SYSTEM_MAP
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as XDG says
    assert cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "klp-ld")


def test_live_kallsyms_is_cached_by_content(counted: Counter) -> None:
    """/proc files report size 0 and change without a new mtime: only their content can key them."""
    path = "/proc/kallsyms"
    try:
        before = read_source_bytes(path)
    except KlpLdError:
        pytest.skip("no readable /proc/kallsyms")
    first = load_cached(path)
    again = load_cached(path)
    if read_source_bytes(path) != before:
        pytest.skip("a module came or went meanwhile")
    assert first == again == parse_source(before, path) and counted.calls == 1


def test_a_failed_parse_is_not_cached(tmp_path: Path, counted: Counter) -> None:
    path = tmp_path / "kallsyms"
    path.write_text("not a symbol file\n")
    for _ in range(2):
        with pytest.raises(KlpLdError):
            load_cached(str(path))
    assert counted.calls == 2 and not (os.path.isdir(cache_dir()) and entries())


# --- a cache entry never changes a result --------------------------------------------------------


def test_a_poisoned_entry_cannot_change_a_decision(tmp_path: Path, counted: Counter) -> None:
    """An entry edited to drop copies of state_show must not make position 3 disappear."""
    path = tmp_path / "kallsyms"
    shutil.copy(DATA / "kallsyms.txt", path)
    load_cached(str(path))
    for entry in entries():
        data = entry.read_bytes()
        assert b"state_show" in data
        entry.write_bytes(data.replace(b"state_show", b"state_shox"))
    idx = SymbolIndex.from_sources([load_cached(str(path))])
    assert isinstance(idx.resolve(VMLINUX, "state_show", 3), Resolved)
    assert counted.calls == 2


def mutations(blob: bytes, rng: random.Random) -> bytes:
    data = bytearray(blob)
    how = rng.randrange(5)
    if how == 0:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 1:
        del data[rng.randrange(len(data)):]
    elif how == 2:
        at = rng.randrange(len(data))
        data[at:at] = rng.randbytes(rng.randint(1, 16))
    elif how == 3:
        at = rng.randrange(len(data))
        del data[at:at + rng.randint(1, 16)]
    else:  # a length or count written as a huge number
        text = data.decode("latin-1")
        spots = [i for i, c in enumerate(text) if c.isdigit()]
        at = rng.choice(spots)
        data[at:at + 1] = b"99999999999"
    return bytes(data)


def test_damaged_entries_are_misses_and_never_stall(tmp_path: Path, counted: Counter) -> None:
    path = big_kallsyms(tmp_path / "kallsyms", lines=3000)
    fresh = load_cached(str(path))
    (entry,) = entries()
    good = entry.read_bytes()
    rng = random.Random(11)
    for _ in range(150):
        entry.write_bytes(mutations(good, rng))
        start = time.perf_counter()
        assert load_cached(str(path)) == fresh
        assert time.perf_counter() - start < 2.0
        entry.unlink(missing_ok=True)


def forged(path: Path, header: object, columns: bytes = b"", raw_header: bytes | None = None) -> bytes:
    """An entry with the right key and a valid digest around whatever `header` says."""
    key = entry_key(str(path), None, path.read_bytes())
    payload = (raw_header if raw_header is not None else json.dumps(header).encode()) + b"\n" + columns
    digest = hashlib.sha256(key + payload).hexdigest().encode()
    magic = b"klp-ld symbol cache %d\n" % symcache.CACHE_FORMAT
    return magic + key.hex().encode() + b"\n" + digest + b"\n" + payload


def _table(**changes: object) -> dict[str, object]:
    table: dict[str, object] = {
        "objname": VMLINUX, "source": "x", "kind": "kallsyms", "count": 2, "full_known": True,
        "order": "address order",
        "columns": {"names": 3, "types": 2, "values": 16, "sections": None, "core": None, "files": None}}
    table.update(changes)
    return table


def _source(tables: list[object], **changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "path": "x", "kind": "kallsyms", "notes": [], "release": None, "tables": tables,
        "exports": {"count": 0, "crcs": [],
                    "columns": {"names": 0, "modules": 0, "types": 0, "namespaces": 0}}}
    doc.update(changes)
    return doc


GOOD_COLUMNS = b"a\0b" + b"tt" + bytes(16)
HOSTILE: dict[str, tuple[object, bytes]] = {
    "huge count": (_source([_table(count=10**12)]), GOOD_COLUMNS),
    "negative count": (_source([_table(count=-1)]), GOOD_COLUMNS),
    "bool count": (_source([_table(count=True)]), GOOD_COLUMNS),
    "float count": (_source([_table(count=2.0)]), GOOD_COLUMNS),
    "column past the end": (_source([_table(columns={"names": 10**9, "types": 2, "values": 16,
                                                     "sections": None, "core": None, "files": None})]),
                            GOOD_COLUMNS),
    "rows missing": (_source([_table(count=3)]), GOOD_COLUMNS),
    "bytes left over": (_source([_table()]), GOOD_COLUMNS + b"x"),
    "short values": (_source([_table(columns={"names": 3, "types": 2, "values": 8, "sections": None,
                                              "core": None, "files": None})]), b"a\0btt" + bytes(8)),
    "core flag 2": (_source([_table(columns={"names": 3, "types": 2, "values": None, "sections": None,
                                             "core": 2, "files": None})]), b"a\0btt\x02\x00"),
    "unknown kind": (_source([_table(kind="elf")]), GOOD_COLUMNS),
    "extra field": (_source([_table(extra=1)]), GOOD_COLUMNS),
    "missing field": (_source([{k: v for k, v in _table().items() if k != "order"}]), GOOD_COLUMNS),
    "name is a number": (_source([_table(objname=7)]), GOOD_COLUMNS),
    "notes not strings": (_source([_table()], notes=[1]), GOOD_COLUMNS),
    "negative crc": (_source([], exports={"count": 1, "crcs": [-1], "columns": {
        "names": 1, "modules": 1, "types": 0, "namespaces": 0}}), b"ab"),
    "crc is a string": (_source([], exports={"count": 1, "crcs": ["1"], "columns": {
        "names": 1, "modules": 1, "types": 0, "namespaces": 0}}), b"ab"),
    "top level is a list": ([1, 2, 3], b""),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_well_signed_but_malformed_entries_are_misses(tmp_path: Path, counted: Counter, case: str) -> None:
    """What the digest cannot catch (an entry written on purpose) the field checks must."""
    path = tmp_path / "kallsyms"
    shutil.copy(DATA / "kallsyms.txt", path)
    fresh = load_cached(str(path))
    (entry,) = entries()
    header, columns = HOSTILE[case]
    entry.write_bytes(forged(path, header, columns))
    assert load_cached(str(path)) == fresh and counted.calls == 2


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"path": ' + b"9" * 5000 + b"}",
                                 b"\xff\xfe{}", b"{" + b" " * 100_000])
def test_hostile_json_is_a_quick_miss(tmp_path: Path, counted: Counter, raw: bytes) -> None:
    path = tmp_path / "kallsyms"
    shutil.copy(DATA / "kallsyms.txt", path)
    fresh = load_cached(str(path))
    (entry,) = entries()
    entry.write_bytes(forged(path, None, raw_header=raw))
    start = time.perf_counter()
    assert load_cached(str(path)) == fresh and counted.calls == 2
    assert time.perf_counter() - start < 2.0


def test_the_forged_format_is_the_real_one(tmp_path: Path, counted: Counter) -> None:
    """The cases above are only meaningful if a well-formed forged entry is accepted."""
    path = tmp_path / "kallsyms"
    shutil.copy(DATA / "kallsyms.txt", path)
    load_cached(str(path))
    (entry,) = entries()
    entry.write_bytes(forged(path, _source([_table()]), GOOD_COLUMNS))
    got = load_cached(str(path))
    assert counted.calls == 1 and got.tables[0].names == ("a", "b") and got.tables[0].values == (0, 0)


# --- whose directory -----------------------------------------------------------------------------


def test_a_directory_others_can_write_is_not_used(system_map: Path, counted: Counter) -> None:
    load_cached(str(system_map))
    os.chmod(cache_dir(), 0o775)
    load_cached(str(system_map))
    load_cached(str(system_map))
    assert counted.calls == 3, "entries from a group-writable directory were used"
    os.chmod(cache_dir(), 0o777 | 0o1000)  # sticky /tmp-style
    load_cached(str(system_map))
    assert counted.calls == 4
    os.chmod(cache_dir(), 0o700)
    load_cached(str(system_map))
    assert counted.calls == 4


def test_a_directory_of_another_user_is_not_used(system_map: Path, counted: Counter,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    load_cached(str(system_map))
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(cache_dir()).st_uid + 1)
    load_cached(str(system_map))
    assert counted.calls == 2
    assert len(entries()) == 1, "nothing may be written there either"


def test_an_entry_others_can_write_or_a_symlink_is_not_used(system_map: Path, counted: Counter,
                                                           tmp_path: Path) -> None:
    load_cached(str(system_map))
    (entry,) = entries()
    entry.chmod(0o666)
    load_cached(str(system_map))
    assert counted.calls == 2  # and the miss rewrote it privately
    (entry,) = entries()
    assert entry.stat().st_mode & 0o077 == 0
    elsewhere = tmp_path / "elsewhere"
    entry.rename(elsewhere)
    entry.symlink_to(elsewhere)
    load_cached(str(system_map))
    assert counted.calls == 3


def test_cache_directory_is_created_private(system_map: Path, counted: Counter) -> None:
    old = os.umask(0)
    try:
        load_cached(str(system_map))
    finally:
        os.umask(old)
    assert os.stat(cache_dir()).st_mode & 0o777 == 0o700
    assert all(e.stat().st_mode & 0o777 == 0o600 for e in entries())


# --- formats and speed ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[SymbolSource]:
    found = [load_source(str(DATA / name)) for name in ("kallsyms.txt", "System.map", "Symbols.list",
                                                        "Module.symvers")]
    if shutil.which("gcc") and shutil.which("ld"):
        out = tmp_path_factory.mktemp("cachesrc")
        objs = []
        for name in ("m1", "m2", "m3"):
            obj = out / f"{name}.o"
            subprocess.run(["gcc", "-c", "-o", str(obj), str(DATA / "module" / f"{name}.s")], check=True)
            objs.append(str(obj))
        subprocess.run(["ld", "-r", "-o", str(out / "fake-mod.ko"), *objs], check=True)
        vm = DATA / "vmlinux"
        subprocess.run(["gcc", "-O0", "-fno-pie", "-no-pie", "-nostdlib", "-static", "-o",
                        str(out / "vmlinux"), *(str(vm / f) for f in ("start.c", "a.c", "b.c", "c.c"))],
                       check=True)
        found += [load_source(str(out / "fake-mod.ko")), load_source(str(out / "vmlinux"))]
    return found


def test_every_kind_of_source_round_trips(sources: list[SymbolSource]) -> None:
    key = hashlib.sha256(b"k").digest()
    assert {s.kind for s in sources} >= {SourceKind.KALLSYMS, SourceKind.SYSTEM_MAP, SourceKind.SYMBOLS_LIST,
                                         SourceKind.SYMVERS}
    for src in sources:
        assert decode_entry(encode_entry(key, src), key) == src
        assert decode_entry(encode_entry(key, src), hashlib.sha256(b"other").digest()) is None


names = st.text(st.characters(blacklist_categories=["Cs"]) | st.sampled_from(["\0", "\udc80", "\udcff", "é"]),
                max_size=6)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(names, st.integers(0, 2**64 + 5), st.sampled_from("tTdD\0é")), max_size=8),
       st.lists(st.tuples(names, st.none() | st.integers(0, 10**30), names), max_size=4), names)
def test_any_parse_is_either_carried_exactly_or_not_cached(rows: list[tuple[str, int, str]],
                                                           exports: list[tuple[str, int | None, str]],
                                                           note: str) -> None:
    table = ObjectTable(VMLINUX, "src", SourceKind.KALLSYMS, tuple(r[0] for r in rows),
                        "".join(r[2] for r in rows), tuple(r[1] for r in rows),
                        files=tuple(r[0][::-1] for r in rows))
    src = SymbolSource("src", SourceKind.KALLSYMS, (table,), tuple(Export(n, c, m) for n, c, m in exports),
                       (note,))
    key = hashlib.sha256(b"k").digest()
    try:
        blob = encode_entry(key, src)
    except ValueError:
        return  # not cacheable: parsed fresh every time
    assert decode_entry(blob, key) == src


def test_a_94k_kallsyms_is_served_without_parsing_and_faster(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = big_kallsyms(tmp_path / "kallsyms")
    start = time.perf_counter()
    cold = load_cached(str(path))
    cold_time = time.perf_counter() - start

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached source was parsed again")

    monkeypatch.setattr(symcache, "parse_source", no_parsing)
    warm_time = min(_timed(lambda: load_cached(str(path))) for _ in range(3))
    assert load_cached(str(path)) == cold
    assert warm_time < cold_time, (warm_time, cold_time)


def _timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


PARALLEL = r"""
import sys
from klp_ld.ksyms.cache import load_cached
from klp_ld.ksyms.load import load_source
fresh = load_source(sys.argv[1])
for _ in range(6):
    assert load_cached(sys.argv[1]) == fresh
"""


def test_parallel_links_share_the_cache_safely(tmp_path: Path) -> None:
    """make -j: several processes miss, parse and write the same entry at once."""
    path = big_kallsyms(tmp_path / "kallsyms", lines=20_000)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", PARALLEL, str(path)], env=env, stderr=subprocess.PIPE)
             for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    names_left = os.listdir(tmp_path / "cache" / "klp-ld")
    assert names_left == [entry_name(str(path), None)], names_left
