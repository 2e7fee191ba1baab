"""Reading the command line: option split, @file expansion, classification, real ld discovery."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klp_ld import cmdline, realld
from klp_ld.cmdline import UsageError, expand_response_files, parse, parse_response_text, quote_response_arg

from .conftest import WRAPPER, Toolchain, _need, run_klp_ld


def test_klp_options_are_taken_out_and_env_is_read():
    env = {"KLP_LD_SYMBOLS": "a.map:b.map", "KLP_LD_VERBOSE": "1"}
    options, rest = cmdline.split_options(
        ["--klp-symbols=c.map", "-m", "elf_x86_64", "--klp-real-ld", "/usr/bin/ld", "--dry-run", "-v"], env)
    assert rest == ["-m", "elf_x86_64", "-v"]
    assert options.symbols == ["a.map", "b.map", "c.map"]
    assert options.real_ld == "/usr/bin/ld" and options.dry_run and options.verbose


def test_unknown_klp_option_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown option '--klp-bogus'"):
        cmdline.split_options(["--klp-bogus=1"], {})
    with pytest.raises(UsageError, match="needs a value"):
        cmdline.split_options(["--klp-report"], {})


@pytest.mark.parametrize(("text", "args"), [
    ("a.o b.o\n", ["a.o", "b.o"]),
    ("  'with space.o'  \"dq x\"\n", ["with space.o", "dq x"]),
    ("back\\ slash \\'q\\'", ["back slash", "'q'"]),
    ("'it\\'s'", ["it's"]),
    ("'' x", ["", "x"]),
    ("", []),
    (" \t\n\v\f\r", []),
    # buildargv splits on C's isspace() only, and the file is a C string: it ends at a NUL
    ("a\x1cb c\u00a0d", ["a\x1cb", "c\u00a0d"]),
    ("a.o\0b.o c.o", ["a.o"]),
])
def test_response_text_like_libiberty(text, args):
    assert parse_response_text(text) == args


@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
                        max_size=12), max_size=6))
def test_quoting_round_trips(args):
    text = " ".join(quote_response_arg(a) for a in args)
    assert parse_response_text(text) == args


def test_nested_response_files_and_unreadable_ones(tmp_path):
    (tmp_path / "inner.rsp").write_text("b.o 'c d.o'\n")
    (tmp_path / "outer.rsp").write_text("a.o @inner.rsp\n")
    expansion = expand_response_files(["-r", "@outer.rsp", "@missing.rsp"], str(tmp_path))
    assert expansion.rejected is None and expansion.doubt is None
    assert [(a.value, a.origin) for a in expansion.args] == [
        ("-r", 0), ("a.o", 1), ("b.o", 1), ("c d.o", 1), ("@missing.rsp", 2)]


def test_response_file_loops_end_as_lds_do(tmp_path):
    """libiberty counts every '@' argument and stops at the 2000th; a loop is no RecursionError."""
    (tmp_path / "loop.rsp").write_text("x.o @loop.rsp\n")
    expansion = expand_response_files(["@loop.rsp"], str(tmp_path), limit=5)
    assert expansion.rejected == "too many @-files encountered"
    assert [a.value for a in expansion.args] == ["x.o"] * 4
    deep = expand_response_files(["@loop.rsp"], str(tmp_path))
    assert deep.rejected == "too many @-files encountered" and len(deep.args) == 1999
    (tmp_path / "dir.rsp").mkdir()
    assert expand_response_files(["@dir.rsp"], str(tmp_path)).rejected == "@-file refers to a directory"


def test_a_fifo_response_file_is_not_read(tmp_path):
    """Reading a FIFO would take its contents from ld (or block): the command is in doubt instead."""
    os.mkfifo(tmp_path / "pipe.rsp")
    cmd = parse(["-r", "-o", "x.o", "@pipe.rsp"], {}, str(tmp_path))
    assert cmd.doubts and "not a regular file" in cmd.doubts[0]


def test_self_including_response_file(tmp_path, toolchain: Toolchain):
    """ld says "too many @-files"; klp-ld says the same, annotated inputs or not, and never ends in
    a RecursionError traceback."""
    (tmp_path / "loop.rsp").write_text("-r -o out.o in.o @loop.rsp\n")
    for source in ("plain.c", "seed_a.c"):
        shutil.copy(toolchain.build(source), tmp_path / "in.o")
        ours = run_klp_ld(["@loop.rsp"], tmp_path)
        theirs = subprocess.run(["ld", "@loop.rsp"], cwd=tmp_path, capture_output=True, text=True,
                                check=False)
        assert "Traceback" not in ours.stderr
        assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr) == (
            1, "ld: error: too many @-files encountered\n")
        assert not (tmp_path / "out.o").exists()


def test_a_rejected_annotated_link_is_refused_for_another_linker(tmp_path, toolchain: Toolchain):
    """When the real ld is not the one whose grammar said no, klp-ld cannot know it would say no
    too: one clear error instead of an unread link."""
    fake = tmp_path / "other-ld"
    fake.write_text("#!/bin/sh\necho 'LLD 17.0.6 (compatible with GNU linkers)'\nexit 0\n")
    fake.chmod(0o755)
    shutil.copy(toolchain.build("seed_a.c"), tmp_path / "in.o")
    ours = run_klp_ld([f"--klp-real-ld={fake}", "-r", "-o", "out.o", "in.o", "--no-such-option"], tmp_path)
    lines = ours.stderr.strip().splitlines()
    assert ours.returncode == 1 and len(lines) == 1, ours.stderr
    assert lines[0].startswith("klp-ld: error: ld would reject this command line (unrecognized option")
    assert not (tmp_path / "out.o").exists()


def _kind(args: list[str], cwd: Path) -> str:
    cmd = parse(args, {}, str(cwd))
    return cmdline.classify(cmd)


def test_every_spelling_of_a_livepatch_link_is_one(tmp_path, toolchain: Toolchain):
    """`-r` without `-o` (ld writes a.out), abbreviations, an `@file` holding everything: all are
    livepatch links when an input is annotated, none goes to ld unread."""
    seed = toolchain.build("seed_a.c")
    (tmp_path / "all.rsp").write_text(f"-r -o out.o {seed}\n")
    for args in (["-r", str(seed)], ["--relocatable", "--outp=ab.o", str(seed)], ["@all.rsp"],
                 ["-Sr", "-oab.o", str(seed)], ["-relo", "-o", "x", str(seed)]):
        assert _kind(args, tmp_path) == cmdline.PARTIAL, args
    # ld would reject it, and an input is annotated: refused rather than passed on
    assert _kind(["-r", "-o", "x.o", str(seed), "--bogus-option"], tmp_path) == cmdline.PARTIAL
    assert _kind(["-r", "-o", "x.o", str(toolchain.build("plain.c")), "--bogus-option"], tmp_path) \
        == cmdline.PASSTHROUGH
    assert _kind(["--help", "-r", str(seed)], tmp_path) == cmdline.PROBE


def test_thin_archive_members_are_read_for_markers(tmp_path, toolchain: Toolchain):
    seed = tmp_path / "seed.o"
    shutil.copy(toolchain.build("seed_a.c"), seed)
    subprocess.run(["ar", "rcsT", str(tmp_path / "thin.a"), str(seed)], check=True)
    assert _kind(["-r", "-o", "x.o", "--whole-archive", "thin.a"], tmp_path) == cmdline.PARTIAL


def test_classification_of_kbuild_calls(tmp_path, toolchain: Toolchain):
    seed = toolchain.build("seed_a.c")
    plain = toolchain.build("plain.c")
    (tmp_path / "m.mod").write_text(f"{seed}\n")
    kbuild = ["-m", "elf_x86_64", "-z", "noexecstack", "--no-warn-rwx-segments"]
    assert _kind([*kbuild, "-v"], tmp_path) == cmdline.PROBE
    assert _kind([*kbuild, "-r", "-o", "m.o", "@m.mod"], tmp_path) == cmdline.PARTIAL
    assert _kind([*kbuild, "-r", "-o", "p.o", str(plain)], tmp_path) == cmdline.PASSTHROUGH
    # 6.1 runs the final link from the headers directory with a relative script.
    final = ["-r", *kbuild, "--build-id=sha1", "-T", "arch/x86/module.lds", "-o", "/m/m.ko"]
    assert _kind([*final, str(seed)], tmp_path) == cmdline.FINAL
    assert _kind([*final, str(plain)], tmp_path) == cmdline.PASSTHROUGH
    assert _kind(["-o", "a.out", str(seed)], tmp_path) == cmdline.PASSTHROUGH  # not -r


def test_output_and_script_spellings(tmp_path):
    for args, out, script in [
        (["-r", "-ofoo.o", "-Tx/module.lds"], "foo.o", "x/module.lds"),
        (["-r", "--output=foo.o", "--script=module.lds"], "foo.o", "module.lds"),
        (["-r", "--output", "foo.o", "-T", "module.lds"], "foo.o", "module.lds"),
        (["-r", "-o", "foo.o", "-Ttext=0x1000", "-Map", "m.map", "in.o"], "foo.o", None),
    ]:
        cmd = parse(args, {}, str(tmp_path))
        assert (cmd.output, cmd.script) == (out, script)
    cmd = parse(["-r", "-o", "foo.o", "-Map", "m.map", "-L", "dir", "in.o"], {}, str(tmp_path))
    assert cmd.input_paths() == ["in.o"]


# (arguments, output, inputs, relocatable, rejected): what GNU ld 2.40 makes of each spelling
GRAMMAR = [
    (["-r", "--outp=ab.o", "a.o"], "ab.o", ["a.o"], True, False),       # an abbreviation
    (["-r", "--outpu", "ab.o", "a.o"], "ab.o", ["a.o"], True, False),
    (["-r", "-output", "b.o"], "utput", ["b.o"], True, False),          # -o utput, and an input
    (["-r", "-omagic", "a.o"], "magic", ["a.o"], True, False),
    (["-r", "--out=x.o", "a.o"], None, ["a.o"], True, False),          # --out-implib, not --output
    (["-Sr", "-o", "x.o", "a.o"], "x.o", ["a.o"], True, False),         # grouped, -r last
    (["-rS", "-o", "x.o", "a.o"], None, [], False, True),              # -r must end its group
    (["-So", "x.o", "a.o"], None, [], False, True),                    # "unable to disambiguate"
    (["--relo", "-o", "x.o", "a.o"], "x.o", ["a.o"], True, False),
    (["-relocatable", "-o", "x.o", "a.o"], "x.o", ["a.o"], True, False),
    (["-Ur", "-o", "x.o", "a.o"], "x.o", ["a.o"], True, False),
    (["-i", "-o", "x.o", "a.o"], "x.o", ["a.o"], True, False),
    (["-re", "-o", "x.o", "a.o"], None, [], False, True),              # ambiguous
    (["-r", "--no-w", "a.o"], None, [], True, True),                  # ambiguous
    (["-r", "a.o"], None, ["a.o"], True, False),                       # no -o: a.out
    (["-r", "-o", "x.o", "--", "a.o"], "x.o", [], True, False),        # ld reads nothing after --
    (["-r", "-o", "x.o", "-lfoo", "a.o"], "x.o", ["a.o"], True, False),
    (["-G", "a.o", "-r", "-o", "x.o"], "x.o", ["a.o"], True, False),    # -G not before a number: --shared
    (["--architecture=i386", "-r", "a.o"], None, [], False, True),     # lexsup.c's longind quirk
    (["-r", "-o", "x.o", "a.o", "--bogus"], "x.o", ["a.o"], True, True),
    (["-r", "-o"], None, [], True, True),
    (["-r", "-m"], None, [], False, True),
    (["-r", "--pop-state", "a.o"], None, [], True, True),
]


@pytest.mark.parametrize(("args", "output", "inputs", "relocatable", "rejected"), GRAMMAR)
def test_ld_grammar(tmp_path, args, output, inputs, relocatable, rejected):
    cmd = parse(args, {}, str(tmp_path))
    assert (cmd.rejected is not None) == rejected, cmd.rejected
    if not rejected:
        assert (cmd.output, cmd.input_paths(), cmd.relocatable) == (output, inputs, relocatable)


def test_whole_archive_state_and_push_pop(tmp_path):
    cmd = parse(["-r", "a.o", "--whole-archive", "--push-state", "--no-whole-archive", "b.a", "--pop-state",
                 "c.a", "-b", "binary", "d.bin"], {}, str(tmp_path))
    assert [(f.path, f.whole_archive, f.fmt) for f in cmd.input_files] == [
        ("a.o", False, None), ("b.a", False, None), ("c.a", True, None), ("d.bin", True, "binary")]


def test_every_option_of_the_table_is_one_ld_knows(tmp_path):
    """The table is GNU ld 2.40's: ld accepts each name as spelled there (names spelled with `=`
    in lexsup.c take their value after it)."""
    long_names = [*cmdline._LONG, *cmdline._REALLY_LONG]
    version = subprocess.run(["ld", "--version"], capture_output=True, text=True, check=False).stdout
    if "GNU ld" not in version:
        pytest.skip("the system ld is not GNU ld")
    unknown = []
    for name in long_names:
        takes = (cmdline._LONG.get(name) or cmdline._REALLY_LONG[name])[0]
        spelled = f"--{name.split('=')[0]}" + ("=x" if takes or "=" in name else "")
        done = subprocess.run(["ld", spelled, "--help"], capture_output=True, text=True, check=False)
        if "unrecognized option" in done.stderr or "unrecognised option" in done.stderr:
            unknown.append(spelled)
    assert unknown == []


def _differential_case(rnd: random.Random, work: Path) -> list[str]:
    files = ["a.o", "b.o", "c.o"]
    words = ["-o", "-oOUT.o", "--output", "--output=OUT.o", "--outp=OUT.o", "--out", "-output", "--o",
             "OUT.o",
             "-r", "-i", "--relocatable", "--reloc", "-relocatable", "-Ur", "-Sr", "-rS", "-re", "-xr",
             "-S", "-s", "-x", "-X", "-z", "noexecstack", "--build-id", "--build-id=sha1", "-m", "elf_x86_64",
             "--whole-archive", "--no-whole-archive", "--push-state", "--pop-state", "--", "-", "-G", "0",
             "-lfoo", "-L", ".", "--dep=x", "-Map", "-M", "-T", "-v", "--version", "-help", "--no-w", "-O",
             "-(", "-)", "-nostdlib", "-omagic", "--omagic", "-N", "--trace", "-q", "-d", "-dc", "-u", "x",
             "-usym", "--defsym", "z=1", "--disc", "-Qy", "--sort-common=ascending", "-y", "sym_a",
             "-Ttext=0x1000", "-Ttext", "--unique", "-h", "--rpath=/x", "-rpath", "-R", "-b", "default",
             "-c", "-dT", "@r.rsp", "@n.rsp", "-l:x.a", "--library=m"]
    pick = [lambda: rnd.choice(files), lambda: rnd.choice(words)]
    (work / "r.rsp").write_text(" ".join(quote_response_arg(rnd.choice(pick)()) for _ in range(3)))
    (work / "n.rsp").write_text(" ".join(quote_response_arg(rnd.choice(pick)()) for _ in range(2)))
    return [rnd.choice(pick)() for _ in range(rnd.randint(1, 8))]


_PARSE_ERRORS = ("unrecognized option", "unrecognised option", "unable to disambiguate", "missing argument",
                 "requires an argument", "doesn't allow an argument", "no state pushed", "too many @-files")


def test_grammar_agrees_with_ld(tmp_path):
    """Random command lines through the model and through ld: the model rejects exactly what ld
    rejects while reading options, and otherwise names the output ld writes, the inputs it links
    (each object defines its own symbol) and whether the output is relocatable."""
    base = tmp_path / "objects"
    base.mkdir()
    for name in "abc":
        (base / f"{name}.c").write_text(f"int sym_{name}(void) {{ return 1; }}\n")
        subprocess.run(["gcc", "-c", str(base / f"{name}.c"), "-o", str(base / f"{name}.o")], check=True)
    rnd = random.Random(2026)
    disagreements = []
    for case in range(300):
        work = tmp_path / f"case{case}"
        work.mkdir()
        for name in "abc":
            shutil.copy(base / f"{name}.o", work / f"{name}.o")
        args = _differential_case(rnd, work)
        before = set(os.listdir(work))
        cmd = parse(args, {}, str(work))
        done = subprocess.run(["ld", *args], cwd=work, capture_output=True, text=True, timeout=30,
                              check=False)
        read_error = any(s in done.stderr for s in _PARSE_ERRORS)
        if cmd.rejected is not None:
            if done.returncode == 0:
                disagreements.append((args, f"model rejects ({cmd.rejected}), ld linked"))
        elif cmd.exits_early:
            if set(os.listdir(work)) != before:
                disagreements.append((args, "model: ld exits early, but ld wrote files"))
        elif read_error:
            disagreements.append((args, f"model accepts, ld: {done.stderr.strip().splitlines()[-1]}"))
        elif done.returncode == 0:
            out = work / (cmd.output if cmd.output is not None else "a.out")
            data = out.read_bytes() if out.is_file() and out.name not in ("a.o", "b.o", "c.o") else b""
            if data[:4] == b"\x7fELF":
                relocatable = int.from_bytes(data[16:18], "little") == 1
                nm = subprocess.run(["nm", "--defined-only", str(out)], capture_output=True, text=True,
                                    check=False).stdout.splitlines()
                # -R FILE (just symbols) brings FILE's symbols in as absolute ones: not linked
                linked = {line.split()[-1] for line in nm
                          if line.split()[-1].startswith("sym_") and line.split()[-2] != "A"}
                wanted = {f"sym_{p[0]}" for p in cmd.input_paths() if p in ("a.o", "b.o", "c.o")}
                if (relocatable, linked) != (cmd.relocatable, wanted):
                    disagreements.append((args, f"ld: relocatable {relocatable}, linked {sorted(linked)}"))
        shutil.rmtree(work)
    assert disagreements == []


def test_klp_symvers_is_repeatable(tmp_path):
    options, _ = cmdline.split_options(["--klp-symvers=a.symvers", "--klp-symvers", "b.symvers"],
                                       {"KLP_LD_SYMVERS": "x.symvers:y.symvers"})
    assert options.symvers == ["x.symvers", "y.symvers", "a.symvers", "b.symvers"]


def test_real_ld_discovery_skips_klp_ld(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ld").symlink_to(WRAPPER)
    found, argv0 = realld.find_real_ld(None, "ld", {"PATH": f"{fake}:/usr/bin"}, (str(WRAPPER),))
    assert os.path.realpath(found) != os.path.realpath(WRAPPER) and argv0 == "ld"
    with pytest.raises(realld.RealLdError, match="is klp-ld itself"):
        realld.find_real_ld(str(fake / "ld"), "ld", {}, (str(WRAPPER),))


def test_names_choose_the_linker():
    assert realld.wanted_name("/usr/local/bin/klp-ld") == "ld"
    assert realld.wanted_name("ld.lld") == "ld.lld"
    assert realld.wanted_name("x86_64-linux-gnu-ld") == "x86_64-linux-gnu-ld"


def test_cross_compile_prefix_is_tried_first(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    real = shutil.which("ld")
    assert real is not None
    (fake / "x86_64-linux-gnu-ld").symlink_to(real)
    found, argv0 = realld.find_real_ld(None, "klp-ld", {"PATH": f"{fake}:/usr/bin",
                                                          "CROSS_COMPILE": "x86_64-linux-gnu-"}, ())
    assert argv0 == "x86_64-linux-gnu-ld" and found == str(fake / "x86_64-linux-gnu-ld")


def test_probe_behaves_like_ld(tmp_path):
    args = ["-m", "elf_x86_64", "-z", "noexecstack", "--no-warn-rwx-segments", "-v"]
    ours = run_klp_ld(args, tmp_path)
    theirs = subprocess.run(["ld", *args], capture_output=True, text=True, check=False)
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)
    bad = run_klp_ld(["--no-such-option", "-v"], tmp_path)
    theirs = subprocess.run(["ld", "--no-such-option", "-v"], capture_output=True, text=True, check=False)
    assert (bad.returncode, bad.stdout, bad.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)


def test_klp_options_never_reach_ld(tmp_path):
    result = run_klp_ld(["--klp-verbose", "--klp-symbols=x.map", "-v"], tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("GNU ld")


def test_recursion_is_caught(tmp_path):
    result = run_klp_ld(["-v"], tmp_path, env={"KLP_LD_ACTIVE": "1"})
    assert result.returncode == 1
    assert "klp-ld: error: the real linker resolved to klp-ld itself" in result.stderr


def test_powerpc_emulation_options_are_read_as_its_ld_reads_them(tmp_path):
    """ppc64's emulation appends its own long options: with `-m elf64lppc` they (and their
    abbreviations) are options, not doubts; with x86's emulation they are unknown, as there."""
    cmd = parse(["-m", "elf64lppc", "--save-restore-funcs", "--stub-group=1", "-r", "-o", "m.o", "a.o"], {},
                str(tmp_path))
    assert cmd.rejected is None and not cmd.doubts
    assert (cmd.output, cmd.input_paths(), cmd.relocatable) == ("m.o", ["a.o"], True)
    assert parse(["-m", "elf64lppc", "--no-t", "-r", "a.o"], {}, str(tmp_path)).rejected == \
        "ambiguous option '--no-t'"
    assert parse(["-m", "elf_x86_64", "--save-restore-funcs", "-r", "a.o"], {}, str(tmp_path)).rejected == \
        "unrecognized option '--save-restore-funcs'"


