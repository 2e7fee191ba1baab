"""The shell fast path of wrappers/klp-ld: kbuild's version probes exec the real ld without Python.

The fast path may be taken only where klp_ld.launch would exec the same ld with the same argv and
environment. So every case here runs the command twice, as it is and forced through Python (with
KLP_LD_TRACE_MODULES set, which the fast path leaves to Python), and compares what a fake ELF `ld`
compiled here recorded -- the file that ran, its argv (argv[0] included) and its environment -- and
the exit status, stdout and stderr. Which path ran is seen through KLP_LD_PYTHON: a compiled
stand-in that notes each start of the interpreter, then execs the real one with the same argv and
environment.

The layouts are the ones where a shell's PATH search and klp_ld.realld's could part: klp-ld linked
as `ld` first on PATH, a directory, a non-executable file, an executable FIFO, a script or another
machine's ELF named `ld` first, empty PATH entries, `$CROSS_COMPILE` with and without its ld, the
command invoked as `x86_64-linux-gnu-ld` or `ld.lld`, no PATH at all; each under /bin/sh (dash on
Debian), bash and busybox sh when they are installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klp_ld import cmdline, launch, realld

from .conftest import Toolchain
from .drive import WRAPPER

CROSS = "x86_64-linux-gnu-"

FAKE_LD = r"""
#include <stdio.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	FILE *f = fopen(LOG, "w");
	if (f == NULL)
		return 99;
	exe[n > 0 ? n : 0] = 0;
	fprintf(f, "exe=%s%c", exe, 0);
	for (int i = 0; i < argc; i++)
		fprintf(f, "arg=%s%c", argv[i], 0);
	for (char **e = environ; *e; e++)
		fprintf(f, "env=%s%c", *e, 0);
	fclose(f);
	printf("fake ld: %d arguments\n", argc - 1);
	fprintf(stderr, "fake ld: on stderr\n");
	return 7;
}
"""

FAKE_PYTHON = r"""
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	FILE *f = fopen(MARK, "a");
	if (f != NULL) {
		fputs("python\n", f);
		fclose(f);
	}
	(void)argc;
	argv[0] = REAL;  /* the interpreter finds its prefix from argv[0] */
	execv(REAL, argv);
	perror("execv");
	return 127;
}
"""

# An ELF header for AArch64: executable, but not on this machine (the kernel says ENOEXEC).
FOREIGN_ELF = (b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\xb7\x00\x01\x00\x00\x00" + b"\0" * 40)


@dataclass(frozen=True)
class Outcome:
    status: int
    stdout: str
    stderr: str
    exe: str | None                 # the file the fake ld ran as (None: the fake ld did not run)
    argv: tuple[str, ...]           # its argv, argv[0] first
    env: dict[str, str]             # its environment
    python: bool                    # whether the interpreter started

    def result(self) -> tuple[object, ...]:
        env = {k: v for k, v in self.env.items() if k != launch.TRACE_MODULES}
        return self.status, self.stdout, self.stderr, self.exe, self.argv, env


@dataclass
class Bench:
    """A tree of directories holding ld candidates, the fake ld and the interpreter stand-in."""

    root: Path
    log: Path
    mark: Path

    def path(self, entries: list[str] | None) -> str | None:
        if entries is None:
            return None
        return os.pathsep.join(str(self.root / e) if e else "" for e in entries)

    def run(self, shell: list[str], invoked: str, args: list[str], env: dict[str, str], cwd: str = "work",
            trace: bool = False, shell_options: tuple[str, ...] = ()) -> Outcome:
        for f in (self.log, self.mark):
            f.unlink(missing_ok=True)
        command = str(WRAPPER) if invoked == "klp-ld" else str(self.root / invoked)
        if shell or shell_options:
            argv = [*(shell or ["/bin/sh"]), *shell_options, command, *args]
        else:
            argv = [command, *args]  # the kernel runs #!/bin/sh, as for kbuild
        full = dict(env)
        traced = self.root / "trace.txt"
        traced.unlink(missing_ok=True)
        if trace:
            full[launch.TRACE_MODULES] = str(traced)
        done = subprocess.run(argv, cwd=self.root / cwd, env=full, capture_output=True, text=True,
                              check=False, timeout=60)
        exe: str | None = None
        ld_argv: tuple[str, ...] = ()
        ld_env: dict[str, str] = {}
        if self.log.exists():
            items = self.log.read_bytes().split(b"\0")[:-1]
            fields = [os.fsdecode(i).partition("=") for i in items]
            exe = next(v for k, _, v in fields if k == "exe")
            ld_argv = tuple(v for k, _, v in fields if k == "arg")
            ld_env = dict(v.partition("=")[::2] for k, _, v in fields if k == "env")
        python = self.mark.exists()
        if trace:
            assert python, f"forced through Python, yet it did not run\n{done.stderr}"
        return Outcome(done.returncode, done.stdout, done.stderr, exe, ld_argv, ld_env, python)

    def env(self, path: list[str] | None, **extra: str) -> dict[str, str]:
        out = {"KLP_LD_PYTHON": str(self.root / "python" / "python3")}
        found = self.path(path)
        if found is not None:
            out["PATH"] = found
        out.update(extra)
        return out


def _compile(gcc: str, source: str, out: Path, **defines: str) -> None:
    src = out.with_suffix(".c")
    src.write_text(source)
    flags = [f'-D{k}="{v}"' for k, v in defines.items()]
    subprocess.run([gcc, "-O1", *flags, "-o", str(out), str(src)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def bench(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Bench:
    root = tmp_path_factory.mktemp("fast-path")
    b = Bench(root, root / "ld.log", root / "python.log")
    build = root / "build"
    build.mkdir()
    _compile(toolchain.gcc, FAKE_LD, build / "fake-ld", LOG=str(b.log))
    (root / "python").mkdir()
    _compile(toolchain.gcc, FAKE_PYTHON, root / "python" / "python3", MARK=str(b.mark), REAL=sys.executable)

    def place(directory: str, name: str, mode: int = 0o755) -> Path:
        (root / directory).mkdir(exist_ok=True)
        target = root / directory / name
        shutil.copy(build / "fake-ld", target)
        target.chmod(mode)
        return target

    place("real", "ld")
    place("real", "ld.lld")
    place("cross", f"{CROSS}ld")
    place("work-ld", "ld")
    place("noexec", "ld", 0o644)
    place("pct%bin", "ld")
    for d in ("work", "empty", "klpbin", "links", "script", "foreign", "fifo"):
        (root / d).mkdir()
    (root / "dirbin" / "ld").mkdir(parents=True)
    (root / "klpbin" / "ld").symlink_to(WRAPPER)
    for name in (f"{CROSS}ld", "ld.lld", "klp-ld", "ld"):
        (root / "links" / name).symlink_to(WRAPPER)
    (root / "klpcopy").mkdir()
    shutil.copy(WRAPPER, root / "klpcopy" / "ld")
    script = root / "script" / "ld"
    script.write_text(f'#!/bin/sh\nexec "{root}/real/ld" "$@"\n')
    script.chmod(0o755)
    (root / "foreign" / "ld").write_bytes(FOREIGN_ELF)
    (root / "foreign" / "ld").chmod(0o755)
    os.mkfifo(root / "fifo" / "ld")
    (root / "fifo" / "ld").chmod(0o755)
    (root / "work" / "args").write_text("-v\n")
    return b


def _shells() -> list[object]:
    out: list[object] = [pytest.param([], id="sh")]  # the kernel runs #!/bin/sh, as kbuild's make does
    for name, argv in (("bash", ["bash", "--posix"]), ("busybox", ["busybox", "sh"])):
        found = shutil.which(argv[0])
        mark = () if found else (pytest.mark.skip(reason=f"{argv[0]} is not installed"),)
        out.append(pytest.param([found or argv[0], *argv[1:]], id=name, marks=mark))
    return out


SHELLS = _shells()


def _shell_id(shell: list[str]) -> str:
    return "sh" if not shell else ("busybox" if "busybox" in shell[0] else "bash")


# ---------------------------------------------------------------------------------------------
# Layouts: the fast path takes the ld Python would take, or leaves the decision to Python


@dataclass(frozen=True)
class Layout:
    id: str
    path: list[str] | None        # PATH entries under the bench root ("" stays empty); None: no PATH
    fast: bool | frozenset[str]   # whether the fast path is taken (per shell when a set of shell ids)
    exe: str | None               # the ld that must run, under the root (None: not the fake ld)
    argv0: str | None = None      # its argv[0] (default: its file name)
    invoked: str = "klp-ld"
    cwd: str = "work"
    env: dict[str, str] = field(default_factory=dict)


LAYOUTS = [
    Layout("plain", ["real"], True, "real/ld"),
    Layout("invoked-through-a-link-named-klp-ld", ["real"], True, "real/ld", invoked="links/klp-ld"),
    Layout("invoked-as-ld-off-path", ["real"], True, "real/ld", invoked="links/ld"),
    # the first ld is klp-ld (a script): Python skips it, and the shell would not
    Layout("klp-ld-linked-as-ld-first", ["klpbin", "real"], False, "real/ld", invoked="klpbin/ld"),
    Layout("klp-ld-as-ld-first-invoked-as-klp-ld", ["klpbin", "real"], False, "real/ld"),
    Layout("copy-of-klp-ld-as-ld-first", ["klpcopy", "real"], False, "real/ld"),
    Layout("directory-named-ld-first", ["dirbin", "real"], True, "real/ld"),
    Layout("non-executable-ld-first", ["noexec", "real"], True, "real/ld"),
    Layout("executable-fifo-ld-first", ["fifo", "real"], False, "real/ld"),
    Layout("script-ld-first", ["script", "real"], False, "real/ld", argv0="{root}/real/ld"),
    Layout("foreign-elf-ld-first", ["foreign", "real"], False, None),
    Layout("empty-entry-ld-in-cwd", ["", "real"], True, "work-ld/ld", cwd="work-ld"),
    Layout("empty-entry-no-ld-in-cwd", ["", "real"], True, "real/ld"),
    Layout("trailing-empty-entry", ["empty", ""], True, "work-ld/ld", cwd="work-ld"),
    Layout("empty-path-ld-in-cwd", [""], True, "work-ld/ld", cwd="work-ld"),
    Layout("no-ld-anywhere", ["empty", "dirbin"], False, None),
    Layout("cross-compile-ld-present", ["real", "cross"], True, f"cross/{CROSS}ld",
           env={"CROSS_COMPILE": CROSS}),
    Layout("cross-compile-ld-absent", ["real"], True, "real/ld", env={"CROSS_COMPILE": CROSS}),
    # the shell does not search PATH for a name with a slash; Python does (os.path.join)
    Layout("cross-compile-with-a-directory", ["real"], False, f"cross/{CROSS}ld",
           argv0=f"{{root}}/cross/{CROSS}ld", env={"CROSS_COMPILE": f"{{root}}/cross/{CROSS}"}),
    Layout("invoked-as-cross-ld", ["real", "cross"], True, f"cross/{CROSS}ld", invoked=f"links/{CROSS}ld"),
    Layout("invoked-as-cross-ld-same-prefix", ["cross", "real"], True, f"cross/{CROSS}ld",
           invoked=f"links/{CROSS}ld", env={"CROSS_COMPILE": CROSS}),
    Layout("invoked-as-ld.lld", ["cross", "real"], True, "real/ld.lld", invoked="links/ld.lld"),
    Layout("invoked-as-ld.lld-cross", ["real"], True, "real/ld.lld", invoked="links/ld.lld",
           env={"CROSS_COMPILE": CROSS}),
    Layout("percent-in-path", ["pct%bin", "real"], False, "pct%bin/ld"),
    # dash and bash search a default PATH they do not export, Python os.defpath: the system's ld
    # runs either way; busybox exports its default, so both see the same PATH
    Layout("no-path-in-environment", None, frozenset({"busybox"}), None),
]


def _expected(layout: Layout, bench: Bench, shell: list[str]) -> tuple[bool, dict[str, str]]:
    fast = layout.fast if isinstance(layout.fast, bool) else _shell_id(shell) in layout.fast
    env = {k: v.replace("{root}", str(bench.root)) for k, v in layout.env.items()}
    return fast, env


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=[layout.id for layout in LAYOUTS])
def test_fast_path_runs_the_ld_python_would(bench: Bench, shell: list[str], layout: Layout) -> None:
    fast, extra = _expected(layout, bench, shell)
    env = bench.env(layout.path, **extra)
    args = ["-m", "elf_x86_64", "-z", "noexecstack", "--no-warn-rwx-segments", "-v"]
    got = bench.run(shell, layout.invoked, args, env, cwd=layout.cwd)
    python = bench.run(shell, layout.invoked, args, env, cwd=layout.cwd, trace=True)
    assert got.python is not fast, ("took Python" if got.python else "took the fast path") + f"\n{got.stderr}"
    assert got.result() == python.result()
    if layout.exe is not None:
        assert got.exe == str(bench.root / layout.exe), got.stderr
        argv0 = (layout.argv0 or Path(layout.exe).name).replace("{root}", str(bench.root))
        assert got.argv == (argv0, *args)
        assert got.env.get(realld.ACTIVE_MARKER) == "1"
    else:
        assert got.exe is None


# ---------------------------------------------------------------------------------------------
# Command lines: only version probes take the fast path


FAST_SHAPES = [
    ["-v"],
    ["-V"],
    ["--version"],
    ["-m", "elf_x86_64", "-v"],
    ["-melf_x86_64", "-v"],
    ["-m", "elf_i386", "-V"],
    ["-melf32_x86_64", "--version"],
    ["-m", "elf_iamcu", "-v"],
    ["-v", "-m", "elf_x86_64"],
    ["-m", "elf_x86_64", "-z", "noexecstack", "--no-warn-rwx-segments", "-v"],  # kbuild 6.1 and 6.12
    ["-m", "elf_x86_64", "-z", "noexecstack", "--no-warn-rwx-segments", "-z", "pack-relative-relocs", "-v"],
    ["-z", "max-page-size=0x200000", "-z", "common-page-size=4096", "-v"],
    ["--build-id", "-v"],
    ["--build-id=sha1", "-V"],
    ["--build-id=0xDEADbeef", "-v"],
    ["--no-warn-execstack", "-v", "-v", "--version"],
]

PYTHON_SHAPES = [
    [],
    ["-m", "elf_x86_64"],                   # no -v: not a probe
    ["-z", "noexecstack"],
    ["-v", "x.o"],                          # an input file
    ["x.o", "-v"],
    ["-r", "-v"],
    ["-i", "-v"],
    ["-Ur", "-v"],
    ["-v", "-r"],
    ["@args", "-v"],                        # response files, even as option values
    ["-v", "@args"],
    ["-z", "@args", "-v"],
    ["-m", "@args", "-v"],
    ["--klp-version"],                      # klp-ld's own options
    ["--klp-verbose", "-v"],
    ["--klp-real-ld=ld", "-v"],
    ["--dry-run", "-v"],
    ["check", "x.ko"],
    ["-m", "armelf", "-v"],                 # an emulation klp-ld's grammar does not know
    ["-marmelf", "-v"],
    ["-m", "-v"],                           # a value missing, or an option taken for one
    ["-v", "-m"],
    ["-v", "-z"],
    ["-z", "-v", "-v"],
    ["-mri", "-v"],                         # an abbreviation of --mri-script
    ["-znoexecstack", "-v"],
    ["--vers"],                             # abbreviations, one dash
    ["-version"],
    ["--version=1"],
    ["-vV"],
    ["--pack-dyn-relocs=relr", "-v"],       # an option GNU ld 2.40 does not know (kbuild probes it)
    ["-v", "--"],
    ["-v", "-"],
    ["--build-id=", "-v"],
    ["--build-id=a/b", "-v"],
    ["-z", "Noexecstack", "-v"],
    ["-z", "", "-v"],
    ["-z", "now x", "-v"],
    ["-v", "-o", "out"],
    ["-T", "module.lds", "-v"],
    ["-v", "-X"],
    ["-v\n"],
]


@pytest.mark.parametrize("args", FAST_SHAPES, ids=" ".join)
def test_fast_shapes_are_probes_in_the_python_grammar(args: list[str], tmp_path: Path) -> None:
    """What klp_ld.cmdline makes of each shape: a probe of ld's, nothing klp-ld's, nothing in doubt."""
    for name in ("noexecstack", "elf_x86_64", "sha1"):  # files named like values change nothing
        (tmp_path / name).write_bytes(b".klp.sym.vmlinux.x,1")
    cmd = cmdline.parse(args, {}, str(tmp_path), "klp-ld")
    assert cmd.ld_argv == tuple(args)
    assert cmd.rejected is None and cmd.doubts == ()
    assert cmd.inputs == () and cmd.libraries == () and not cmd.relocatable
    default = cmdline.Options()
    assert all(getattr(cmd.options, s) == getattr(default, s) for s in cmdline.Options.__slots__)
    assert cmdline.classify(cmd) == cmdline.PROBE


@pytest.mark.parametrize("args", FAST_SHAPES, ids=" ".join)
def test_fast_shapes_take_the_fast_path(bench: Bench, args: list[str]) -> None:
    env = bench.env(["real"])
    got = bench.run([], "klp-ld", args, env)
    assert not got.python, got.stderr
    assert got.result() == bench.run([], "klp-ld", args, env, trace=True).result()
    assert got.argv == ("ld", *args)


@pytest.mark.parametrize("args", PYTHON_SHAPES, ids=repr)
def test_other_command_lines_go_through_python(bench: Bench, args: list[str]) -> None:
    got = bench.run([], "klp-ld", args, bench.env(["real"]))
    assert got.python, f"{args} took the fast path"


# ---------------------------------------------------------------------------------------------
# The environment: any setting klp-ld reads, and what the shell part itself would change


DEFER_VARIABLES = sorted({*cmdline.ENVIRONMENT, realld.ACTIVE_MARKER, launch.TRACE_MODULES})


@pytest.mark.parametrize("variable", DEFER_VARIABLES)
def test_klp_ld_settings_in_the_environment_go_through_python(bench: Bench, variable: str) -> None:
    env = bench.env(["real"], **{variable: str(bench.root / "setting")})
    assert bench.run([], "klp-ld", ["-v"], env).python
    env[variable] = ""  # empty is unset, to Python as to the fast path
    assert not bench.run([], "klp-ld", ["-v"], env).python


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("locale", [{}, {"LC_CTYPE": "C"}, {"LANG": "C"}, {"LC_ALL": "C"},
                                    {"LANG": "C.UTF-8"}, {"LC_CTYPE": "POSIX", "LANG": "C.UTF-8"},
                                    {"LC_CTYPE": ""}],
                         ids=lambda d: " ".join(f"{k}={v}" for k, v in d.items()) or "none")
def test_ld_gets_the_same_environment_in_every_locale(bench: Bench, shell: list[str],
                                                      locale: dict[str, str]) -> None:
    """Python sets LC_CTYPE=C.UTF-8 in its environment in the C locale (PEP 538); klp-ld puts it
    back, so ld's environment does not depend on the path taken."""
    env = bench.env(["real"], HOME=str(bench.root), **locale)
    got = bench.run(shell, "klp-ld", ["-v"], env)
    python = bench.run(shell, "klp-ld", ["-v"], env, trace=True)
    assert not got.python
    assert got.result() == python.result()
    assert got.env.get("LC_CTYPE") == locale.get("LC_CTYPE")
    assert {k for k in got.env if k not in env} <= {realld.ACTIVE_MARKER, "PWD", "SHLVL"}


