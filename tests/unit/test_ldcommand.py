"""The command ld really runs, computed once as data: argv, response files, the names to give back."""

from __future__ import annotations

import time
from pathlib import Path

from klp_ld.cmdline import parse, parse_response_text
from klp_ld.link import LdCommand, Renamer, display_argv, ld_command
from klp_ld.runld import write_response_files


def _index(cmd, value: str) -> int:
    return next(i for i, a in enumerate(cmd.expanded) if a.value == value)


def test_output_in_a_response_file_is_rewritten_as_data(tmp_path: Path) -> None:
    """The bug: the report's second rewrite rewrote the response file ld was about to read. Now
    the command is data; nothing is written while it is computed, and the user's file never."""
    (tmp_path / "all.rsp").write_text("-r -o out.o a.o b.o\n")
    cmd = parse(["@all.rsp"], {}, str(tmp_path))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert cmd.output_arg is not None
    replace = {_index(cmd, "a.o"): "/tmp/copy/a.o", cmd.output_arg.index: "/tmp/.klp-ld-1234"}
    command = ld_command(cmd, replace, str(scratch))
    assert list(scratch.iterdir()) == []
    assert command.argv == (f"@{scratch}/args-0.rsp",)
    ((path, text),) = command.response_files
    assert path == f"{scratch}/args-0.rsp"
    assert parse_response_text(text) == ["-r", "-o", "/tmp/.klp-ld-1234", "/tmp/copy/a.o", "b.o"]
    write_response_files(command)
    assert (scratch / "args-0.rsp").read_text() == text
    assert (tmp_path / "all.rsp").read_text() == "-r -o out.o a.o b.o\n"


def test_untouched_arguments_and_response_files_stay(tmp_path: Path) -> None:
    (tmp_path / "objs.rsp").write_text("a.o\n'b c.o'\n")
    cmd = parse(["-r", "@objs.rsp", "--output=out.o", "-Map", "m.map"], {}, str(tmp_path))
    out = cmd.output_arg
    assert out is not None and (out.prefix, out.value) == ("--output=", "out.o")
    command = ld_command(cmd, {out.index: out.prefix + "/t/o"}, str(tmp_path))
    assert command.argv == ("-r", "@objs.rsp", "--output=/t/o", "-Map", "m.map")
    assert command.response_files == ()


def test_nested_response_files_are_flattened_once(tmp_path: Path) -> None:
    (tmp_path / "inner.rsp").write_text("b.o c.o\n")
    (tmp_path / "outer.rsp").write_text("a.o @inner.rsp d.o\n")
    cmd = parse(["-r", "-o", "x.o", "@outer.rsp", "@inner.rsp"], {}, str(tmp_path))
    c_indices = [i for i, a in enumerate(cmd.expanded) if a.value == "c.o"]
    command = ld_command(cmd, {c_indices[0]: "/t/c.o"}, "/scratch")
    assert command.argv == ("-r", "-o", "x.o", "@/scratch/args-3.rsp", "@inner.rsp")
    assert parse_response_text(command.response_files[0][1]) == ["a.o", "b.o", "/t/c.o", "d.o"]


def test_an_output_for_a_command_without_one_comes_first(tmp_path: Path) -> None:
    """ld reads nothing after `--`, so an added `-o` goes in front."""
    cmd = parse(["-r", "a.o", "--", "ignored.o"], {}, str(tmp_path))
    command = ld_command(cmd, {}, "/scratch", prepend=("-o", "/t/out"))
    assert command.argv == ("-o", "/t/out", "-r", "a.o", "--", "ignored.o")


def test_linear_in_the_number_of_arguments(tmp_path: Path) -> None:
    """8,000 arguments took 5-10 s through the old rewrite (every argument scanned every other)."""
    args = ["-r", "-o", "out.o", "a.o"] + [f"-u sym{n}" for n in range(8000)]
    cmd = parse(args, {}, str(tmp_path))
    assert cmd.output_arg is not None
    started = time.monotonic()
    command = ld_command(cmd, {_index(cmd, "a.o"): "/t/a.o", cmd.output_arg.index: "/t/out"}, "/scratch")
    assert time.monotonic() - started < 0.5
    assert command.argv[:4] == ("-r", "-o", "/t/out", "/t/a.o") and len(command.argv) == len(args)


def test_renamer_gives_back_the_users_names() -> None:
    names = {"/tmp/klp-ld-x/0000-a.o": "a.o", "/tmp/klp-ld-x/0000-a.o.bak": "a.o.bak",
             "/out/.klp-ld-1234abcd": "out.ko", "/tmp/klp-ld-x/side-0": "out.map"}
    renamer = Renamer(names, anchors=("/tmp/klp-ld-x", "/out/.klp-ld-1234abcd"))
    text = (b"ld: /tmp/klp-ld-x/0000-a.o: in function `f':\n"
            b"LOAD /tmp/klp-ld-x/0000-a.o.bak\nOUTPUT(/out/.klp-ld-1234abcd elf64-x86-64)\n"
            b"/tmp/klp-ld-x/unknown \xff\n")
    assert renamer.apply(text) == (b"ld: a.o: in function `f':\nLOAD a.o.bak\nOUTPUT(out.ko elf64-x86-64)\n"
                                   b"/tmp/klp-ld-x/unknown \xff\n")
    command = LdCommand(("-o", "/out/.klp-ld-1234abcd", "-Map=/tmp/klp-ld-x/side-0"))
    assert display_argv(command, renamer) == ["-o", "out.ko", "-Map=out.map"]


def test_renamer_scales() -> None:
    names = {f"/tmp/klp-ld-x/{n:04d}-o{n}.o": f"o{n}.o" for n in range(8000)}
    renamer = Renamer(names, anchors=("/tmp/klp-ld-x",))
    text = "".join(f"LOAD /tmp/klp-ld-x/{n:04d}-o{n}.o\n" for n in range(8000)).encode()
    started = time.monotonic()
    out = renamer.apply(text)
    assert time.monotonic() - started < 0.5
    assert out == "".join(f"LOAD o{n}.o\n" for n in range(8000)).encode()