def test_every_powerpc_emulation_option_is_one_its_ld_knows():
    ld = _need("powerpc64le-linux-gnu-ld")
    unknown = []
    for name, (takes, _) in cmdline._LONG_BY_EMULATION["elf64lppc"].items():
        if name in cmdline._LONG:
            continue
        spelled = f"--{name}" + ("=1" if takes else "")
        done = subprocess.run([ld, "-m", "elf64lppc", spelled, "--help"], capture_output=True, text=True,
                              check=False)
        if "unrecognized option" in done.stderr or "unrecognised option" in done.stderr:
            unknown.append(spelled)
    assert unknown == []


def test_every_aarch64_emulation_option_is_one_its_ld_knows():
    """Each aarch64 emulation klp-ld lists is one the cross ld has, and each option klp-ld adds for it
    (aarch64elf.em's long options and `-p`) is one that ld takes, with a value where klp-ld expects one."""
    ld = _need("aarch64-linux-gnu-ld")
    unknown = []
    for emulation in cmdline._AARCH64_EMULATIONS:
        long_options = cmdline._LONG_BY_EMULATION[emulation]
        added = [f"--{name}" + ("=1" if takes == 1 else "") for name, (takes, _) in long_options.items()
                 if name not in cmdline._LONG]
        added += [f"-{c}" for c in cmdline._SHORT_BY_EMULATION[emulation] if c not in cmdline._SHORT]
        assert len(added) == 9, added
        for spelled in added:
            done = subprocess.run([ld, "-m", emulation, spelled, "--help"], capture_output=True, text=True,
                                  check=False)
            if done.returncode != 0 or "unrecognized option '" in done.stderr or "emulation" in done.stderr:
                unknown.append(f"-m {emulation} {spelled}: {done.stderr.strip()}")
    assert unknown == []