def test_a_set_but_empty_klp_ld_python_goes_through_python(bench: Bench) -> None:
    """The shell part would export the interpreter it finds into that variable, so ld's
    environment would differ."""
    env = bench.env(["python", "real"], KLP_LD_PYTHON="")
    got = bench.run([], "klp-ld", ["-v"], env)
    assert got.python and got.exe == str(bench.root / "real" / "ld")
    assert got.env["KLP_LD_PYTHON"].endswith("python3")


@pytest.mark.parametrize("name", ["self", "klp_n", "klp_p", "klp_h"])
def test_inherited_shell_variables_go_through_python(bench: Bench, name: str) -> None:
    env = {**bench.env(["real"]), name: "inherited"}
    got = bench.run([], "klp-ld", ["-v"], env)
    assert got.python and got.env[name] == "inherited"


@pytest.mark.parametrize("option", ["-x", "-a", "-e", "-u", "-v"])
def test_shell_options_go_through_python(bench: Bench, option: str) -> None:
    got = bench.run([], "klp-ld", ["-v"], bench.env(["real"]), shell_options=(option,))
    assert got.python and got.exe == str(bench.root / "real" / "ld")


def test_a_removed_working_directory_goes_through_python(bench: Bench) -> None:
    """Python needs os.getcwd(); the shell part checks that $PWD is the working directory."""
    gone = bench.root / "gone"

    def leave() -> None:  # in the child, before it execs the command
        os.chdir(gone)
        os.rmdir(gone)

    bench.mark.unlink(missing_ok=True)
    gone.mkdir()
    subprocess.run([str(WRAPPER), "-v"], env=bench.env(["real"]), preexec_fn=leave, capture_output=True,
                   check=False, timeout=60)
    assert bench.mark.exists()


