"""P0: what klp-ld costs where it has nothing to do (from the checkout's wrappers/klp-ld).

    python benchmarks/bench_p0_passthrough.py [--runs 30] [--builds 7]

1. `klp-ld -v` vs `ld -v`: the pass-through start-up (sh, `python -I -S`, classify, execv ld).
2. A whole `make -C <6.1 headers> M=<copy of testdata/kmod/multi> -j1 modules` of an ordinary
   two-object module with LD=wrappers/klp-ld vs kbuild's own ld. Every build starts from a fresh
   copy of the sources (the copy is not timed).
Runs are interleaved; figures are medians. The interpreter is this script's (KLP_LD_PYTHON), never
a shim found on PATH.
"""

from __future__ import annotations

import argparse
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
    WRAPPER,
    fresh_copy,
    interleave,
    kbuild_command,
    klp_env,
    need,
    report,
    spawn,
)


def build_case(work: Path, ld: str | None) -> float:
    module = fresh_copy(KMOD / "multi", work)
    elapsed, status = spawn(kbuild_command(module, ld=ld), env=klp_env())
    if status != 0:
        sys.exit(f"the build with LD={ld or 'ld'} failed (status {status}) in {module}")
    if not (module / "multi.ko").is_file():
        sys.exit(f"no multi.ko in {module}")
    shutil.rmtree(module)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--builds", type=int, default=7)
    opts = parser.parse_args()
    env = klp_env()
    ld = shutil.which("ld")
    need(ld is not None, "no ld on PATH")
    assert ld is not None
    probe = {"ld -v": lambda: spawn([ld, "-v"], env=env)[0],
             "klp-ld -v": lambda: spawn([str(WRAPPER), "-v"], env=env)[0]}
    report("P0.1 pass-through: -v", interleave(probe, opts.runs, warmup=3), [("klp-ld -v", "ld -v")])
    need(HEADERS_61.is_dir(), f"{HEADERS_61} is missing")
    work = Path(tempfile.mkdtemp(prefix="klp-ld-p0-"))
    try:
        builds = {"make LD=ld": lambda: build_case(work, None),
                  "make LD=klp-ld": lambda: build_case(work, str(WRAPPER))}
        report("P0.2 whole kbuild build of testdata/kmod/multi (-j1)", interleave(builds, opts.builds),
               [("make LD=klp-ld", "make LD=ld")], unit=1.0, unit_name="s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
