"""Reading the command line: option split, @file expansion, classification, real ld discovery."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klp_ld import cmdline, realld
from klp_ld.cmdline import UsageError, expand_response_files, parse, parse_response_text, quote_response_arg

from .conftest import WRAPPER, Toolchain, run_klp_ld


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
])
def test_response_text_like_libiberty(text, args):
    assert parse_response_text(text) == args


@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12), max_size=6))
def test_quoting_round_trips(args):
    text = " ".join(quote_response_arg(a) for a in args)
    assert parse_response_text(text) == args


def test_nested_response_files_and_unreadable_ones(tmp_path):
    (tmp_path / "inner.rsp").write_text("b.o 'c d.o'\n")
    (tmp_path / "outer.rsp").write_text("a.o @inner.rsp\n")
    expanded = expand_response_files(["-r", "@outer.rsp", "@missing.rsp"], str(tmp_path))
    assert [(a.value, a.origin) for a in expanded] == [
        ("-r", 0), ("a.o", 1), ("b.o", 1), ("c d.o", 1), ("@missing.rsp", 2)]


def test_response_file_recursion_is_bounded(tmp_path):
    (tmp_path / "loop.rsp").write_text("x.o @loop.rsp\n")
    expanded = expand_response_files(["@loop.rsp"], str(tmp_path), limit=5)
    assert [a.value for a in expanded].count("x.o") == 5


def _kind(args: list[str], cwd: Path) -> str:
    cmd = parse(args, {}, str(cwd))
    return cmdline.classify(cmd)


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
