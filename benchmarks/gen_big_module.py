"""Generate a large livepatch module for P3/P4: N objects x M annotated references to real 6.1 symbols.

Each object `oNNN.c` references M distinct non-exported vmlinux functions taken from the 6.1 kallsyms
dump: the first half from its text (`lea sym(%rip)`: R_X86_64_PC32 sites), the second half as data
pointers (R_X86_64_64), every one annotated with KLP_SYMPOS at a valid position (0 for a unique name,
1..count for a duplicated one). Each object also has unannotated references: calls to the exported
`_printk` (which stay ordinary) and to two unique non-exported functions (which klp-ld resolves on
its own). `main.c` carries the module boilerplate and MODULE_INFO(livepatch, "Y").

The sources use their own copy of the klp-convert macros (testdata/objects/klp.h), so the same tree
builds with LD=ld for the comparison.
"""

from __future__ import annotations

import collections
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Generated:
    directory: Path
    objects: list[str]         # oNNN.o, in link order
    annotated_sites: int
    unannotated_sites: int


def symbol_pool(kallsyms: Path, symvers: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """(name, count) of duplicated and the names of unique non-exported vmlinux functions."""
    exported = {line.split("\t")[1] for line in symvers.read_text().splitlines() if line.count("\t") >= 3}
    count: collections.Counter[str] = collections.Counter()
    kind: dict[str, str] = {}
    for line in kallsyms.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            count[parts[2]] += 1
            kind[parts[2]] = parts[1]

    def usable(name: str) -> bool:
        return kind[name] in "tT" and bool(IDENT.match(name)) and name not in exported \
            and not name.startswith(("_", "init_", "exit_")) and "init" not in name

    duplicated = sorted((n, c) for n, c in count.items() if c > 1 and usable(n))
    unique = sorted(n for n, c in count.items() if c == 1 and usable(n))
    return duplicated, unique


def _object_source(index: int, refs: list[tuple[str, int]], extra: list[str]) -> str:
    half = len(refs) // 2
    lines = ['#include "klp.h"', "", "extern int _printk(const char *fmt, ...);"]
    lines += [f"extern char {name}[];" for name, _ in refs]
    lines += [f"extern int {name}(void);" for name in extra]
    lines += ["", f"KLP_MODULE_RELOC(vmlinux) o{index:03d}_relocs[] = {{"]
    lines += [f"\tKLP_SYMPOS({name}, {pos})," for name, pos in refs]
    lines += ["};", "", f"void *o{index:03d}_ptrs[] = {{"]
    lines += [f"\t{name}," for name, _ in refs[half:]]
    lines += ["};", "", f"unsigned long o{index:03d}_text(unsigned long *out)", "{", "\tunsigned long v;", ""]
    for n, (name, _) in enumerate(refs[:half]):
        lines.append(f'\tasm volatile("lea {name}(%%rip), %0" : "=r"(v)); out[{n}] = v;')
    lines += [f'\t_printk("o{index:03d} %lx\\n", out[0]);']
    lines += [f"\tv += {name}();" for name in extra]
    lines += ["\treturn v;", "}", ""]
    return "\n".join(lines)


MAIN = """#include <linux/module.h>

static int __init bigklp_init(void)
{
	return 0;
}

static void __exit bigklp_exit(void)
{
}

module_init(bigklp_init);
module_exit(bigklp_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
"""


def generate(dest: Path, kallsyms: Path, symvers: Path, objects: int = 100, refs: int = 100,
             module: str = "bigklp", seed: int = 1) -> Generated:
    """Write `objects` sources (and a Kbuild for `module`) into `dest`."""
    duplicated, unique = symbol_pool(kallsyms, symvers)
    rnd = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "testdata" / "objects" / "klp.h", dest / "klp.h")
    names = []
    unannotated = 0
    for index in range(objects):
        dups = rnd.sample(duplicated, min(len(duplicated), refs * 3 // 10))
        chosen = [(n, rnd.randint(1, c)) for n, c in dups]
        taken = {n for n, _ in chosen}
        while len(chosen) < refs:
            name = rnd.choice(unique)
            if name not in taken:
                taken.add(name)
                chosen.append((name, 0))
        rnd.shuffle(chosen)
        extra: list[str] = []
        while len(extra) < 2:
            name = rnd.choice(unique)
            if name not in taken:
                taken.add(name)
                extra.append(name)
        (dest / f"o{index:03d}.c").write_text(_object_source(index, chosen, extra))
        names.append(f"o{index:03d}.o")
        unannotated += 1 + len(extra)
    (dest / "main.c").write_text(MAIN)
    (dest / "Kbuild").write_text(f"obj-m := {module}.o\n{module}-y := main.o {' '.join(names)}\n"
                                 "ccflags-y += -I$(src)\n")
    return Generated(dest, names, objects * refs, unannotated)
