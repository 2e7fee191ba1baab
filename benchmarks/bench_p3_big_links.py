"""P3: the partial and final links of a 100-object, 10,000-site livepatch module, klp-ld vs plain ld.

    python benchmarks/bench_p3_big_links.py [--runs 7] [--objects 100] [--refs 100] [--profile]

The module comes from benchmarks/gen_big_module.py: 100 objects x 100 annotated references to real
non-exported 6.1 functions (half `lea sym(%rip)` text sites, half `.data` pointers), plus unannotated
references (the exported _printk, and unique non-exported functions klp-ld resolves itself). The
objects are compiled once with gcc and kernel-like flags. Each timed run does what kbuild's two
links do, through klp-ld (with --klp-symbols= the 6.1 kallsyms dump of the kernel bench and
--klp-symvers= the headers' Module.symvers) and through plain ld:

    LD -m elf_x86_64 -z noexecstack -r -o big.o @big.mod
    LD -r -m elf_x86_64 -z noexecstack --build-id=sha1 -T module.lds -o big.ko big.o modinfo.o

Goal: klp-ld <= 10x plain ld. Also prints the peak RSS of one link. --profile runs both klp-ld
links once under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._bench import (  # noqa: E402
    HEADERS_61,
    OBJECTS,
    PYTHON,
    WRAPPER,
    bench_cache,
    interleave,
    klp_env,
    need,
    report,
    spawn,
)
from benchmarks.gen_big_module import generate  # noqa: E402

CFLAGS = ["-O2", "-mcmodel=kernel", "-fno-pic", "-mno-red-zone", "-fno-asynchronous-unwind-tables",
          "-fno-stack-protector"]


def build_objects(work: Path, objects: int, refs: int) -> tuple[list[str], int, int]:
    kallsyms = bench_cache() / "kallsyms"
    gen = generate(work / "src", kallsyms, HEADERS_61 / "Module.symvers", objects=objects, refs=refs)
    obj_dir = work / "obj"
    obj_dir.mkdir()
    procs = []
    for name in gen.objects:
        src = gen.directory / name.replace(".o", ".c")
        procs.append(subprocess.Popen(["gcc", "-c", *CFLAGS, "-I", str(gen.directory), "-o",
                                       str(obj_dir / name), str(src)]))
        if len(procs) >= 4:
            assert procs.pop(0).wait() == 0
    assert all(p.wait() == 0 for p in procs)
    subprocess.run(["gcc", "-c", *CFLAGS, "-o", str(obj_dir / "modinfo.o"), str(OBJECTS / "modinfo.c")],
                   check=True)
    shutil.copy(HEADERS_61 / "arch" / "x86" / "module.lds", obj_dir / "module.lds")
    (obj_dir / "big.mod").write_text("".join(f"{obj_dir / n}\n" for n in gen.objects))
    return gen.objects, gen.annotated_sites, gen.unannotated_sites


def link_commands(klp_options: list[str]) -> tuple[list[str], list[str]]:
    partial = [*klp_options, "-m", "elf_x86_64", "-z", "noexecstack", "-r", "-o", "big.o", "@big.mod"]
    final = [*klp_options, "-r", "-m", "elf_x86_64", "-z", "noexecstack", "--build-id=sha1", "-T",
             "module.lds", "-o", "big.ko", "big.o", "modinfo.o"]
    return partial, final


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--refs", type=int, default=100)
    parser.add_argument("--profile", action="store_true")
    opts = parser.parse_args()
    kallsyms = bench_cache() / "kallsyms"
    need(HEADERS_61.is_dir(), f"{HEADERS_61} is missing")
    need(kallsyms.is_file(), f"{kallsyms} is missing (run the kernel bench once: pytest -m kernel)")
    work = Path(tempfile.mkdtemp(prefix="klp-ld-p3-"))
    try:
        objects, annotated, unannotated = build_objects(work, opts.objects, opts.refs)
        obj_dir = work / "obj"
        klp_opts = [f"--klp-symbols={kallsyms}", f"--klp-symvers={HEADERS_61 / 'Module.symvers'}"]
        env = klp_env()
        steps: dict[str, list[float]] = {name: [] for name in
                                         ("klp-ld partial", "klp-ld final", "ld partial", "ld final")}

        def run(name: str, argv: list[str]) -> float:
            elapsed, status = spawn(argv, env=env, cwd=obj_dir)
            if status != 0:
                done = subprocess.run(argv, env=env, cwd=obj_dir, capture_output=True, text=True, check=False)
                sys.exit(f"{name} failed (status {status}):\n{done.stderr[-3000:]}")
            steps[name].append(elapsed)
            return elapsed

        def both(tool: str, exe: list[str], options: list[str]) -> Callable[[], float]:
            partial, final = link_commands(options)
            return lambda: run(f"{tool} partial", [*exe, *partial]) + run(f"{tool} final", [*exe, *final])

        cases = {"klp-ld (partial + final)": both("klp-ld", [str(WRAPPER)], klp_opts),
                 "ld (partial + final)": both("ld", ["ld"], [])}
        print(f"P3: {len(objects)} objects, {annotated} annotated sites ({annotated // 2} text, "
              f"{annotated - annotated // 2} data), {unannotated} unannotated references; symbols from "
              f"{kallsyms}", flush=True)
        times = interleave(cases, opts.runs)
        for values in steps.values():   # drop the warm-up round
            del values[0]
        report("P3 partial + final link", {**times, **steps},
               [("klp-ld (partial + final)", "ld (partial + final)"), ("klp-ld partial", "ld partial"),
                ("klp-ld final", "ld final")])
        klp_rss, ld_rss = peak_rss_mib(obj_dir, klp_opts), peak_rss_mib(obj_dir, [], ["ld"])
        print(f"  peak RSS of one link (the larger of partial and final): klp-ld {klp_rss:.1f} MiB, "
              f"plain ld {ld_rss:.1f} MiB", flush=True)
        cases["klp-ld (partial + final)"]()  # the runs above leave plain ld's big.ko: check klp-ld's
        check = subprocess.run([str(WRAPPER), "check", "big.ko", f"--klp-symbols={kallsyms}"], cwd=obj_dir,
                               env=env, capture_output=True, text=True, check=False)
        print(f"  klp-ld check big.ko: status {check.returncode}: {check.stdout.strip().splitlines()[-1]}")
        for line in check.stderr.splitlines():
            if line.startswith("klp-ld: error"):
                print(f"    {line}")
        loading = symbol_loading_ms(obj_dir, kallsyms, opts.runs)
        partial_ms = statistics.median(steps["klp-ld partial"]) * 1e3
        print(f"  symbol loading on a later link (cached): {loading:.1f} ms, "
              f"{100 * loading / partial_ms:.1f}% of the klp-ld partial link ({partial_ms:.0f} ms)")
        if opts.profile:
            profile(obj_dir, klp_opts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def peak_rss_mib(obj_dir: Path, options: list[str], exe: list[str] | None = None) -> float:
    """The largest maximum resident set of the partial and the final link, each in a child process of
    its own (a helper that runs it, so that the children's ru_maxrss is that link's alone)."""
    peaks = []
    for argv in link_commands(options):
        code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([PYTHON, "-c", code, *(exe or [str(WRAPPER)]), *argv], cwd=obj_dir,
                             env=klp_env(), capture_output=True, text=True, check=True)
        peaks.append(int(out.stdout) / 1024)   # ru_maxrss is in KiB on Linux
    return max(peaks)


def symbol_loading_ms(obj_dir: Path, kallsyms: Path, runs: int) -> float:
    """Median time of loading the symbol sources once the per-file cache holds them, in a fresh
    process each time, as every link is."""
    code = ("import sys, time; from klp_ld.sources import load_resolver; t = time.perf_counter(); "
            f"load_resolver([{str(kallsyms)!r}], [{str(HEADERS_61 / 'Module.symvers')!r}], '.'); "
            "print(time.perf_counter() - t)")
    samples = []
    for _ in range(runs + 1):
        env = klp_env({"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        out = subprocess.run([PYTHON, "-c", code], cwd=obj_dir, env=env, capture_output=True, text=True,
                             check=True)
        samples.append(float(out.stdout) * 1e3)
    return statistics.median(samples[1:])


def profile(obj_dir: Path, klp_opts: list[str]) -> None:
    """Both klp-ld links in this process under cProfile (the real ld still runs as a child)."""
    import os

    partial, final = link_commands(klp_opts)
    os.environ["KLP_LD_PYTHON"] = PYTHON
    here = os.getcwd()
    os.chdir(obj_dir)
    try:
        for name, args in (("partial", partial), ("final", final)):
            for module in [m for m in sys.modules if m.startswith(("klp_ld", "elftools", "capstone"))]:
                del sys.modules[module]   # measure the imports too, as a fresh process pays them
            from klp_ld.launch import main as klp_main

            prof = cProfile.Profile()
            started = time.perf_counter()
            status = prof.runcall(klp_main, ["klp-ld", *args])
            wall = time.perf_counter() - started
            stream = io.StringIO()
            stats = pstats.Stats(prof, stream=stream)
            stats.sort_stats("cumulative").print_stats(28)
            print(f"\n## cProfile: klp-ld {name} link (status {status}, {wall * 1e3:.0f} ms in-process)\n")
            print("\n".join(line for line in stream.getvalue().splitlines() if line.strip())[:9000])
    finally:
        os.chdir(here)


if __name__ == "__main__":
    sys.exit(main())
