"""What a symbol source says, as parsed: the tables every parser returns and the cache stores.

Plain values only (strings, ints, tuples, bytes), so that a cached parse decodes without running
anything and compares equal to a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from klp_ld.names import VMLINUX, module_name_from_file


class SourceKind(str, Enum):
    """What a symbol source is; decides how its positions were counted and how far to trust them."""

    KALLSYMS = "kallsyms"
    SYSTEM_MAP = "System.map"
    SYMBOLS_LIST = "Symbols.list"
    VMLINUX = "vmlinux"
    MODULE = "module"
    SYMVERS = "Module.symvers"


# Lookups of one table answered by scanning before it builds a name index (ObjectTable.indices).
_SCANNED_LOOKUPS = 16


@dataclass(frozen=True, slots=True)
class ObjectTable:
    """The symbols of one object as one source lists them, already in the kernel's counting order.

    Columns instead of one record per symbol: a vmlinux has ~100k symbols, and tuples of plain
    values load from the cache in a few milliseconds where 100k objects would not.
    `values` are addresses, or section offsets when `sections` is set (a `.ko`); `core` marks
    the symbols a loaded module keeps (None: all of them); `full_known` is False when the source
    only saw a loaded module (kallsyms), so the count the kernel uses while the module is still
    loading cannot be checked. `files` is the source file (the preceding STT_FILE symbol) of
    each local symbol where an ELF symbol table tells it: the one thing that tells five static
    `state_show` apart for a human.
    """

    objname: str
    source: str
    kind: SourceKind
    names: tuple[str, ...]
    types: str
    values: tuple[int, ...] | None = None
    sections: tuple[str, ...] | None = None
    core: bytes | None = None
    full_known: bool = True
    order: str = "address order"
    files: tuple[str, ...] | None = None
    # name -> rows, for the names asked for up front (prefetch) or, once more than
    # _SCANNED_LOOKUPS lookups were scans, for every name (`_complete`)
    _index: dict[str, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _complete: bool = field(default=False, init=False, repr=False, compare=False)
    _prefetched: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    _lookups: int = field(default=0, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_module(self) -> bool:
        return self.objname != VMLINUX

    def indices(self, name: str) -> list[int]:
        """Row indices of `name`, in counting order.

        A scan (tuple.count/index, in C) costs about 1 ms on a 100k-symbol vmlinux: right for the
        few lookups of a small patch, ruinous for a module with thousands of annotations (10,000
        lookups took 20 s). So names asked for up front (`prefetch`) are answered from one pass,
        the first few others scan, and the next builds a name -> rows index of the whole table
        (about 20 ms and 10 MB for 100k names).
        """
        rows = self._index.get(name)
        if rows is not None:
            return list(rows)
        if self._complete or name in self._prefetched:
            return []
        if self._lookups < _SCANNED_LOOKUPS:
            object.__setattr__(self, "_lookups", self._lookups + 1)
            count = self.names.count(name)
            found: list[int] = []
            start = 0
            for _ in range(count):
                start = self.names.index(name, start)
                found.append(start)
                start += 1
            return found
        every: dict[str, list[int]] = {}
        for i, n in enumerate(self.names):
            every.setdefault(n, []).append(i)
        self._index.update((n, tuple(r)) for n, r in every.items())
        object.__setattr__(self, "_complete", True)
        return list(self._index.get(name, ()))

    def prefetch(self, names: frozenset[str]) -> None:
        """Answer every later lookup of `names` from one pass over the table.

        Only the names found are stored; the set itself, shared by every table of a source,
        answers for the others."""
        if self._complete or names <= self._prefetched:
            return
        rows: dict[str, list[int]] = {}
        for i, n in enumerate(self.names):
            if n in names:
                rows.setdefault(n, []).append(i)
        self._index.update((n, tuple(r)) for n, r in rows.items())
        object.__setattr__(self, "_prefetched", names if not self._prefetched else self._prefetched | names)


class Export(NamedTuple):
    """One exported symbol: such references stay normal relocations, resolved and CRC-checked.

    A named tuple: a cached Module.symvers makes some 25,000 of these per link, at a third of a
    frozen dataclass's cost each.
    """

    name: str
    crc: int | None
    module: str
    export_type: str = ""
    namespace: str = ""

    @property
    def objname(self) -> str:
        """`drivers/net/dummy` in Module.symvers is the kernel's module `dummy`."""
        return module_name_from_file(self.module)


@dataclass(frozen=True, slots=True)
class SymbolSource:
    """Everything one file says: per-object tables, exports, and caveats about its positions."""

    path: str
    kind: SourceKind
    tables: tuple[ObjectTable, ...] = ()
    exports: tuple[Export, ...] = ()
    notes: tuple[str, ...] = ()
    release: str | None = None

    def objects(self) -> tuple[str, ...]:
        return tuple(t.objname for t in self.tables)

    def table(self, objname: str) -> ObjectTable | None:
        for t in self.tables:
            if t.objname == objname:
                return t
        return None

