"""P4: the whole kbuild build of P3's 100-object, 10,000-site livepatch module, klp-ld vs plain ld.

    python benchmarks/bench_p4_big_kbuild.py [--builds 5] [--jobs 2]

`make -C <6.1 headers> M=<fresh copy> -j2 modules` of benchmarks/gen_big_module.py's module
(main.o + 100 objects): with LD=wrappers/klp-ld (KLP_LD_SYMBOLS= the kernel bench's 6.1 kallsyms
dump, so every position is held to the kernel), and with kbuild's ld plus KBUILD_MODPOST_WARN=1
(plain ld leaves the annotated names undefined, which modpost would otherwise refuse). Every build
starts from a fresh copy (not timed). Interleaved, medians. Goal: klp-ld <= 1.03x.
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
    WRAPPER,
    bench_cache,
    fresh_copy,
    interleave,
    livepatch_build,
    need,
    report,
)
from benchmarks.gen_big_module import generate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--refs", type=int, default=100)
    opts = parser.parse_args()
    kallsyms = bench_cache() / "kallsyms"
    need(HEADERS_61.is_dir(), f"{HEADERS_61} is missing")
    need(kallsyms.is_file(), f"{kallsyms} is missing (run the kernel bench once: pytest -m kernel)")
    work = Path(tempfile.mkdtemp(prefix="klp-ld-p4-"))
    try:
        gen = generate(work / "bigklp", kallsyms, HEADERS_61 / "Module.symvers", objects=opts.objects,
                       refs=opts.refs)

        def build(ld: str | None) -> float:
            module = fresh_copy(gen.directory, work)
            elapsed = livepatch_build(module, "bigklp.ko", ld, kallsyms, opts.jobs)
            shutil.rmtree(module)
            return elapsed

        print(f"P4: {len(gen.objects)} objects + main.o, {gen.annotated_sites} annotated sites", flush=True)
        times = interleave({"make LD=ld (KBUILD_MODPOST_WARN=1)": lambda: build(None),
                            "make LD=klp-ld": lambda: build(str(WRAPPER))}, opts.builds)
        report(f"P4 whole kbuild build of the 10,000-site module (-j{opts.jobs})", times,
               [("make LD=klp-ld", "make LD=ld (KBUILD_MODPOST_WARN=1)")], unit=1.0, unit_name="s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
