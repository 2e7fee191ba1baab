"""The output policy and the command as ld really runs it, end to end through the real command.

Every link klp-ld does writes a regular file, complete, or nothing: whatever the spelling of `-o`
(in an `@file`, abbreviated, absent), whatever is at the output path (a device, a FIFO, an
input), however long its name, in a directory that takes no new file. Side outputs name the
user's files, `--dry-run` writes nothing, and ld's messages name the user's inputs. Each test runs
the checkout's klp-ld in a private directory with a private TMPDIR, so leftovers are seen exactly.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from . import drive
from .conftest import OBJECTS, Toolchain
from .test_safety import _without_dac_override

GOOD = b"a previous good output\n"


class Work:
    """run/ holds the inputs (a.o and b.o: two meanings of state_show), tmp/ is TMPDIR."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.run = base / "run"
        self.tmp = base / "tmp"

    def klp_ld(self, args: list[str], *, wrap: list[str] | None = None, timeout: float = 60,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**drive.klp_ld_env(self.tmp), **(env or {})}
        return subprocess.run([*(wrap or []), str(drive.WRAPPER), *args], cwd=self.run, env=full_env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def ld(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ld", *args], cwd=self.run, capture_output=True, text=True, check=False)

    def leftovers(self) -> list[str]:
        return [str(p) for p in self.tmp.iterdir()] + [str(p) for p in self.run.rglob(".klp-ld-*")]

    def reference(self, args: list[str], name: str) -> bytes:
        """What klp-ld writes for the plain spelling of the same link."""
        done = self.klp_ld([*args, "-o", name])
        assert done.returncode == 0, done.stderr
        data = (self.run / name).read_bytes()
        (self.run / name).unlink()
        return data


@pytest.fixture
def work(tmp_path: Path, toolchain: Toolchain, watch_inputs: Callable[..., None]) -> Work:
    w = Work(tmp_path)
    w.run.mkdir()
    w.tmp.mkdir()
    for name, src in (("a.o", "seed_a.c"), ("b.o", "seed_b.c"), ("modinfo.o", "modinfo.c"),
                      ("unannotated.o", "plain.c")):
        shutil.copy(toolchain.build(src), w.run / name)
    shutil.copy(OBJECTS / "module.lds", w.run / "module.lds")
    done = w.klp_ld(["-r", "-o", "m.o", "a.o", "b.o"])
    assert done.returncode == 0, done.stderr
    watch_inputs(*(w.run / n for n in ("a.o", "b.o", "modinfo.o", "module.lds", "m.o", "unannotated.o")))
    return w


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("klp-ld: error: "), result.stderr
    return lines[0]


def _klp_symbols(data: bytes) -> set[str]:
    """The livepatch identities still waiting for the final link (undefined, not SHN_LIVEPATCH)."""
    from klp_ld.elf.read import read_elf

    return {s.name for s in read_elf(data, "out").symbols
            if s.name.startswith(".klp.sym.") and s.is_undefined}


# ---------------------------------------------------------------------------------------------
# Every spelling of -o, -r and @file


def test_output_inside_a_response_file_partial(work: Work) -> None:
    """`-o` in an @file: ld must write klp-ld's temporary output, never the user's path behind
    klp-ld's back (the output was left with 0 bytes)."""
    want = work.reference(["-r", "a.o", "b.o"], "ref.o")
    (work.run / "all.rsp").write_text("-r -o out.o a.o b.o\n")
    done = work.klp_ld(["@all.rsp"])
    assert done.returncode == 0, done.stderr
    assert (work.run / "out.o").read_bytes() == want
    assert (work.run / "all.rsp").read_text() == "-r -o out.o a.o b.o\n"
    assert work.leftovers() == []


def test_output_inside_a_response_file_final(work: Work) -> None:
    """The final link's -o in an @file: the converted module lands there, not ld's raw output."""
    want = work.reference(["-r", "-T", "module.lds", "m.o", "modinfo.o"], "ref.ko")
    (work.run / "fin.rsp").write_text("-r -T module.lds -o out.ko m.o modinfo.o\n")
    done = work.klp_ld(["@fin.rsp"])
    assert done.returncode == 0, done.stderr
    data = (work.run / "out.ko").read_bytes()
    assert data == want and _klp_symbols(data) == set() and _klp_symbols((work.run / "m.o").read_bytes())
    assert work.leftovers() == []


@pytest.mark.parametrize(("args", "output"), [
    (["-r", "a.o", "b.o"], "a.out"),                       # no -o: ld writes a.out
    (["-r", "--outp=ab.o", "a.o", "b.o"], "ab.o"),           # an abbreviation
    (["--relocatable", "--outpu", "ab.o", "a.o", "b.o"], "ab.o"),
    (["-Sr", "-oab.o", "a.o", "b.o"], "ab.o"),               # grouped short options
    (["-r", "-output", "a.o", "b.o"], "utput"),               # GNU ld: -o utput, then an input
])
def test_every_spelling_is_a_livepatch_link(work: Work, args: list[str], output: str) -> None:
    """Annotations must never merge because of how the command was spelled: each output keeps
    both meanings of state_show apart, as the plain spelling does."""
    done = work.klp_ld(args)
    assert done.returncode == 0, done.stderr
    names = _klp_symbols((work.run / output).read_bytes())
    assert names == {".klp.sym.vmlinux.state_show,2", ".klp.sym.vmlinux.state_show,3"}, names
    assert work.leftovers() == []


# ---------------------------------------------------------------------------------------------
# What is at the output path


def _special(work: Work, kind: str) -> Path:
    path = work.run / "special"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:  # a private /dev/null: the real one must never be put at risk by a test
        if os.geteuid() != 0:
            pytest.skip("creating a character device needs root")
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


@pytest.mark.parametrize("kind", ["character-device", "fifo", "directory"])
@pytest.mark.parametrize("link", ["partial", "final"])
def test_a_non_regular_output_is_refused(work: Work, kind: str, link: str) -> None:
    """ld writes into a device or FIFO; a rename would replace it with a regular file (as root,
    `-o /dev/null` replaced /dev/null). klp-ld refuses up front, saying what ld would do."""
    path = _special(work, kind)
    before = os.lstat(path)
    args = ["-r", "-o", "special", "a.o", "b.o"] if link == "partial" else \
        ["-r", "-T", "module.lds", "-o", "special", "m.o", "modinfo.o"]
    done = work.klp_ld(args, timeout=30)
    line = _one_error(done)
    assert "special" in line and kind.replace("-", " ") in line.lower(), line
    after = os.lstat(path)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    assert work.leftovers() == []


def test_a_pass_through_writes_where_ld_writes(work: Work) -> None:
    """Without annotations klp-ld is ld: `-o` naming a device goes to the device, as ld does it."""
    path = _special(work, "character-device")
    done = work.klp_ld(["-r", "-o", "special", "unannotated.o"])
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.lstat(path).st_mode)


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "symlink", "hardlink"])
def test_an_input_as_output_is_refused(work: Work, spelling: str) -> None:
    """ld refuses "input file 'a.o' is the same as output file"; klp-ld overwrote the input."""
    output = {"same": "a.o", "dot-slash": "./a.o", "symlink": "link.o", "hardlink": "hard.o"}[spelling]
    if spelling == "symlink":
        (work.run / "link.o").symlink_to("a.o")
    elif spelling == "hardlink":
        os.link(work.run / "a.o", work.run / "hard.o")
    done = work.klp_ld(["-r", "-o", output, "a.o", "b.o"])
    line = _one_error(done)
    assert "input file 'a.o' is the same" in line, line
    if spelling != "hardlink":  # ld itself refuses these three
        assert work.ld(["-r", "-o", output, "a.o", "b.o"]).returncode == 1
    assert work.leftovers() == []


