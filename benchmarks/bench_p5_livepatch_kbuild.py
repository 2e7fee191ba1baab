"""P5: the whole kbuild build of a typical livepatch module, klp-ld vs plain ld. Goal <= 1.05x.

    python benchmarks/bench_p5_livepatch_kbuild.py [--builds 7] [--jobs 1]

benchmarks/data/p5_livepatch: four objects (the klp_patch replacing cmdline_proc_show() and
version_proc_show(), the new cmdline body reading saved_command_line, two state_show() copies by
position, the original /proc handlers from text and from a table): text and data klp relocations.
`make -C <6.1 headers> M=<fresh copy> modules` with LD=wrappers/klp-ld (KLP_LD_SYMBOLS= the kernel
bench's 6.1 kallsyms dump, whose per-file cache the untimed warm-up round fills), and with kbuild's ld
plus KBUILD_MODPOST_WARN=1 (plain ld leaves the annotated names undefined). Every build starts from a
fresh copy (not timed). Interleaved, medians.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._bench import (  # noqa: E402
    HEADERS_61,
    OBJECTS,
    WRAPPER,
    bench_cache,
    fresh_copy,
    interleave,
    klp_env,
    livepatch_build,
    need,
    report,
)

SOURCE = ROOT / "benchmarks" / "data" / "p5_livepatch"
MODULE = "klp_p5"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builds", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=1)
    opts = parser.parse_args()
    kallsyms = bench_cache() / "kallsyms"
    need(HEADERS_61.is_dir(), f"{HEADERS_61} is missing")
    need(kallsyms.is_file(), f"{kallsyms} is missing (run the kernel bench once: pytest -m kernel)")
    work = Path(tempfile.mkdtemp(prefix="klp-ld-p5-"))
    klp_variant = klp_env({"KLP_LD_SYMBOLS": str(kallsyms)})

    def build(ld: str | None, keep: bool = False) -> float:
        module = fresh_copy(SOURCE, work)
        shutil.copy(OBJECTS / "klp.h", module / "klp.h")
        elapsed = livepatch_build(module, f"{MODULE}.ko", ld, kallsyms, opts.jobs)
        if not keep:
            shutil.rmtree(module)
        return elapsed

    try:
        # One build up front, kept, to show that klp-ld's output passes its own check.
        sample = build(str(WRAPPER), keep=True)
        built = next(work.glob(f"p5_livepatch-*/{MODULE}.ko"))
        check = subprocess.run([str(WRAPPER), "check", str(built), f"--klp-symbols={kallsyms}"],
                               env=klp_variant, capture_output=True, text=True, check=False)
        lines = check.stdout.strip().splitlines()
        print(f"P5: {SOURCE.name}, 4 objects; first klp-ld build {sample:.2f} s; klp-ld check: status "
              f"{check.returncode}: {lines[-1] if lines else check.stderr.strip()[-300:]}", flush=True)
        times = interleave({"make LD=ld (KBUILD_MODPOST_WARN=1)": lambda: build(None),
                            "make LD=klp-ld": lambda: build(str(WRAPPER))}, opts.builds)
        report(f"P5 whole kbuild build of a typical livepatch module (-j{opts.jobs})", times,
               [("make LD=klp-ld", "make LD=ld (KBUILD_MODPOST_WARN=1)")], unit=1.0, unit_name="s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
