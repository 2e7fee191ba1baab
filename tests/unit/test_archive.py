"""Objects inside archives: read like objects, kept apart through `ld -r`, written back for ld."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klp_ld import archive as ar_mod
from klp_ld import cmdline
from klp_ld.archive import (
    Archive,
    Member,
    index_symbols,
    parse_archive,
    read_archive_file,
    with_members,
    write_archive,
)
from klp_ld.diag import KlpLdError
from klp_ld.elf.consts import SHN_LIVEPATCH
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf, read_elf_file
from klp_ld.pipeline import TargetHint, find_sources, harvest_inputs, plan_renames, read_inputs, write_copies
from klp_ld.report import Report

from .conftest import Toolchain, run_klp_ld
from .test_final_link import _final

POS2 = ".klp.sym.vmlinux.state_show,2"
POS3 = ".klp.sym.vmlinux.state_show,3"


def _objects(tmp_path: Path, toolchain: Toolchain, sources: list[str], where: str = ".") -> list[str]:
    """Copy fixture objects under `tmp_path/where`; returns their paths relative to `tmp_path`."""
    directory = tmp_path / where
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for source in sources:
        built = toolchain.build(source)
        shutil.copy(built, directory / built.name)
        out.append(str(Path(where) / built.name))
    return out


def _ar(tmp_path: Path, name: str, members: list[str], thin: bool = False, index: bool = True) -> Path:
    """`ar` as a build would run it (deterministic, so that bytes can be compared)."""
    (tmp_path / name).unlink(missing_ok=True)
    flags = "rcD" + ("T" if thin else "") + ("" if index else "S")
    subprocess.run(["ar", flags, name, *members], cwd=tmp_path, check=True)
    return tmp_path / name


def _ld(tmp_path: Path, args: list[str]) -> bytes:
    out = tmp_path / "ld-out.o"
    out.unlink(missing_ok=True)
    subprocess.run(["ld", "-m", "elf_x86_64", "-r", "-o", str(out), *args], cwd=tmp_path, check=True)
    return out.read_bytes()


def _rebuilt(archive: Archive) -> Archive:
    """What the partial link writes: every ELF member's index entries from its symbol table."""
    return with_members(archive, {n: (m.data, index_symbols(read_elf(m.data, m.display)))
                                  for n, m in enumerate(archive.members) if m.is_elf})


def _relocs_by_function(obj: ElfObject) -> dict[str, set[str]]:
    """Function -> the names its state_show relocations use (annotation records left out)."""
    seen: dict[str, set[str]] = {}
    for target, rela in obj.relocs_against():
        if rela.symbol is None or "state_show" not in rela.symbol.name:
            continue
        if target.name.startswith(".klp.module_relocs."):
            continue
        hit = obj.symbol_at(target, rela.offset)
        assert hit is not None
        seen.setdefault(hit[0].name, set()).add(rela.symbol.name)
    return seen


# --- reading and writing -------------------------------------------------------------------------


def test_plain_archive_reads_as_ar_lists_it_and_writes_back_byte_for_byte(tmp_path, toolchain):
    objs = _objects(tmp_path, toolchain, ["seed_a.c", "plain.c"])
    long_name = tmp_path / "a_member_with_a_long_name.o"
    shutil.copy(tmp_path / objs[1], long_name)
    (tmp_path / "notes.txt").write_text("not an object\n")
    lib = _ar(tmp_path, "lib.a", [*objs, long_name.name, "notes.txt"])

    archive = read_archive_file(str(lib), "lib.a")
    assert not archive.thin and archive.indexed
    assert [m.name for m in archive.members] == ["seed_a.o", "plain.o", long_name.name, "notes.txt"]
    assert [m.display for m in archive.members] == [f"lib.a({m.name})" for m in archive.members]
    assert archive.members[0].data == (tmp_path / objs[0]).read_bytes()
    assert archive.members[3].data == b"not an object\n" and not archive.members[3].is_elf
    # The index as ar wrote it is the index the ELF reader gives.
    for member in archive.members[:3]:
        assert member.symbols == index_symbols(read_elf(member.data, member.display))
    assert archive.members[1].symbols == ("plain_call",)
    assert write_archive(_rebuilt(archive)) == lib.read_bytes()


