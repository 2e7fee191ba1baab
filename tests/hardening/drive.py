"""Run klp-ld on one input, as a library call or as the real command, and judge what it did.

Shared by the hypothesis properties and benchmarks/fuzz_campaign.py. The judgement is the
hardening contract: a failure is `klp-ld: error:` lines (each optionally followed by `>>> ` notes)
with exit status 1 -- or, when the real ld ran and failed, ld's own messages and status -- never a
traceback, never an "internal error", never a hang, and never an output or temporary file left
behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from klp_ld.diag import Diagnostic

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "wrappers" / "klp-ld"

# The outcomes a run can have; the campaign counts them.
OK = "ok"
CLEAN_ERROR = "clean error"          # klp-ld's own `klp-ld: error:` lines, status 1
LD_ERROR = "ld error"                # the real ld ran, failed, and said why (passed through)
TRACEBACK = "traceback"
INTERNAL = "internal error"
HANG = "hang"
LEFTOVER = "leftover output"
MALFORMED = "malformed diagnostics"  # an unexpected status or stderr line from klp-ld
BAD = (TRACEBACK, INTERNAL, HANG, LEFTOVER, MALFORMED)
OUTCOMES = (OK, CLEAN_ERROR, LD_ERROR, *BAD)

DIAG_LINE = re.compile(r"^klp-ld: (error|warning|note): \S")
NOTE_LINE = re.compile(r"^>>> ")
LD_MARK = ".ld-ran"

# A stand-in for the real ld that records that it ran (in its cwd, the run directory), then is ld.
MARKING_LD = '#!/bin/sh\n: > "' + LD_MARK + '"\nexec "${KLP_FUZZ_LD:-ld}" "$@"\n'


@dataclass
class Verdict:
    outcome: str
    detail: str = ""

    @property
    def bad(self) -> bool:
        return self.outcome in BAD


def diagnostic_problem(stderr: str, *, need_error: bool) -> str | None:
    """Why `stderr` is not a clean klp-ld diagnostic, or None when it is."""
    lines = stderr.splitlines()
    previous_ok = False
    saw_error = False
    for line in lines:
        if DIAG_LINE.match(line):
            previous_ok = True
            saw_error = saw_error or line.startswith("klp-ld: error:")
        elif NOTE_LINE.match(line) and previous_ok:
            continue
        else:
            return f"unexpected stderr line {line!r}"
    if need_error and not saw_error:
        return "failed without a 'klp-ld: error:' line"
    return None


def crash_problem(text: str) -> str | None:
    if "Traceback (most recent call last)" in text:
        return TRACEBACK
    if "internal error" in text:
        return INTERNAL
    return None


def judge_cli(returncode: int | None, stderr: str, *, output: Path | None, expected: set[str], rundir: Path,
              tmpdir: Path | None, ld_ran: bool) -> Verdict:
    """The verdict on one command-line run in `rundir`, whose files before the run were `expected`."""
    if returncode is None:
        return Verdict(HANG, "no exit within the time limit")
    crash = crash_problem(stderr)
    if crash is not None:
        return Verdict(crash, stderr[-2000:])
    after = {p.name for p in rundir.iterdir()} - {LD_MARK}
    extra = after - expected - ({output.name} if returncode == 0 and output is not None else set())
    if extra:
        return Verdict(LEFTOVER, f"status {returncode}, left {sorted(extra)}")
    if tmpdir is not None and any(tmpdir.iterdir()):
        left = sorted(p.name for p in tmpdir.iterdir())
        return Verdict(LEFTOVER, f"status {returncode}, left in TMPDIR {left}")
    if returncode == 0:
        if output is not None and not output.is_file():
            return Verdict(MALFORMED, "status 0 but no output")
        problem = diagnostic_problem(stderr, need_error=False) if not ld_ran else None
        return Verdict(MALFORMED, problem) if problem else Verdict(OK)
    if ld_ran and not stderr.lstrip().startswith("klp-ld: error:") and "klp-ld: error:" not in stderr:
        # ld's own failure, passed through: its status must be a plain exit status
        if returncode < 0 or returncode > 125:
            return Verdict(MALFORMED, f"ld failed and klp-ld exited with status {returncode}")
        return Verdict(LD_ERROR, stderr.strip().splitlines()[0] if stderr.strip() else "")
    if returncode != 1:
        return Verdict(MALFORMED, f"exit status {returncode}\n{stderr[-2000:]}")
    if not ld_ran:
        problem = diagnostic_problem(stderr, need_error=True)
        if problem:
            return Verdict(MALFORMED, problem)
    first = next((ln for ln in stderr.splitlines() if ln.startswith("klp-ld: error:")), "")
    return Verdict(CLEAN_ERROR, first)


def klp_ld_env(tmpdir: Path | None = None, python: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD_")}
    env["KLP_LD_PYTHON"] = python or sys.executable
    env["KLP_LD_NO_DISCOVER"] = "1"
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


def run_cli(args: list[str], rundir: Path, *, tmpdir: Path | None = None, timeout: float = 30.0,
            python: str | None = None, env: dict[str, str] | None = None
            ) -> tuple[int | None, str, str]:
    """Run the checkout's klp-ld; returns (status or None on a hang, stdout, stderr)."""
    full_env = klp_ld_env(tmpdir, python)
    full_env.update(env or {})
    proc = subprocess.Popen([str(WRAPPER), *args], cwd=rundir, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out.decode(errors="replace"), err.decode(errors="replace")
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def install_marking_ld(directory: Path) -> Path:
    path = directory / "marking-ld"
    path.write_text(MARKING_LD)
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------------------------------------
# The library path: what the pipeline does with one object, in-process


def _raise_errors(problems: Sequence[Diagnostic]) -> None:
    from klp_ld.diag import KlpLdError

    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise KlpLdError(*errors)


def api_partial(data: bytes, name: str) -> None:
    """read -> harvest -> rename -> write -> read back, as the partial link does for one input."""
    from klp_ld.annotations import harvest
    from klp_ld.elf.read import read_elf
    from klp_ld.elf.write import write_elf
    from klp_ld.rename import apply_renames

    obj = read_elf(data, name)
    found = harvest(obj)
    _raise_errors(found.problems)
    apply_renames(obj, {a.symbol: (a.identity, "fuzz") for a in found.annotations})
    read_elf(write_elf(obj), name + " (rewritten)")


def api_final(data: bytes, name: str) -> None:
    """read -> convert -> validate -> write -> read back, as the final link does for the `.ko`."""
    from klp_ld.convert import convert, has_work
    from klp_ld.elf.read import read_elf
    from klp_ld.elf.write import write_elf
    from klp_ld.validate import check_module, check_sites

    obj = read_elf(data, name)
    if not has_work(obj):
        return
    result = convert(obj)
    problems = check_module(obj, result.conversions)
    site_problems, _ = check_sites(obj, result.conversions)
    _raise_errors([*problems, *site_problems])
    read_elf(write_elf(obj), name + " (converted)")


def api_check(data: bytes, name: str) -> None:
    """`klp-ld check` on an already converted module."""
    from klp_ld.check import check_object
    from klp_ld.elf.read import read_elf

    check_object(read_elf(data, name))


API_DRIVERS: dict[str, Callable[[bytes, str], None]] = {
    "partial": api_partial, "final": api_final, "check": api_check,
}


def judge_api(driver: Callable[[bytes, str], None], data: bytes, name: str = "mutant.o") -> Verdict:
    """Run a library driver: only `KlpLdError` (rendered as clean lines) may come out."""
    from klp_ld.diag import KlpLdError

    try:
        driver(data, name)
    except KlpLdError as exc:
        rendered = "\n".join(d.render() for d in exc.diagnostics)
        problem = diagnostic_problem(rendered, need_error=True)
        if problem or not exc.diagnostics:
            return Verdict(MALFORMED, problem or "KlpLdError without diagnostics")
        return Verdict(CLEAN_ERROR, exc.diagnostics[0].render().splitlines()[0])
    except RecursionError as exc:
        return Verdict(TRACEBACK, f"RecursionError: {exc}")
    except Exception as exc:
        import traceback

        return Verdict(TRACEBACK, "".join(traceback.format_exception(exc))[-3000:])
    return Verdict(OK)
