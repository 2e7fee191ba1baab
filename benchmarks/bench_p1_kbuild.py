"""P1: a whole kbuild build of an ordinary two-object module, LD=klp-ld vs LD=ld. Goal <= 1.05x.

    python benchmarks/bench_p1_kbuild.py [--builds 9] [--jobs 1]

Builds testdata/kmod/multi (multi.o from a.o and b.o, then multi.ko) against the Debian 6.1 headers
with `make -C <headers> M=<fresh copy> LD=<...> -j1 modules`, through the *installed* `klp-ld`
command (`pip install -e .` puts it beside this interpreter) as a user's `make LD=klp-ld` runs it:
no KLP_LD_PYTHON, the command finds its own interpreter. Interleaved, medians.
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

from benchmarks._bench import (  # noqa: E402
    HEADERS_61,
    KMOD,
    fresh_copy,
    installed_command,
    interleave,
    kbuild_command,
    need,
    report,
    spawn,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builds", type=int, default=9)
    parser.add_argument("--jobs", type=int, default=1)
    opts = parser.parse_args()
    need(HEADERS_61.is_dir(), f"{HEADERS_61} is missing")
    command = installed_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD_")}
    work = Path(tempfile.mkdtemp(prefix="klp-ld-p1-"))

    def build(ld: str | None) -> float:
        module = fresh_copy(KMOD / "multi", work)
        elapsed, status = spawn(kbuild_command(module, ld=ld, jobs=opts.jobs), env=env)
        if status != 0 or not (module / "multi.ko").is_file():
            sys.exit(f"the build with LD={ld or 'ld'} failed (status {status}) in {module}")
        shutil.rmtree(module)
        return elapsed

    try:
        print(f"P1: installed command {command}", flush=True)
        times = interleave({"make LD=ld": lambda: build(None), "make LD=klp-ld": lambda: build(str(command))},
                           opts.builds)
        report(f"P1 whole kbuild build of testdata/kmod/multi (-j{opts.jobs})", times,
               [("make LD=klp-ld", "make LD=ld")], unit=1.0, unit_name="s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