def test_archive_without_index_is_written_without_one(tmp_path, toolchain):
    lib = _ar(tmp_path, "lib.a", _objects(tmp_path, toolchain, ["plain.c"]), index=False)
    archive = read_archive_file(str(lib), "lib.a")
    assert not archive.indexed
    assert write_archive(_rebuilt(archive)) == lib.read_bytes()


def test_thin_archive_members_are_files_beside_it_and_named_as_ld_names_them(tmp_path, toolchain):
    objs = _objects(tmp_path, toolchain, ["seed_a.c", "plain.c"], where="objs")
    (tmp_path / "lib").mkdir()
    subprocess.run(["ar", "rcDT", "lib/t.a", *objs], cwd=tmp_path, check=True)
    archive = read_archive_file(str(tmp_path / "lib/t.a"), "lib/t.a")
    assert archive.thin and archive.indexed
    assert [m.name for m in archive.members] == ["../objs/seed_a.o", "../objs/plain.o"]
    # GNU ld calls a thin member by its path: "lib/../objs/plain.o: in function ...".
    assert [m.display for m in archive.members] == ["lib/../objs/seed_a.o", "lib/../objs/plain.o"]
    assert archive.members[1].data == (tmp_path / objs[1]).read_bytes()
    assert archive.members[1].symbols == ("plain_call",)

    copy = parse_archive(write_archive(archive), "copy.a")
    assert not copy.thin
    assert [(m.name, m.data, m.symbols) for m in copy.members] == \
        [(m.name, m.data, m.symbols) for m in archive.members]


def test_thin_archive_naming_a_member_of_another_archive(tmp_path, toolchain):
    objs = _objects(tmp_path, toolchain, ["plain.c", "seed_a.c"])
    _ar(tmp_path, "inner.a", objs[:1])
    # GNU ar stores `/N:offset`: the member whose header is at `offset` in inner.a.
    _ar(tmp_path, "outer.a", ["inner.a", objs[1]], thin=True)
    archive = read_archive_file(str(tmp_path / "outer.a"), "outer.a")
    assert [(m.name, m.display) for m in archive.members] == [("plain.o", "inner.a(plain.o)"),
                                                              ("seed_a.o", "seed_a.o")]
    assert archive.members[0].data == (tmp_path / objs[0]).read_bytes()
    assert archive.members[0].symbols == ("plain_call",)


