"""Scaling: a livepatch module with thousands of annotations against a 100k-symbol kernel.

benchmarks/bench_p3_big_links.py found each symbol lookup scanning all of kallsyms (about 1 ms
for 94k names), so 10,000 annotations took 20 s at the partial link and 15 s more at the final
one. Lookups must stay cheap however many there are.
"""

from __future__ import annotations

import time

from klp_ld.ksyms.tables import ObjectTable, SourceKind


def test_many_lookups_in_a_large_table_stay_fast() -> None:
    names = tuple(f"sym{i}" for i in range(100_000)) + ("dup",) * 3
    table = ObjectTable("vmlinux", "kallsyms", SourceKind.KALLSYMS, names, "t" * len(names))
    started = time.perf_counter()
    for i in range(0, 100_000, 50):  # 2,000 lookups, as many as a 2,000-annotation patch makes
        assert table.indices(f"sym{i}") == [i]
    assert table.indices("dup") == [100_000, 100_001, 100_002]
    assert table.indices("absent") == []
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"2,000 lookups in a 100k-symbol table took {elapsed:.1f} s"
