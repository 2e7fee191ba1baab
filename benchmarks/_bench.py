"""Shared pieces of the on-demand benchmarks: timing side by side, kbuild runs, the real interpreter.

Timings are wall-clock of whole processes started with posix_spawn (the cheapest way to start
one from Python), taken round-robin so that the variants of one comparison share the machine's
state; the order inside each round alternates to cancel position effects. Figures are medians.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = ROOT / "wrappers" / "klp-ld"
KMOD = ROOT / "testdata" / "kmod"
OBJECTS = ROOT / "testdata" / "objects"
# The interpreter running this script, never the pyenv shim (a bash script) that PATH may offer.
PYTHON = os.path.realpath(sys.executable)
RELEASE_61 = "6.1.0-50-amd64"
HEADERS_61 = Path("/usr/src") / f"linux-headers-{RELEASE_61}"


def bench_cache(release: str = RELEASE_61) -> Path:
    base = os.environ.get("KLP_LD_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "klp-ld", "bench")
    return Path(base) / release


def klp_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment klp-ld runs in here: no stray KLP_LD_* settings, this interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD_")}
    env["KLP_LD_PYTHON"] = PYTHON
    env.update(extra or {})
    return env


def need(condition: bool, why: str) -> None:
    if not condition:
        sys.exit(f"cannot run this benchmark: {why}")


def spawn(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
          cwd: str | os.PathLike[str] | None = None, quiet: bool = True) -> tuple[float, int]:
    """Run one process; returns (wall seconds, exit status)."""
    exe = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if exe is None:
        raise FileNotFoundError(argv[0])
    actions: list[tuple[int, ...]] = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        if quiet:
            actions = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
        here = os.getcwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            start = time.perf_counter()
            pid = os.posix_spawn(exe, list(argv), dict(env if env is not None else os.environ),
                                 file_actions=actions)
            _, status = os.waitpid(pid, 0)
            elapsed = time.perf_counter() - start
        finally:
            os.chdir(here)
    finally:
        os.close(devnull)
    return elapsed, os.waitstatus_to_exitcode(status)


def interleave(cases: Mapping[str, Callable[[], float]], runs: int,
               warmup: int = 1) -> dict[str, list[float]]:
    """Run every case once per round, `runs` rounds after `warmup` untimed ones."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for round_ in range(runs):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(cases[name]())
    return times


def report(title: str, times: Mapping[str, list[float]], ratios: Sequence[tuple[str, str]],
           unit: float = 1e3, unit_name: str = "ms") -> list[str]:
    """Print medians (min-max) of every case and the ratios of medians asked for; returns the lines."""
    lines = [f"## {title}", ""]
    width = max(len(n) for n in times)
    for name, values in times.items():
        med = statistics.median(values) * unit
        lines.append(f"  {name:<{width}}  median {med:9.2f} {unit_name}   (min {min(values) * unit:.2f}, "
                     f"max {max(values) * unit:.2f}, n={len(values)})")
    for top, bottom in ratios:
        ratio = statistics.median(times[top]) / statistics.median(times[bottom])
        lines.append(f"  ratio {top} / {bottom}: {ratio:.3f}x")
    print("\n".join(lines), flush=True)
    return lines


def fresh_copy(source: Path, parent: Path) -> Path:
    """A clean copy of a module source tree (no build outputs) in a new directory under `parent`."""
    target = Path(tempfile.mkdtemp(prefix=f"{source.name}-", dir=parent))
    ignore = shutil.ignore_patterns("*.o", "*.ko", "*.mod", "*.mod.c", ".*.cmd", "modules.order",
                                    "Module.symvers")
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=ignore)
    return target


def kbuild_command(module_dir: Path, *, ld: str | None = None, make_vars: Mapping[str, str] | None = None,
                   jobs: int = 1, headers: Path = HEADERS_61) -> list[str]:
    cmd = ["make", "-s", "-C", str(headers), f"M={module_dir}"]
    if ld is not None:
        cmd.append(f"LD={ld}")
    cmd += [f"{k}={v}" for k, v in (make_vars or {}).items()]
    return [*cmd, f"-j{jobs}", "modules"]


def kbuild(module_dir: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = kwargs.pop("env", None)
    cmd = kbuild_command(module_dir, **kwargs)  # type: ignore[arg-type]
    return subprocess.run(cmd, env=env if isinstance(env, dict) else klp_env(), capture_output=True,
                          text=True, check=False)


def livepatch_build(module: Path, ko: str, ld: str | None, kallsyms: Path, jobs: int) -> float:
    """Build a livepatch module tree with kbuild; returns the wall time, exits if the build failed.

    `ld=None` is the baseline a livepatch author has without klp-ld: plain ld, with modpost's
    errors for the unresolved names turned into warnings; klp-ld reads symbols from `kallsyms`.
    """
    if ld is None:
        cmd = kbuild_command(module, make_vars={"KBUILD_MODPOST_WARN": "1"}, jobs=jobs)
        env = klp_env()
    else:
        cmd = kbuild_command(module, ld=ld, jobs=jobs)
        env = klp_env({"KLP_LD_SYMBOLS": str(kallsyms)})
    elapsed, status = spawn(cmd, env=env)
    if status != 0 or not (module / ko).is_file():
        sys.exit(f"the build with LD={ld or 'ld'} failed (status {status}): {' '.join(cmd)}")
    return elapsed


def installed_command() -> Path:
    """The `klp-ld` command pip installed for this interpreter (`pip install -e .`)."""
    import sysconfig

    path = Path(sysconfig.get_path("scripts")) / "klp-ld"
    need(path.is_file(), f"{path} is missing: install klp-ld for {PYTHON} first (pip install -e .)")
    head = path.read_bytes()[:4096]
    need(head.startswith(b"#!/bin/sh") and b"klp_ld" in head,
         f"{path} is not the sh/Python klp-ld command (reinstall: pip install -e .)")
    return path
