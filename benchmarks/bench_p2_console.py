"""P2: the installed command on kbuild's probe: `klp-ld -m elf_x86_64 -v` vs `ld -m elf_x86_64 -v`.

Goal <= 3x.

    python benchmarks/bench_p2_console.py [--runs 40]

Measured side by side, interleaved, medians:
- `ld -m elf_x86_64 -v`;
- the installed `klp-ld` (wrappers/klp-ld as pyproject's script-files installs it; no KLP_LD_PYTHON):
  the probe takes the shell's fast path, which execs ld without starting Python;
- the same command through the Python launcher: KLP_LD_NO_DISCOVER=1 in its environment, a
  setting the fast path leaves to Python (sh finds the interpreter beside the script and runs
  `python -I -S`, klp_ld.launch execs ld);
- "before": the console script pip generates for `[project.scripts] klp-ld = "klp_ld.launch:main"`
  (`#!<python>` with `site`, then the entry point), written here to a temporary file exactly as
  pip 23 writes it, for the same interpreter;
- the floors: `python -I -S -c pass` and `python -c pass` (with site).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._bench import PYTHON, installed_command, interleave, need, report, spawn  # noqa: E402

PIP_CONSOLE_SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from klp_ld.launch import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    opts = parser.parse_args()
    ld = shutil.which("ld")
    need(ld is not None, "no ld on PATH")
    assert ld is not None
    command = installed_command()
    need(command.read_bytes() == (ROOT / "wrappers" / "klp-ld").read_bytes(),
         f"{command} is not this checkout's wrappers/klp-ld (reinstall: pip install -e .)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD_")}
    python_env = {**env, "KLP_LD_NO_DISCOVER": "1"}
    work = Path(tempfile.mkdtemp(prefix="klp-ld-p2-"))
    try:
        before = work / "klp-ld"
        before.write_text(PIP_CONSOLE_SCRIPT.format(python=PYTHON))
        before.chmod(0o755)
        probe = ["-m", "elf_x86_64", "-v"]
        for exe, exe_env in ((command, env), (command, python_env), (before, env)):
            _, status = spawn([str(exe), *probe], env=exe_env)
            need(status == 0, f"{exe} {' '.join(probe)} failed")
        cases = {
            "ld -m elf_x86_64 -v": lambda: spawn([ld, *probe], env=env)[0],
            "klp-ld (installed, sh fast path)": lambda: spawn([str(command), *probe], env=env)[0],
            "klp-ld (installed, sh + python -I -S)": lambda: spawn([str(command), *probe], env=python_env)[0],
            "klp-ld (pip console script, before)": lambda: spawn([str(before), *probe], env=env)[0],
            "python -I -S -c pass": lambda: spawn([PYTHON, "-I", "-S", "-c", "pass"], env=env)[0],
            "python -c pass": lambda: spawn([PYTHON, "-c", "pass"], env=env)[0],
        }
        print(f"P2: {command} with {PYTHON}", flush=True)
        report("P2 pass-through of kbuild's probe through the installed command",
               interleave(cases, opts.runs, 3),
               [("klp-ld (installed, sh fast path)", "ld -m elf_x86_64 -v"),
                ("klp-ld (installed, sh + python -I -S)", "ld -m elf_x86_64 -v"),
                ("klp-ld (pip console script, before)", "ld -m elf_x86_64 -v"),
                ("python -I -S -c pass", "ld -m elf_x86_64 -v")])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