def _bsd_archive(members: list[tuple[str, bytes]], symbols: list[tuple[str, int]]) -> bytes:
    """A BSD archive as llvm-ar --format=bsd writes one: `#1/N` names, a `__.SYMDEF` index."""
    def header(name: bytes, size: int) -> bytes:
        return (name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"644".ljust(8)
                + str(size).encode().ljust(10) + b"`\n")

    def member(name: str, data: bytes) -> bytes:
        raw = name.encode().ljust((len(name) + 8) // 8 * 8, b"\0")
        body = raw + data
        return header(b"#1/%d" % len(raw), len(body)) + body + b"\n" * (len(body) % 2)

    strings = b"".join(s.encode() + b"\0" for s, _ in symbols)
    bodies = [member(name, data) for name, data in members]
    index_name = "__.SYMDEF"
    index_size = len(member(index_name, b"\0" * (8 + 8 * len(symbols) + len(strings)))) - 60
    offsets = [8 + 60 + index_size]
    for body in bodies[:-1]:
        offsets.append(offsets[-1] + len(body))
    strx = [0]
    for s, _ in symbols[:-1]:
        strx.append(strx[-1] + len(s) + 1)
    table = b"".join(struct.pack("<II", x, offsets[n]) for x, (_, n) in zip(strx, symbols, strict=True))
    index = struct.pack("<I", len(table)) + table + struct.pack("<I", len(strings)) + strings
    return b"!<arch>\n" + member(index_name, index) + b"".join(bodies)


def test_bsd_archive(tmp_path, toolchain):
    data = (tmp_path / _objects(tmp_path, toolchain, ["plain.c"])[0]).read_bytes()
    raw = _bsd_archive([("a name with spaces.o", data), ("notes.txt", b"text\n")],
                       [("plain_call", 0), ("not_read_from_elf", 1)])
    archive = parse_archive(raw, "bsd.a")
    assert archive.indexed
    assert [(m.name, m.data, m.symbols) for m in archive.members] == [
        ("a name with spaces.o", data, ("plain_call",)), ("notes.txt", b"text\n", ("not_read_from_elf",))]
    # Written as GNU ld reads archives; the member that is not ELF keeps its index entries.
    copy = parse_archive(write_archive(_rebuilt(archive)), "copy.a")
    assert [(m.name, m.data, m.symbols) for m in copy.members] == \
        [(m.name, m.data, m.symbols) for m in archive.members]


def test_index_past_4gib_is_sym64_and_ld_reads_it(tmp_path, toolchain, monkeypatch):
    objs = _objects(tmp_path, toolchain, ["plain.c", "seed_a.c"])
    archive = _rebuilt(read_archive_file(str(_ar(tmp_path, "lib.a", objs)), "lib.a"))
    # Real offsets past 4 GiB need a 4 GiB file; move the threshold instead.
    monkeypatch.setattr(ar_mod, "_MAX_OFFSET32", 8)
    wide = write_archive(archive)
    assert wide[8:24] == b"/SYM64/".ljust(16)
    (count,) = struct.unpack_from(">Q", wide, 68)
    assert count == sum(len(m.symbols) for m in archive.members)
    assert int(wide[56:66]) % 8 == 0  # the 64-bit index is padded to 8 bytes, as binutils pads it
    reread = parse_archive(wide, "wide.a")
    assert [(m.name, m.symbols) for m in reread.members] == [(m.name, m.symbols) for m in archive.members]
    (tmp_path / "wide.a").write_bytes(wide)
    # GNU ld finds members through the 64-bit index exactly as through ar's.
    assert _ld(tmp_path, ["-u", "plain_call", "wide.a"]) == _ld(tmp_path, ["-u", "plain_call", "lib.a"])


@pytest.mark.parametrize("whole", [True, False], ids=["whole-archive", "searched"])
@pytest.mark.parametrize("thin", [False, True], ids=["plain", "thin"])
def test_rewritten_archive_links_like_the_original(tmp_path, toolchain, whole, thin):
    objs = _objects(tmp_path, toolchain, ["plain.c", "auto.c"], where="o")
    members = list(objs)
    if not whole:  # --whole-archive refuses a member that is not an object, so only ld's search sees it
        (tmp_path / "o/notes.txt").write_text("not an object\n")
        members.append("o/notes.txt")
    lib = _ar(tmp_path, "lib.a", members, thin=thin)
    archive = read_archive_file(str(lib), "lib.a")
    (tmp_path / "copy.a").write_bytes(write_archive(_rebuilt(archive)))
    args = ["--whole-archive", "{}", "--no-whole-archive"] if whole else ["-u", "plain_call", "{}"]
    original = _ld(tmp_path, [a.format("lib.a") for a in args])
    assert _ld(tmp_path, [a.format("copy.a") for a in args]) == original
    assert b"plain_call" in original


def test_with_members_keeps_order_names_and_the_rest(tmp_path):
    archive = Archive("lib.a", False, True, (
        Member("a.o", "lib.a(a.o)", b"\x7fELF-a", ("a",)),
        Member("notes.txt", "lib.a(notes.txt)", b"odd", (), "123", "1", "2", "100600"),
        Member("c.o", "lib.a(c.o)", b"\x7fELF-c", ("c",))))
    changed = with_members(archive, {2: (b"\x7fELF-new-c", ("c", "c2"))})
    reread = parse_archive(write_archive(changed), "lib.a")
    assert reread.members == (archive.members[0], archive.members[1],
                              Member("c.o", "lib.a(c.o)", b"\x7fELF-new-c", ("c", "c2")))


# --- malformed archives: one clean error naming the archive and member ----------------------------


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory, toolchain: Toolchain) -> bytes:
    """An archive with an index, a long-name table and one member."""
    directory = tmp_path_factory.mktemp("sample")
    shutil.copy(toolchain.build("plain.c"), directory / "a_member_with_a_long_name.o")
    return _ar(directory, "lib.a", ["a_member_with_a_long_name.o"]).read_bytes()