# ---------------------------------------------------------------------------------------------
# The script itself


def _shell_part() -> str:
    return WRAPPER.read_text().split("'''")[1]


def test_the_fast_path_starts_no_process() -> None:
    """Command substitution forks (dash forks even for builtins): none before the fast path execs."""
    text = _shell_part()
    code = [line.partition(" # ")[0] for line in text[:text.index('exec "$klp_n" "$@"')].splitlines()
            if not line.lstrip().startswith("#")]
    assert not [line for line in code if "$(" in line or "`" in line]


def test_the_script_compiles_without_warnings() -> None:
    """Python compiles the script on every start: a backslash escape it does not know in the sh
    part would print a SyntaxWarning (3.12+) each time."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(WRAPPER.read_text(), str(WRAPPER), "exec")


# ---------------------------------------------------------------------------------------------
# Random command lines near the fast path's shapes: whatever the fast path takes, Python would
# hand to the same ld with the same arguments


FAST_TOKENS = sorted({a for shape in FAST_SHAPES for a in shape})
TOKENS = sorted({a for shape in PYTHON_SHAPES for a in shape} | set(FAST_TOKENS))


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(st.one_of(st.sampled_from(FAST_TOKENS), st.sampled_from(TOKENS)), max_size=6))
def test_whatever_the_fast_path_takes_python_passes_through(bench: Bench, args: list[str]) -> None:
    env = bench.env(["real"])
    got = bench.run([], "klp-ld", args, env)
    if got.python:
        return
    cmd = cmdline.parse(args, {}, str(bench.root / "work"), "klp-ld")
    assert cmdline.classify(cmd) in (cmdline.PROBE, cmdline.PASSTHROUGH)
    assert cmd.ld_argv == tuple(args) and not cmd.options.dry_run and cmd.options.real_ld is None
    assert got.result() == bench.run([], "klp-ld", args, env, trace=True).result()
    assert got.argv == ("ld", *args)
