"""Atomic and safe: nothing at the output path on any failure, a previous good output kept,
temporaries removed (kept only with --klp-keep-tmp), inputs never written.

Each test runs the checkout's klp-ld in a private directory with TMPDIR pointed at a private
directory, so "no temporary left" is checked exactly. Failures are provoked with stand-ins for the
real ld (`--klp-real-ld=script`): one that writes half an output and fails, one that sleeps so a
signal arrives mid-link, one that fills the file system after a real link. ENOSPC uses a 64 KiB
tmpfs (root only); permission errors drop root's DAC override (or run as a normal user).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import drive
from .conftest import OBJECTS, Toolchain

GOOD = b"a previous good output\n"

FAILING_LD = """#!/bin/sh
# writes half an output, then fails as ld would
out=
while [ $# -gt 0 ]; do
	case "$1" in -o) out=$2; shift ;; -o*) out=${1#-o} ;; esac
	shift
done
printf 'half a file' > "$out"
echo "ld: simulated failure" >&2
exit 1
"""
SLEEPING_LD = """#!/bin/sh
# says it started (its pid), then hangs until killed
echo $$ > "$KLP_TEST_MARK.tmp" && mv "$KLP_TEST_MARK.tmp" "$KLP_TEST_MARK"
exec sleep 60
"""
FILLING_LD = """#!/bin/sh
# links, then fills the output's file system, so klp-ld's own write of the converted module fails
ld "$@" || exit
dd if=/dev/zero of="$KLP_TEST_FILL/filler" bs=4096 2>/dev/null
exit 0
"""


@dataclass
class Site:
    """A private place to run klp-ld: run/ holds the inputs, tmp/ is TMPDIR, bin/ the stand-in lds."""

    base: Path
    run: Path
    tmp: Path
    bin: Path

    def script(self, name: str, text: str) -> Path:
        path = self.bin / name
        path.write_text(text)
        path.chmod(0o755)
        return path

    def klp_ld(self, args: list[str], env: dict[str, str] | None = None,
               wrap: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = drive.klp_ld_env(self.tmp)
        full_env.update(env or {})
        return subprocess.run([*(wrap or []), str(drive.WRAPPER), *args], cwd=self.run, env=full_env,
                              capture_output=True, text=True, timeout=120, check=False)

    def temporaries(self) -> list[str]:
        """klp-ld's temporaries anywhere they could be: TMPDIR and next to outputs."""
        left = [str(p) for p in self.tmp.iterdir()]
        left += [str(p) for p in self.run.rglob(".klp-ld-*")]
        left += [str(p) for p in self.run.rglob("*.klp-ld.tmp")]
        return left


@pytest.fixture
def site(tmp_path: Path, toolchain: Toolchain, watch_inputs: Callable[..., None]) -> Site:
    s = Site(tmp_path, tmp_path / "run", tmp_path / "tmp", tmp_path / "bin")
    for d in (s.run, s.tmp, s.bin):
        d.mkdir()
    for name, src in (("a.o", "seed_a.c"), ("b.o", "seed_b.c"), ("modinfo.o", "modinfo.c"),
                      ("conflict.o", "conflict-FAIL.c")):
        shutil.copy(toolchain.build(src), s.run / name)
    shutil.copy(OBJECTS / "module.lds", s.run / "module.lds")
    done = subprocess.run([toolchain.ld, "-r", "-o", str(s.run / "plain_m.o"), str(s.run / "a.o")],
                          check=False, capture_output=True)
    assert done.returncode == 0
    result = s.klp_ld(["-r", "-o", "m.o", "a.o", "b.o"])
    assert result.returncode == 0, result.stderr
    watch_inputs(*(s.run / n for n in ("a.o", "b.o", "modinfo.o", "conflict.o", "module.lds", "m.o")))
    return s


PARTIAL = ["-r", "-o", "out.o", "a.o", "b.o"]
FINAL = ["-r", "-m", "elf_x86_64", "--build-id=sha1", "-T", "module.lds", "-o", "out.ko", "m.o", "modinfo.o"]
LINKS = {"partial": (PARTIAL, "out.o"), "final": (FINAL, "out.ko")}


def _assert_failed_cleanly(site: Site, result: subprocess.CompletedProcess[str], output: str,
                           *, previous: bytes | None = GOOD) -> None:
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    path = site.run / output
    if previous is None:
        assert not path.exists(), f"{output} was left behind after a failure"
    else:
        assert path.read_bytes() == previous, f"the previous {output} did not survive the failure"
    assert site.temporaries() == [], f"temporaries left: {site.temporaries()}"


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("klp-ld: error: "), stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Failures: ld's, ours, signals


@pytest.mark.parametrize("link", sorted(LINKS))
@pytest.mark.parametrize("previous", [GOOD, None], ids=["previous-output", "no-output"])
def test_ld_failure_leaves_no_output(site: Site, link: str, previous: bytes | None) -> None:
    args, output = LINKS[link]
    if previous is not None:
        (site.run / output).write_bytes(previous)
    failing = site.script("failing-ld", FAILING_LD)
    result = site.klp_ld([f"--klp-real-ld={failing}", *args])
    assert result.returncode == 1
    assert result.stderr.strip() == "ld: simulated failure"
    _assert_failed_cleanly(site, result, output, previous=previous)


def test_ld_killed_by_a_signal_is_one_clean_line(site: Site) -> None:
    """A real ld that crashes (SIGSEGV) must not turn into exit status 245 and silence."""
    (site.run / "out.o").write_bytes(GOOD)
    crashing = site.script("crashing-ld", "#!/bin/sh\nkill -SEGV $$\n")
    result = site.klp_ld([f"--klp-real-ld={crashing}", *PARTIAL])
    assert result.returncode == 1, f"status {result.returncode}"
    line = _one_error_line(result.stderr)
    assert "signal 11" in line, line
    _assert_failed_cleanly(site, result, "out.o")


def test_real_ld_failure_keeps_the_previous_output(site: Site) -> None:
    (site.run / "out.o").write_bytes(GOOD)
    result = site.klp_ld(["-r", "-o", "out.o", "a.o", "missing.o"])
    assert result.returncode == 1 and "missing.o" in result.stderr, result.stderr
    _assert_failed_cleanly(site, result, "out.o")


def test_annotation_error_leaves_no_output(site: Site) -> None:
    (site.run / "out.o").write_bytes(GOOD)
    result = site.klp_ld(["-r", "-o", "out.o", "a.o", "conflict.o"])
    assert result.returncode == 1 and "annotated more than once" in result.stderr, result.stderr
    _assert_failed_cleanly(site, result, "out.o")


def test_conversion_error_leaves_no_output(site: Site) -> None:
    """The final link without MODULE_INFO(livepatch, "Y"): ld succeeds, validation refuses."""
    (site.run / "out.ko").write_bytes(GOOD)
    result = site.klp_ld(["-r", "-T", "module.lds", "-o", "out.ko", "m.o"])
    assert result.returncode == 1 and "livepatch" in result.stderr, result.stderr
    assert all(ln.startswith(("klp-ld: error: ", ">>> ")) for ln in result.stderr.splitlines()), result.stderr
    _assert_failed_cleanly(site, result, "out.ko")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False


@pytest.mark.parametrize("link", sorted(LINKS))
@pytest.mark.parametrize("how", ["SIGINT", "SIGINT-group", "SIGTERM", "SIGHUP", "SIGHUP-group", "SIGQUIT"])
def test_signal_mid_link(site: Site, link: str, how: str) -> None:
    """Ctrl-C (SIGINT to klp-ld, or to the whole process group as a terminal sends it), SIGTERM,
    SIGHUP (a closed terminal) and SIGQUIT while the real ld runs: exit 128+signal, no output, the
    previous one kept, no temporary left, ld gone (an orphaned ld would keep writing)."""
    args, output = LINKS[link]
    (site.run / output).write_bytes(GOOD)
    sleeping = site.script("sleeping-ld", SLEEPING_LD)
    mark = site.base / "ld.pid"
    env = {**drive.klp_ld_env(site.tmp), "KLP_TEST_MARK": str(mark)}
    proc = subprocess.Popen([str(drive.WRAPPER), f"--klp-real-ld={sleeping}", *args], cwd=site.run, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not mark.exists():
            assert proc.poll() is None, f"klp-ld exited before ld started: {proc.communicate()}"
            assert time.monotonic() < deadline, "the stand-in ld never started"
            time.sleep(0.02)
        ld_pid = int(mark.read_text())
        signum = getattr(signal, how.split("-")[0])
        if how.endswith("group"):
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    assert proc.returncode == 128 + signum, f"status {proc.returncode}\n{stderr}"
    _assert_failed_cleanly(site, result, output)
    assert not _alive(ld_pid), "the real ld was left running"


# ---------------------------------------------------------------------------------------------
# Success and --klp-keep-tmp


@pytest.mark.parametrize("link", sorted(LINKS))
def test_success_leaves_no_temporaries(site: Site, link: str) -> None:
    args, output = LINKS[link]
    (site.run / output).write_bytes(GOOD)
    result = site.klp_ld(args)
    assert result.returncode == 0, result.stderr
    assert (site.run / output).read_bytes()[:4] == b"\x7fELF"
    assert site.temporaries() == []


@pytest.mark.parametrize("link", sorted(LINKS))
def test_output_has_the_mode_ld_gives_it(site: Site, link: str) -> None:
    """ld creates its output 0666 & ~umask (0644 here); klp-ld's temporary file is made 0600 by
    mkstemp, and renaming it over the output must not make the module unreadable to others."""
    args, output = LINKS[link]
    ld_args = [a if a != output else "by-ld" for a in args]
    plain = subprocess.run(["ld", *ld_args], cwd=site.run, capture_output=True, text=True, check=False)
    assert plain.returncode == 0, plain.stderr
    result = site.klp_ld(args)
    assert result.returncode == 0, result.stderr
    want = (site.run / "by-ld").stat().st_mode & 0o777
    assert (site.run / output).stat().st_mode & 0o777 == want


def test_keep_tmp_keeps_and_says_where(site: Site) -> None:
    result = site.klp_ld(["--klp-keep-tmp", *PARTIAL])
    assert result.returncode == 0, result.stderr
    kept = list(site.tmp.iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("klp-ld-"), kept
    assert str(kept[0]) in result.stderr
    assert sorted(p.name.split("-", 1)[1] for p in kept[0].iterdir() if p.suffix == ".o") == ["a.o", "b.o"]
    assert not list(site.run.rglob(".klp-ld-*"))


def test_keep_tmp_keeps_them_after_a_failure_too(site: Site) -> None:
    failing = site.script("failing-ld", FAILING_LD)
    result = site.klp_ld(["--klp-keep-tmp", f"--klp-real-ld={failing}", *PARTIAL])
    assert result.returncode == 1
    assert len(list(site.tmp.iterdir())) == 1
    assert not (site.run / "out.o").exists() and not list(site.run.rglob(".klp-ld-*"))


# ---------------------------------------------------------------------------------------------
# ENOSPC and permissions: one clean line that names the file


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, mounted for the test and unmounted after."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("ENOSPC tests mount a 64 KiB tmpfs, which needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0777", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _big_object(site: Site, toolchain: Toolchain) -> Path:
    """An annotated object larger than the tiny file system: its renamed copy cannot be written."""
    src = site.base / "big.c"
    src.write_text("char big_blob[256 * 1024] = { 1 };\n" + (OBJECTS / "seed_a.c").read_text())
    out = site.run / "big.o"
    subprocess.run([toolchain.gcc, "-c", "-O2", "-mcmodel=kernel", "-fno-pic", "-I", str(OBJECTS), "-o",
                    str(out), str(src)], check=True)
    return out


def test_enospc_in_tmpdir_is_one_clean_line(site: Site, toolchain: Toolchain, tiny_fs: Path) -> None:
    _big_object(site, toolchain)
    result = site.klp_ld(["-r", "-o", "out.o", "big.o"], env={"TMPDIR": str(tiny_fs)})
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "No space left on device" in line and "big.o" in line, line
    assert not (site.run / "out.o").exists()
    assert list(tiny_fs.iterdir()) == [], "temporaries left on the full file system"


def test_enospc_writing_the_module_is_one_clean_line(site: Site, tiny_fs: Path) -> None:
    """ld's output fits; klp-ld's converted module, written over it, does not."""
    for name in ("m.o", "modinfo.o", "module.lds"):
        shutil.copy(site.run / name, tiny_fs / name)
    (tiny_fs / "out.ko").write_bytes(GOOD)
    filling = site.script("filling-ld", FILLING_LD)
    env = {**drive.klp_ld_env(site.tmp), "KLP_TEST_FILL": str(tiny_fs)}
    result = subprocess.run([str(drive.WRAPPER), f"--klp-real-ld={filling}", "-r", "-T", "module.lds", "-o",
                             "out.ko", "m.o", "modinfo.o"], cwd=tiny_fs, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    line = _one_error_line(result.stderr)
    assert "No space left on device" in line and "out.ko" in line and ".klp-ld.tmp" not in line, line
    assert (tiny_fs / "out.ko").read_bytes() == GOOD
    assert sorted(p.name for p in tiny_fs.iterdir()) == sorted(["filler", "m.o", "modinfo.o", "module.lds",
                                                                 "out.ko"])
    assert list(site.tmp.iterdir()) == []


def _without_dac_override() -> list[str]:
    """A command prefix under which permission bits apply to this (possibly root) user."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv(1) is missing: cannot drop CAP_DAC_OVERRIDE")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here: {probe.stderr.strip()}")
    return prefix


def test_read_only_output_directory_is_one_clean_line(site: Site) -> None:
    wrap = _without_dac_override()
    (site.run / "ro").mkdir()
    (site.run / "ro").chmod(0o555)
    try:
        result = site.klp_ld(["-r", "-o", "ro/out.o", "a.o", "b.o"], wrap=wrap)
    finally:
        (site.run / "ro").chmod(0o755)
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "Permission denied" in line and "ro/out.o" in line and ".klp-ld.tmp" not in line, line
    assert list((site.run / "ro").iterdir()) == [] and site.temporaries() == []


def test_unreadable_input_is_one_clean_line(site: Site) -> None:
    wrap = _without_dac_override()
    locked = site.run / "locked.o"
    shutil.copy(site.run / "b.o", locked)
    locked.chmod(0)
    result = site.klp_ld(["-r", "-o", "out.o", "a.o", "locked.o"], wrap=wrap)
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "Permission denied" in line and "locked.o" in line, line
    assert not (site.run / "out.o").exists() and site.temporaries() == []
