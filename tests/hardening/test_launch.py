"""The `klp-ld` command: a sh/Python polyglot that starts `python -I -S` and stays small on pass-through.

kbuild runs $(LD) for probes and ordinary links too, so the path that hands a command to the real
ld must not import pyelftools or capstone (about 50 ms each) nor run `site` (its .pth files can
cost tens of ms). The same file is the checkout's wrappers/klp-ld and the installed command
(pyproject's script-files), so it must find its interpreter and klp_ld in every install layout.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from klp_ld import __version__, realld

from .conftest import OBJECTS, Toolchain
from .drive import ROOT, WRAPPER

HEAVY = ("elftools", "capstone", "klp_ld.pipeline", "klp_ld.elf", "klp_ld.arch", "json", "subprocess")
PASS_THROUGH_MODULES = {"klp_ld", "klp_ld.launch", "klp_ld.cmdline", "klp_ld.realld"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD_")}
    env.update(extra)
    return env


def _traced(cmd: list[str], tmp_path: Path, env: dict[str, str], cwd: Path | None = None) -> set[str]:
    trace = tmp_path / "modules.txt"
    done = subprocess.run(cmd, cwd=cwd or tmp_path, env={**env, "KLP_LD_TRACE_MODULES": str(trace)},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert trace.is_file(), f"klp-ld did not pass {cmd[1:]} through (no module trace)\n{done.stderr}"
    return set(trace.read_text().split())


@pytest.mark.parametrize("args", [["-m", "elf_x86_64", "-z", "noexecstack", "--no-warn-rwx-segments", "-v"],
                                  ["--version"], ["-r", "-o", "out.o", "plain.o"]],
                         ids=["kbuild-probe", "version", "ordinary-link"])
def test_pass_through_loads_neither_site_nor_pyelftools_nor_capstone(tmp_path: Path, toolchain: Toolchain,
                                                                     args: list[str]) -> None:
    shutil.copy(toolchain.build("plain.c"), tmp_path / "plain.o")
    modules = _traced([str(WRAPPER), *args], tmp_path, _env(KLP_LD_PYTHON=sys.executable))
    heavy = sorted(m for m in modules if m.startswith(HEAVY))
    assert heavy == [], f"the pass-through path imported {heavy}"
    assert {m for m in modules if m.startswith("klp_ld")} <= PASS_THROUGH_MODULES
    # site.main() would have run the environment's .pth files and imported their modules
    assert not any(m.startswith(("_distutils_hack", "__editable__", "sitecustomize")) for m in modules)


def test_python_dash_m_passes_through_the_same_way(tmp_path: Path) -> None:
    env = _env(PYTHONPATH=str(ROOT))
    modules = _traced([sys.executable, "-m", "klp_ld", "-v"], tmp_path, env)
    assert not [m for m in modules if m.startswith(HEAVY)]


def test_the_command_is_both_sh_and_python(tmp_path: Path) -> None:
    text = WRAPPER.read_text()
    assert text.startswith("#!/bin/sh\n")
    compile(text, str(WRAPPER), "exec")  # valid Python too
    assert realld.is_klp_ld(str(WRAPPER), frozenset()), "the recursion guard no longer recognises klp-ld"
    for cmd in (["sh", str(WRAPPER)], [sys.executable, "-I", "-S", str(WRAPPER)]):
        done = subprocess.run([*cmd, "--klp-version"], env=_env(KLP_LD_PYTHON=sys.executable),
                              capture_output=True, text=True, check=False)
        assert done.stdout == f"klp-ld {__version__}\n", done.stderr


# ---------------------------------------------------------------------------------------------
# Install layouts: the script copied into a venv's bin/ by pip, regular or editable, and symlinks


def _venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    done = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot create a venv with {sys.executable}: {done.stderr.strip()[-200:]}")
    shutil.copy(WRAPPER, venv / "bin" / "klp-ld")
    return venv


def _site_packages(venv: Path) -> Path:
    """Where pip would install into this venv, as the venv's interpreter (with site) sees it."""
    done = subprocess.run([str(venv / "bin" / "python3"), "-I", "-c",
                           "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True)
    found = Path(done.stdout.strip())
    if not found.is_relative_to(venv):  # never write into a real environment
        pytest.skip(f"the venv's site-packages is outside it ({found})")
    found.mkdir(parents=True, exist_ok=True)
    return found


def _run_in(venv_bin: Path, args: list[str], tmp_path: Path, path: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = _env()
    env["PATH"] = path if path is not None else os.environ.get("PATH", "")
    return subprocess.run([str(venv_bin / "klp-ld"), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, check=False)


def _include_dir(result: subprocess.CompletedProcess[str]) -> Path:
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def test_installed_in_a_venv_uses_the_venvs_python_and_package(tmp_path: Path) -> None:
    venv = _venv(tmp_path)
    site = _site_packages(venv)
    shutil.copytree(ROOT / "klp_ld", site / "klp_ld", ignore=shutil.ignore_patterns("__pycache__"))
    got = _include_dir(_run_in(venv / "bin", ["--klp-print-include-dir"], tmp_path))
    assert got == site / "klp_ld" / "include"
    # pipx links the command into ~/.local/bin: the python beside the link's target is the one
    linked = tmp_path / "local-bin"
    linked.mkdir()
    (linked / "klp-ld").symlink_to(venv / "bin" / "klp-ld")
    assert _include_dir(_run_in(linked, ["--klp-print-include-dir"], tmp_path)) == got


@pytest.mark.parametrize("kind", ["finder", "pth"])
def test_editable_install_finds_the_checkout(tmp_path: Path, kind: str) -> None:
    venv = _venv(tmp_path)
    site = _site_packages(venv)
    if kind == "finder":  # setuptools >= 64 (pip install -e .)
        (site / "__editable___klp_ld_0_1_0_finder.py").write_text(
            f"MAPPING: dict[str, str] = {{'klp_ld': '{ROOT / 'klp_ld'}'}}\n")
        (site / "__editable__.klp_ld-0.1.0.pth").write_text(
            "import __editable___klp_ld_0_1_0_finder; __editable___klp_ld_0_1_0_finder.install()\n")
    else:  # the "compat" mode and older setuptools: a path in a .pth file
        (site / "__editable__.klp_ld-0.1.0.pth").write_text(f"{ROOT}\n")
    got = _include_dir(_run_in(venv / "bin", ["--klp-print-include-dir"], tmp_path))
    assert got == ROOT / "klp_ld" / "include"
    modules = _traced([str(venv / "bin" / "klp-ld"), "-v"], tmp_path, _env())
    assert not any(m.startswith(("__editable__", "elftools", "capstone")) for m in modules)


def test_a_python_without_klp_ld_is_one_clean_error(tmp_path: Path) -> None:
    venv = _venv(tmp_path)   # an empty venv: no klp_ld anywhere it looks
    # --klp-version: `-v` alone is handed to ld by the wrapper's shell part, without Python
    done = _run_in(venv / "bin", ["--klp-version"], tmp_path)
    if done.returncode == 0:
        pytest.skip("this interpreter's own site-packages has klp_ld installed (not editable)")
    assert done.returncode == 1
    assert done.stderr.startswith("klp-ld: error: ") and "cannot import klp_ld" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_linked_as_ld_finds_the_real_ld_and_keeps_its_name(tmp_path: Path) -> None:
    """Installed (or linked) as `ld` first on PATH, klp-ld skips itself; linked as `ld.lld`, it
    keeps that name, so it looks for ld.lld."""
    if shutil.which("ld") is None:
        pytest.skip("no ld on PATH")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ld").symlink_to(WRAPPER)
    (bindir / "ld.lld").symlink_to(WRAPPER)
    env = _env(KLP_LD_PYTHON=sys.executable, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["ld", "-v"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "GNU ld" in done.stdout, done.stderr
    done = subprocess.run(["ld.lld", "--dry-run", "-v"], env=env, capture_output=True, text=True, check=False)
    assert "ld.lld" in done.stdout + done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_livepatch_link_through_the_command(tmp_path: Path, toolchain: Toolchain) -> None:
    """The -S start must still reach pyelftools and capstone once there is work."""
    for src in ("seed_a.c", "seed_b.c"):
        shutil.copy(toolchain.build(src), tmp_path / f"{Path(src).stem}.o")
    shutil.copy(OBJECTS / "module.lds", tmp_path)
    shutil.copy(toolchain.build("modinfo.c"), tmp_path / "modinfo.o")
    env = _env(KLP_LD_PYTHON=sys.executable)
    for args in (["-r", "-o", "m.o", "seed_a.o", "seed_b.o"], ["-r", "-T", "module.lds", "-o", "m.ko", "m.o",
                                                                "modinfo.o"]):
        done = subprocess.run([str(WRAPPER), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------------------------
# Packaging


def test_pyproject_installs_the_polyglot_as_klp_ld() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "klp-ld" not in meta["project"].get("scripts", {}), \
        "a [project.scripts] klp-ld would be pip's slow console script (site + entry point)"
    assert meta["tool"]["setuptools"]["script-files"] == ["wrappers/klp-ld"]


def test_setuptools_installs_the_script_unchanged(tmp_path: Path) -> None:
    """setuptools' build_scripts (what a wheel build runs, with executable 'python') rewrites only
    shebangs naming python, and pip's installer only `#!python` ones: `#!/bin/sh` reaches bin/
    byte for byte, so the polyglot's `-I -S` start survives installation."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "klp_ld", src / "klp_ld", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "wrappers", src / "wrappers")
    done = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                           "build_scripts", "--executable=python", "--force"],
                          cwd=src, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    built = list((src / "build").glob("scripts-*/*"))
    assert [p.name for p in built] == ["klp-ld"]
    assert built[0].read_bytes() == WRAPPER.read_bytes()
    assert not WRAPPER.read_bytes().startswith(b"#!python")


def test_the_real_ld_gets_sigpipe_and_sigxfsz_at_their_defaults(tmp_path: Path) -> None:
    """Python ignores SIGPIPE and SIGXFSZ and an exec keeps them ignored; ld run by make has them
    at their defaults, and so must ld run through klp-ld (else `ld ... | head` or a file-size
    limit would end it differently)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ld"
    fake.write_text("#!/bin/sh\nexec grep '^SigIgn:' /proc/self/status\n")
    fake.chmod(0o755)
    env = _env(KLP_LD_PYTHON=sys.executable, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run([str(WRAPPER), "-r", "-v"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    ignored = int(done.stdout.split()[1], 16)
    assert not ignored & (1 << (13 - 1)) and not ignored & (1 << (25 - 1)), done.stdout  # SIGPIPE, SIGXFSZ


def test_a_deleted_working_directory_is_one_error_line(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f'cd "{gone}" && rmdir "{gone}" && exec "{WRAPPER}" -r -v'
    done = subprocess.run(["sh", "-c", script], env=_env(KLP_LD_PYTHON=sys.executable), capture_output=True,
                          text=True, check=False)
    assert done.returncode == 1
    ours = [line for line in done.stderr.splitlines() if not line.startswith("sh: ")]  # dash's own note
    assert len(ours) == 1 and ours[0].startswith("klp-ld: error: cannot read the working directory"), \
        done.stderr