@pytest.mark.parametrize("length", [237, 250, 255])
def test_long_output_names(work: Work, length: int) -> None:
    """The temporary name is short and fixed, so any name ld can write, klp-ld can write."""
    name = "o" * (length - 2) + ".o"
    assert work.ld(["-r", "-o", name, "unannotated.o"]).returncode == 0
    (work.run / name).unlink()
    done = work.klp_ld(["-r", "-o", name, "a.o", "b.o"])
    assert done.returncode == 0, done.stderr
    assert _klp_symbols((work.run / name).read_bytes())
    assert work.leftovers() == []


def test_an_output_directory_that_takes_no_new_file(work: Work) -> None:
    """ld cannot unlink the output there, so it writes into the existing file; klp-ld does the
    same, after everything succeeded. A failing link leaves the previous output as it was."""
    wrap = _without_dac_override()
    want = work.reference(["-r", "a.o", "b.o"], "ref.o")
    ro = work.run / "ro"
    ro.mkdir()
    (ro / "out.o").write_bytes(GOOD)
    (ro / "out.o").chmod(0o666)
    ro.chmod(0o555)
    try:
        failed = work.klp_ld(["-r", "-o", "ro/out.o", "a.o", "b.o", "missing.o"], wrap=wrap)
        assert failed.returncode == 1 and (ro / "out.o").read_bytes() == GOOD, failed.stderr
        done = work.klp_ld(["-r", "-o", "ro/out.o", "a.o", "b.o"], wrap=wrap)
        assert done.returncode == 0, done.stderr
        assert (ro / "out.o").read_bytes() == want
        assert sorted(p.name for p in ro.iterdir()) == ["out.o"]
    finally:
        ro.chmod(0o755)
    assert work.leftovers() == []


# ---------------------------------------------------------------------------------------------
# Side outputs, --dry-run, messages


def test_dependency_file_and_map_name_the_users_files(work: Work) -> None:
    """Plain ld lists the inputs it read and the output it wrote; klp-ld's ld read temporary
    copies and wrote a temporary output, and make would rebuild every time."""
    args = ["-r", "-o", "out.o", "a.o", "b.o", "--dependency-file=out.d", "-Map=%"]
    done = work.klp_ld(args)
    assert done.returncode == 0, done.stderr
    plain = work.ld(["-r", "-o", "out.o", "a.o", "b.o", "--dependency-file=plain.d"])
    assert plain.returncode == 0
    assert (work.run / "out.d").read_text() == (work.run / "plain.d").read_text()
    text = (work.run / "out.o.map").read_text()
    assert "klp-ld-" not in text and "LOAD a.o" in text and "OUTPUT(out.o " in text
    assert work.leftovers() == []


