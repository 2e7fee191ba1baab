"""Throughput of klp_ld.arch.x86_64_text.check_text_sites on a generated object with ~10k text sites.

Run on demand (pytest does not collect it):  python benchmarks/bench_sites.py [--sites N] [--runs R]

The assembly is generated here and built with gcc: functions of kernel-like code, each mixing the
relocated instruction forms a kernel object uses with unrelocated filler, so the sweep has real work to do.
pyelftools reads the object once, outside the timing; what is timed is one call of the public API over
all sites (sweep + detail decode + checks), median of several runs after a warm-up that imports capstone.
The target is >= 20k sites/s.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from klp_ld.arch.sites import RelocSite  # noqa: E402
from klp_ld.arch.x86_64_text import check_text_sites  # noqa: E402

# (assembly, relocations it carries)
RELOCATED = [
    ("call ext_func{n}", 1),
    ("jmp __x86_return_thunk", 1),
    ("jne ext_func{n}", 1),
    ("mov var{n}(%rip), %rax", 1),
    ("mov %rdx, var{n}(%rip)", 1),
    ("lea var{n}(%rip), %rdi", 1),
    ("cmpl $5, var{n}(%rip)", 1),
    ("movl $0x12345678, var{n}(%rip)", 1),
    ("movq $fn{n}, var{n}(%rip)", 2),
    ("mov %ax, var{n}(%rip)", 1),
    ("mov $sym{n}, %rdi", 1),
    ("movabs $sym{n}, %rax", 1),
    ("mov sym{n}(,%rdi,8), %rax", 1),
    ("incq %gs:var{n}(%rip)", 1),
    ("mov %gs:sym{n}, %rdx", 1),
    ("call *fp{n}(%rip)", 1),
    ("lock incl var{n}(%rip)", 1),
]
FILLER = [
    "add $1, %rax",
    "mov 8(%rbx), %rcx",
    "test %rcx, %rcx",
    "lea (%rdi,%rdi,2), %eax",
    "push %rbx",
    "pop %rbx",
    "movzbl 0x10(%rsi), %edx",
    "xor %eax, %eax",
    "imul $1000, %ecx, %ecx",
    "cmp %rsi, %rdi",
    "shl $3, %rdx",
    "vmovdqu (%rsi), %ymm0",
]


def generate(n_sites: int, per_func: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    lines = ["\t.text"]
    sites = 0
    func = 0
    while sites < n_sites:
        name = f"bench_fn{func}"
        lines += ["\t.p2align 4", f"\t.globl {name}", f"\t.type {name}, @function", f"{name}:"]
        lines += ["\tendbr64", "\tcall __fentry__"]
        sites += 1
        in_func = 1
        while in_func < per_func and sites < n_sites:
            for _ in range(rng.randint(1, 4)):
                lines.append("\t" + rng.choice(FILLER))
            asm, count = rng.choice(RELOCATED)
            lines.append("\t" + asm.format(n=rng.randint(0, 99)))
            sites += count
            in_func += count
        lines += ["\tjmp __x86_return_thunk", "\tint3", f"\t.size {name}, .-{name}"]
        sites += 1
        func += 1
    return "\n".join(lines) + "\n"


def build(asm: str, workdir: Path) -> tuple[bytes, list[tuple[int, int]], list[RelocSite]]:
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("bench_sites: gcc is needed to assemble the generated code")
    src = workdir / "bench.s"
    obj = workdir / "bench.o"
    src.write_text(asm)
    subprocess.run([gcc, "-c", str(src), "-o", str(obj)], check=True)

    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    with obj.open("rb") as fh:
        elf = ELFFile(fh)
        text = elf.get_section_by_name(".text")
        symtab = elf.get_section_by_name(".symtab")
        rela = elf.get_section_by_name(".rela.text")
        assert text is not None
        assert isinstance(symtab, SymbolTableSection) and isinstance(rela, RelocationSection)
        code = text.data()
        symbols = list(symtab.iter_symbols())
        text_index = elf.get_section_index(".text")
        funcs = [
            (s["st_value"], s["st_size"])
            for s in symbols
            if s["st_info"]["type"] == "STT_FUNC" and s["st_shndx"] == text_index
        ]
        sites = [
            RelocSite(
                r["r_offset"],
                r["r_info_type"],
                r["r_addend"],
                symbols[r["r_info_sym"]].name,
                symbols[r["r_info_sym"]]["st_info"]["type"] == "STT_SECTION",
            )
            for r in rela.iter_relocations()
        ]
    return code, funcs, sites


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10_000, help="text sites to generate (default 10000)")
    parser.add_argument("--per-func", type=int, default=12, help="sites per function (default 12)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs; the median is reported (default 5)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_sites.") as tmp:
        code, funcs, sites = build(generate(args.sites, args.per_func), Path(tmp))

    warm = check_text_sites(code, ".text", funcs, sites)  # imports capstone
    bad = [c.problem for c in warm if not c.ok]
    if bad:
        sys.exit(f"bench_sites: {len(bad)} generated sites fail, first: {bad[0]}")

    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        check_text_sites(code, ".text", funcs, sites)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(
        f"{len(sites)} sites in {len(funcs)} functions, {len(code) / 1024:.0f} KiB of text: "
        f"median {median * 1000:.1f} ms of {args.runs} runs (min {min(times) * 1000:.1f} ms) "
        f"= {len(sites) / median:,.0f} sites/s"
    )


if __name__ == "__main__":
    main()