def _member_offset(data: bytes, n: int) -> int:
    """Where the header of member `n` is, counting neither the index nor the long-name table."""
    pos = 8
    while True:
        size = int(data[pos + 48:pos + 58])
        if data[pos:pos + 16].rstrip() not in (b"/", b"//"):
            if n == 0:
                return pos
            n -= 1
        pos += 60 + size + size % 2


MALFORMED: dict[str, tuple[Callable[[bytes, int], bytes], str]] = {
    "cut off": (lambda d, h: d[:-100], r"^lib\.a\(a_member_with_a_long_name\.o\): member is cut off"),
    "bad header end": (lambda d, h: d[:h + 58] + b"xx" + d[h + 60:],
                       r"^lib\.a: member header at 0x[0-9a-f]+ does not end in `\\n"),
    "bad size": (lambda d, h: d[:h + 48] + b"12x4      " + d[h + 58:],
                 r"^lib\.a: member header at 0x[0-9a-f]+ has a size that is not a decimal number"),
    "long name outside the table": (lambda d, h: d[:h] + b"/999".ljust(16) + d[h + 16:],
                                    r"names the long name at 999, but the long-name table has 30 bytes"),
    "short tail": (lambda d, h: d + b"\n" + b"x" * 20, r"too few for a member header"),
    "index count": (lambda d, h: d[:68] + struct.pack(">I", 1 << 30) + d[72:],
                    r"^lib\.a\(/\): symbol index lists 1073741824 symbols"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_archive_is_one_clean_error(sample, case):
    mutate, pattern = MALFORMED[case]
    with pytest.raises(KlpLdError) as caught:
        parse_archive(mutate(sample, _member_offset(sample, 0)), "lib.a")
    (diag,) = caught.value.diagnostics
    assert diag.severity == "error"
    assert re.search(pattern, diag.render().removeprefix("klp-ld: error: ")), diag.render()


def test_thin_member_that_cannot_be_read_is_one_error(tmp_path, toolchain):
    objs = _objects(tmp_path, toolchain, ["plain.c"])
    lib = _ar(tmp_path, "t.a", objs, thin=True)
    (tmp_path / objs[0]).unlink()
    with pytest.raises(KlpLdError) as caught:
        read_archive_file(str(lib), "t.a")
    (diag,) = caught.value.diagnostics
    assert diag.render().startswith("klp-ld: error: t.a(plain.o): cannot read the member's file ")
    assert "No such file or directory" in diag.render()


def test_thin_archive_naming_itself_ends_in_an_error():
    names = b"t.a/\n\n"
    header = (b"/0:8".ljust(16) + b"0".ljust(12) + b"0".ljust(6) * 2 + b"644".ljust(8) + b"100".ljust(10)
              + b"`\n")
    data = (b"!<thin>\n" + b"//".ljust(48) + str(len(names)).encode().ljust(10) + b"`\n" + names + header)
    with pytest.raises(KlpLdError) as caught:
        parse_archive(data, "t.a", lambda name: data)
    (diag,) = caught.value.diagnostics
    assert diag.render() == "klp-ld: error: t.a(t.a): thin archives nest more than 8 deep"


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_archives_never_raise_anything_else(sample, data):
    raw = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.sampled_from(b"\0 /09\n:#!\xff"))
    cut = data.draw(st.integers(8, len(raw)))
    try:
        parsed = parse_archive(bytes(raw[:cut]), "lib.a", lambda name: b"")
    except KlpLdError as exc:
        assert len(exc.diagnostics) == 1
        return
    write_archive(parsed)  # whatever parses can be written back


# --- the partial and final links -----------------------------------------------------------------


def test_members_keep_their_own_positions_through_the_partial_and_final_link(tmp_path, toolchain,
                                                                               watch_inputs):
    objs = _objects(tmp_path, toolchain, ["seed_a.c", "seed_b.c", "plain.c"])
    lib = _ar(tmp_path, "lib.a", objs)
    watch_inputs(lib)
    result = run_klp_ld(["-m", "elf_x86_64", "-r", "-o", "m.o", "--whole-archive", "lib.a",
                         "--no-whole-archive", "--klp-verbose"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"lib.a(seed_a.o): rename state_show -> {POS2}" in result.stderr
    assert f"lib.a(seed_b.o): rename state_show -> {POS3}" in result.stderr
    m_o = read_elf_file(str(tmp_path / "m.o"))
    assert _relocs_by_function(m_o) == {
        **{f"seed_a_{f}": {POS2} for f in ("pc32", "abs", "call", "ptr")},
        **{f"seed_b_{f}": {POS3} for f in ("pc32", "abs", "call", "ptr")},
        "plain_call": {"state_show"},  # not annotated: takes neither position
    }

    final = _final(tmp_path, toolchain, [tmp_path / "m.o"])
    assert final.returncode == 0, final.stderr
    assert "annotated more than once" not in final.stderr
    ko = read_elf_file(str(tmp_path / "m.ko"))
    klp: dict[str, set[str]] = {}
    for sec in ko.sections:
        if sec.name.startswith(".klp.rela.") and sec.info_section is not None:
            for rela in sec.relocs:
                assert rela.symbol is not None and rela.symbol.special == SHN_LIVEPATCH
                hit = ko.symbol_at(sec.info_section, rela.offset)
                assert hit is not None
                klp.setdefault(hit[0].name.split("_")[1], set()).add(rela.symbol.name)
    assert klp == {"a": {POS2}, "b": {POS3}}
    plain = _relocs_by_function(ko)["plain_call"]
    assert plain == {"state_show"}
    assert not any(s.name == "state_show" and s.special == SHN_LIVEPATCH for s in ko.symbols)


def test_searched_archive_is_rewritten_with_an_index_ld_can_use(tmp_path, toolchain, watch_inputs):
    objs = _objects(tmp_path, toolchain, ["seed_a.c", "seed_b.c", "plain.c"])
    (tmp_path / "notes.txt").write_text("not an object\n")
    lib = _ar(tmp_path, "lib.a", [*objs, "notes.txt"])
    watch_inputs(lib)
    result = run_klp_ld(["-r", "-o", "m.o", "-u", "seed_a_call", "-u", "seed_b_call", "lib.a",
                         "--klp-keep-tmp"], tmp_path)
    assert result.returncode == 0, result.stderr
    kept = re.search(r"temporary files kept in (\S+)", result.stderr)
    assert kept is not None
    try:
        (copy,) = Path(kept.group(1)).glob("*lib.a")
        rewritten = read_archive_file(str(copy), "copy.a")
    finally:
        shutil.rmtree(kept.group(1))
    original = read_archive_file(str(lib), "lib.a")
    assert [m.name for m in rewritten.members] == [m.name for m in original.members]
    assert [m.symbols for m in rewritten.members] == [m.symbols for m in original.members]
    assert rewritten.members[3].data == b"not an object\n"
    assert rewritten.members[2].data == original.members[2].data  # plain.o: nothing to rename
    assert rewritten.members[0].data != original.members[0].data
    m_o = read_elf_file(str(tmp_path / "m.o"))
    assert _relocs_by_function(m_o) == {
        **{f"seed_a_{f}": {POS2} for f in ("pc32", "abs", "call", "ptr")},
        **{f"seed_b_{f}": {POS3} for f in ("pc32", "abs", "call", "ptr")},
    }  # plain.o was not pulled in: nothing asked for plain_call


def test_thin_archive_through_the_partial_link(tmp_path, toolchain, watch_inputs):
    objs = _objects(tmp_path, toolchain, ["seed_a.c", "plain.c"], where="objs")
    (tmp_path / "lib").mkdir()
    subprocess.run(["ar", "rcDT", "lib/t.a", *objs], cwd=tmp_path, check=True)
    seed_b = _objects(tmp_path, toolchain, ["seed_b.c"])
    watch_inputs(tmp_path / "lib/t.a", *(tmp_path / o for o in objs))
    result = run_klp_ld(["-r", "-o", "m.o", *seed_b, "--whole-archive", "lib/t.a", "--klp-verbose"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"lib/../objs/seed_a.o: rename state_show -> {POS2}" in result.stderr
    m_o = read_elf_file(str(tmp_path / "m.o"))
    assert _relocs_by_function(m_o) == {
        **{f"seed_a_{f}": {POS2} for f in ("pc32", "abs", "call", "ptr")},
        **{f"seed_b_{f}": {POS3} for f in ("pc32", "abs", "call", "ptr")},
        "plain_call": {"state_show"},
    }


def _prepare(tmp_path: Path, argv: list[str]) -> tuple[cmdline.LinkCommand, dict[int, str], Path]:
    cmd = cmdline.parse([*argv, "--klp-no-discover"], {}, str(tmp_path))
    cmd.kind = cmdline.PARTIAL
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    report = Report(kind=cmd.kind, cwd=cmd.cwd, argv=list(cmd.ld_argv), output=cmd.output)
    inputs = read_inputs(cmd)
    harvests = harvest_inputs(inputs)
    resolver, missing = find_sources(cmd, inputs, harvests, TargetHint.of(cmd), report)
    renamed = plan_renames(cmd, inputs, harvests, resolver, missing, report)
    return cmd, write_copies(inputs, renamed, str(tmpdir)), tmpdir


def test_thin_archive_alone_is_replaced_by_a_plain_copy(tmp_path, toolchain):
    objs = _objects(tmp_path, toolchain, ["seed_a.c", "seed_b.c"], where="objs")
    (tmp_path / "notes.txt").write_text("odd")
    lib = _ar(tmp_path, "t.a", [*objs, "notes.txt"], thin=True)
    cmd, replaced, _ = _prepare(tmp_path, ["-r", "-o", "m.o", "--whole-archive", "t.a"])
    (at,) = replaced
    assert cmd.expanded[at].value == "t.a"
    copy = read_archive_file(replaced[at], "copy.a")
    original = read_archive_file(str(lib), "t.a")
    assert not copy.thin and copy.indexed
    assert [m.name for m in copy.members] == ["objs/seed_a.o", "objs/seed_b.o", "notes.txt"]
    assert copy.members[2].data == b"odd"
    for n, want in ((0, POS2), (1, POS3)):
        names = {s.name for s in read_elf(copy.members[n].data, "m").symbols if s.is_undefined}
        assert want in names and "state_show" not in names
        assert copy.members[n].symbols == original.members[n].symbols


def test_archive_without_renames_is_not_copied(tmp_path, toolchain):
    objs = _objects(tmp_path, toolchain, ["plain.c"])
    _ar(tmp_path, "lib.a", objs)
    seed = _objects(tmp_path, toolchain, ["seed_a.c"])
    _, replaced, _ = _prepare(tmp_path, ["-r", "-o", "m.o", *seed, "lib.a"])
    assert list(replaced) == [3]  # seed_a.o only


def test_diagnostics_name_the_member_as_ld_does(tmp_path, toolchain):
    objs = _objects(tmp_path, toolchain, ["seed_a.c", "conflict-FAIL.c"])
    _ar(tmp_path, "lib.a", objs)
    result = run_klp_ld(["-r", "-o", "m.o", "--whole-archive", "lib.a"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("klp-ld: error: lib.a(conflict-FAIL.o): .klp.module_relocs.vmlinux: "
                                    "state_show: state_show is annotated more than once"), result.stderr
    assert not (tmp_path / "m.o").exists()


def test_malformed_archive_fails_the_link_with_one_clean_error(tmp_path, toolchain):
    objs = _objects(tmp_path, toolchain, ["seed_a.c", "seed_b.c"])
    lib = _ar(tmp_path, "lib.a", objs)
    data = lib.read_bytes()
    lib.write_bytes(data[:-200])
    result = run_klp_ld(["-r", "-o", "m.o", "--whole-archive", "lib.a"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"klp-ld: error: lib.a(seed_b.o): member is cut off: its header at {_member_offset(data, 1):#x} "
        f"gives {len((tmp_path / objs[1]).read_bytes())} bytes, the archive has "
        f"{len((tmp_path / objs[1]).read_bytes()) - 200} after it"]
    assert not (tmp_path / "m.o").exists()