def test_dry_run_writes_nothing(work: Work) -> None:
    before = sorted(p.name for p in work.run.iterdir())
    done = work.klp_ld(["--dry-run", "-r", "-o", "out.o", "a.o", "b.o", "--dependency-file=out.d",
                        "-Map", "out.map"])
    assert done.returncode == 0, done.stderr
    assert "would run" in done.stdout
    assert sorted(p.name for p in work.run.iterdir()) == before
    assert work.leftovers() == []


def test_lds_messages_name_the_users_files(work: Work) -> None:
    """"multiple definition" named /tmp/klp-ld-.../0001-dup.o instead of dup.o."""
    shutil.copy(work.run / "a.o", work.run / "dup.o")
    ours = work.klp_ld(["-r", "-o", "out.o", "a.o", "dup.o"])
    theirs = work.ld(["-r", "-o", "plain.o", "a.o", "dup.o"])
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr == theirs.stderr and "dup.o" in ours.stderr
    assert not (work.run / "out.o").exists() and work.leftovers() == []


def test_verbose_and_dry_run_escape_control_characters(work: Work) -> None:
    """Decision lines carry names from the objects: a control character in one must not reach the
    terminal raw (diagnostics already escape them)."""
    from klp_ld.elf.read import read_elf
    from klp_ld.elf.write import write_elf

    obj = read_elf((work.run / "a.o").read_bytes(), "a.o")
    for sym in obj.symbols:
        if sym.name == "state_show":
            sym.name = "state\x1b[31mshow\x07"
            sym.name_offset = None
    (work.run / "ctl.o").write_bytes(write_elf(obj))
    for option in ("--klp-verbose", "--dry-run"):
        done = work.klp_ld([option, "-r", "-o", "out.o", "ctl.o"])
        shown = done.stdout + done.stderr
        assert "\x1b" not in shown and "\x07" not in shown, shown
        assert "state\\x1b[31mshow\\x07" in shown


# ---------------------------------------------------------------------------------------------
# The report, libraries, scale


@pytest.mark.parametrize("kind", ["character-device", "fifo"])
def test_a_report_path_that_is_not_a_regular_file_is_refused(work: Work, kind: str) -> None:
    """`--klp-report=/dev/full` failed after the output was written; a FIFO blocked forever."""
    report = _special(work, kind)
    if kind == "character-device":
        os.unlink(report)
        os.mknod(report, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # a private /dev/full
    (work.run / "out.o").write_bytes(GOOD)
    done = work.klp_ld([f"--klp-report={report}", "-r", "-o", "out.o", "a.o", "b.o"], timeout=30)
    line = _one_error(done)
    assert "report" in line, line
    assert (work.run / "out.o").read_bytes() == GOOD
    assert work.leftovers() == []


def test_a_report_that_cannot_be_written_commits_nothing(work: Work) -> None:
    (work.run / "out.o").write_bytes(GOOD)
    done = work.klp_ld(["--klp-report=no/such/dir/report.json", "-r", "-o", "out.o", "a.o", "b.o"])
    line = _one_error(done)
    assert "report" in line and "nothing was written" in line, line
    assert (work.run / "out.o").read_bytes() == GOOD
    assert work.leftovers() == []


def test_a_report_is_written_once_with_the_outcome(work: Work) -> None:
    import json

    done = work.klp_ld(["--klp-report=r.json", "-r", "-o", "out.o", "a.o", "b.o"])
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (work.run / "r.json").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok"]
    command = records[0]["ld_command"]
    assert "out.o" in command and not any(".klp-ld-" in a for a in command), command


def test_an_annotated_library_is_refused(work: Work) -> None:
    """ld searches `-l` libraries itself: their members would be linked unrenamed."""
    subprocess.run(["ar", "rcs", str(work.run / "libseed.a"), str(work.run / "b.o")], check=True)
    done = work.klp_ld(["-r", "-o", "out.o", "a.o", "-L.", "-lseed"])
    line = _one_error(done)
    assert "-lseed" in line and "b.o" in line, line
    assert not (work.run / "out.o").exists() and work.leftovers() == []


def test_eight_thousand_arguments(work: Work) -> None:
    """The argument rewrite was quadratic: 8,000 arguments took 5-10 s where ld takes 0.04 s."""
    args = ["-r", "-o", "out.o", "a.o", "b.o"]
    for n in range(4000):
        args += ["-u", f"undefined_{n}"]
    started = time.monotonic()
    plain = work.ld([a if a != "out.o" else "plain.o" for a in args])
    plain_time = time.monotonic() - started
    assert plain.returncode == 0
    started = time.monotonic()
    done = work.klp_ld(args)
    ours = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert ours < plain_time + 3.0, f"klp-ld took {ours:.2f} s, ld {plain_time:.2f} s"
