"""The target kernel's symbols, per object, answering questions the way its loader would.

A klp relocation names its target as (object, name, position), and the kernel resolves it by
counting same-named symbols of one object in an order of its own (klp_find_object_symbol): vmlinux
symbols in address order, module symbols in `.symtab` order. A patch built against any other
order loads and silently binds the wrong function, or is refused at load with a message that no
longer names the line that caused it. The parsers already give each table in the kernel's
counting order; this module picks one table per object, counts as `klp_find_object_symbol`
does, and hands every refusal to `klp_ld.ksyms.messages` for wording that says what to write.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from klp_ld.ksyms import messages
from klp_ld.ksyms.resolution import Candidate, Resolution, Resolved, SymbolProblem
from klp_ld.ksyms.tables import Export, ObjectTable, SourceKind, SymbolSource

# Defined by every .ko (the .mod.o), never a patch target.
MODULE_BOILERPLATE = frozenset({"__this_module", "init_module", "cleanup_module"})

# Which source wins for an object when several cover it; the others become cross-checks.
_AUTHORITY = {SourceKind.VMLINUX: 0, SourceKind.KALLSYMS: 0, SourceKind.MODULE: 0,
              SourceKind.SYSTEM_MAP: 1, SourceKind.SYMBOLS_LIST: 2, SourceKind.SYMVERS: 3}


@dataclass(frozen=True, slots=True)
class Lookup:
    """Where an unannotated name is defined, per object, for automatic resolution."""

    name: str
    definitions: tuple[tuple[str, tuple[Candidate, ...]], ...] = ()
    export: Export | None = None
    skipped: str | None = None

    @property
    def objects(self) -> tuple[str, ...]:
        return tuple(obj for obj, _ in self.definitions)

    def unique(self) -> tuple[str, int] | None:
        """(objname, 0) when exactly one object defines the name exactly once on every load path."""
        if self.skipped is not None or len(self.definitions) != 1:
            return None
        objname, cands = self.definitions[0]
        if _unique_everywhere(cands):
            return objname, 0
        return None

    def problem(self) -> SymbolProblem | None:
        """The ambiguity, with every candidate and the annotations that would settle it."""
        if (self.skipped is not None or self.export is not None or not self.definitions
                or self.unique() is not None):
            return None
        return messages.unannotated_ambiguous(self.name, self.definitions)


def _unique_everywhere(cands: Sequence[Candidate]) -> bool:
    core = [c for c in cands if c.position is not None]
    full = [c for c in cands if c.full_position is not None]
    return len(core) == 1 and len(full) <= 1 and (not full or full[0] is core[0])


@dataclass(frozen=True, slots=True)
class SymbolIndex:
    """Per-object symbol tables plus exports, answering questions in the kernel's counting order.

    Each object has one primary table (the most authoritative source that covers it; ties go to
    the first given) and any number of cross-check tables, whose counts must agree with it.
    """

    tables: Mapping[str, ObjectTable] = field(default_factory=dict)
    cross_checks: Mapping[str, tuple[ObjectTable, ...]] = field(default_factory=dict)
    exports: Mapping[str, Export] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # (objname, name) -> candidates: a large patch asks for the same names many times over
    _candidates: dict[tuple[str, str], tuple[Candidate, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_sources(cls, sources: Iterable[SymbolSource],
                     cross_check_only: Iterable[tuple[str, str]] = ()) -> SymbolIndex:
        """Build from parsed sources; `cross_check_only` lists (path, objname) never to use as primary."""
        srcs = list(sources)
        demoted = set(cross_check_only)
        by_obj: dict[str, list[ObjectTable]] = {}
        for src in srcs:
            for t in src.tables:
                by_obj.setdefault(t.objname, []).append(t)
        tables: dict[str, ObjectTable] = {}
        checks: dict[str, tuple[ObjectTable, ...]] = {}
        for obj, cands in by_obj.items():
            eligible = [t for t in cands if (t.source, obj) not in demoted] or cands
            primary = min(eligible, key=lambda t: _AUTHORITY[t.kind])
            tables[obj] = primary
            checks[obj] = tuple(t for t in cands
                                if t is not primary and t.kind is not SourceKind.SYMBOLS_LIST)
        exports: dict[str, Export] = {}
        for src in sorted(srcs, key=lambda s: s.kind is not SourceKind.SYMVERS):
            for exp in src.exports:
                exports.setdefault(exp.name, exp)
        notes = tuple(dict.fromkeys(n for s in srcs for n in s.notes))
        return cls(tables, checks, exports, notes)

    def objects(self) -> tuple[str, ...]:
        return tuple(self.tables)

    def prefetch(self, names: frozenset[str]) -> None:
        """Make the lookups of `names` cheap: one pass over each table instead of one per name."""
        for table in (*self.tables.values(), *(t for ts in self.cross_checks.values() for t in ts)):
            table.prefetch(names)

    def table(self, objname: str) -> ObjectTable | None:
        return self.tables.get(objname)

    def export(self, name: str) -> Export | None:
        return self.exports.get(name)

    def candidates(self, objname: str, name: str) -> tuple[Candidate, ...]:
        """Every symbol the kernel would count for (objname, name), in its counting order."""
        table = self.tables.get(objname)
        return self._candidates_in(table, name) if table is not None else ()

    def _candidates_in(self, table: ObjectTable, name: str) -> tuple[Candidate, ...]:
        key = (table.objname, name)
        found = self._candidates.get(key)
        if found is None:
            found = self._candidates[key] = _candidates(table, name)
        return found

    def resolve(self, objname: str, name: str, sympos: int) -> Resolution:
        """What the loader will bind for `.klp.sym.<objname>.<name>,<sympos>`, or why it won't."""
        table = self.tables.get(objname)
        if table is None:
            return messages.object_not_found(objname, name, sympos, sorted(self.tables))
        cands = self._candidates_in(table, name)
        if not cands:
            elsewhere = [(obj, n) for obj, other in self.tables.items()
                         if obj != table.objname and (n := len(other.indices(name)))]
            return messages.symbol_not_found(table, name, sympos, elsewhere)
        if table.is_module:
            outcome = _resolve_module(table, cands, name, sympos)
        else:
            outcome = _resolve_single(objname, cands, name, sympos, table)
        if isinstance(outcome, SymbolProblem):
            return outcome
        disagreement = self._cross_check(table, cands, name, sympos)
        if disagreement is not None:
            return disagreement
        chosen = outcome.candidate
        if (chosen.address == 0 and chosen.section is None and table.values is not None
                and any(table.values)):
            return messages.zero_address(objname, name, sympos, cands)
        return Resolved(chosen, sympos, messages.order_notes(table))

    def lookup_unannotated(self, name: str, own: Collection[str] = ()) -> Lookup:
        """Which objects define `name`, for a reference the author did not annotate.

        The names every module defines for itself, and whatever the patch module defines (`own`),
        are never looked up: resolving `__this_module` into a target would bind the patch to
        another module's structure.
        """
        if name in MODULE_BOILERPLATE:
            return Lookup(name, skipped=f"{name} is defined by every module for itself")
        if name in own:
            return Lookup(name, skipped=f"{name} is defined by the patch module itself")
        defs = tuple((obj, cands) for obj, table in self.tables.items()
                     if (cands := self._candidates_in(table, name)))
        return Lookup(name, defs, self.exports.get(name))

    def _cross_check(self, table: ObjectTable, cands: Sequence[Candidate], name: str,
                     sympos: int) -> SymbolProblem | None:
        ours = len([c for c in cands if c.position is not None])
        for other in self.cross_checks.get(table.objname, ()):
            theirs = len([i for i in other.indices(name) if other.core is None or other.core[i]])
            if theirs != ours:
                return messages.sources_disagree(table, other, cands, name, sympos, ours, theirs)
        return None


def _candidates(table: ObjectTable, name: str) -> tuple[Candidate, ...]:
    idx = table.indices(name)
    if not idx:
        return ()
    out: list[Candidate] = []
    if not table.is_module or table.core is None:
        for pos, i in enumerate(idx, 1):
            full = pos if (not table.is_module or table.full_known) else None
            out.append(Candidate(table.objname, name, pos, full,
                                 table.values[i] if table.values is not None else None,
                                 table.types[i], table.source,
                                 table.sections[i] if table.sections is not None else None,
                                 file=table.files[i] or None if table.files is not None else None))
        return tuple(out)
    core_pos = 0
    for full_pos, i in enumerate(idx, 1):
        is_core = bool(table.core[i])
        if is_core:
            core_pos += 1
        out.append(Candidate(table.objname, name, core_pos if is_core else None, full_pos,
                             table.values[i] if table.values is not None else None, table.types[i],
                             table.source, table.sections[i] if table.sections is not None else None,
                             is_core, table.files[i] or None if table.files is not None else None))
    return tuple(out)


def _pick(cands: Sequence[Candidate], sympos: int) -> Candidate | str:
    """klp_find_object_symbol over one list: the candidate, or 'missing', 'ambiguous' or 'range'."""
    if not cands:
        return "missing"
    if sympos == 0:
        return cands[0] if len(cands) == 1 else "ambiguous"
    return cands[sympos - 1] if sympos <= len(cands) else "range"


def _resolve_single(objname: str, cands: Sequence[Candidate], name: str, sympos: int,
                    table: ObjectTable) -> Resolution:
    got = _pick(cands, sympos)
    if isinstance(got, Candidate):
        return Resolved(got, sympos)
    return messages.pick_problem(got, objname, cands, name, sympos, table, len(cands))


def _resolve_module(table: ObjectTable, cands: Sequence[Candidate], name: str,
                    sympos: int) -> Resolution:
    """Both load orders must bind the same symbol, or the patch works in only one of them.

    Already loaded, the kernel counts core symbols; loading after the patch, it counts the whole
    `.symtab` (klp_module_coming runs before do_init_module). A name with a copy in `.init*` or a
    non-allocated section can therefore mean two different symbols.
    """
    objname = table.objname
    core = [c for c in cands if c.position is not None]
    loaded = _pick(core, sympos)
    if not table.full_known:
        if isinstance(loaded, Candidate):
            return Resolved(loaded, sympos)
        return messages.pick_problem(loaded, objname, core, name, sympos, table, len(core))
    late = _pick(cands, sympos)
    if isinstance(loaded, Candidate) and isinstance(late, Candidate) and loaded is late:
        return Resolved(loaded, sympos)
    if not isinstance(loaded, Candidate) and loaded == late:
        return messages.pick_problem(loaded, objname, cands, name, sympos, table, len(core), len(cands))
    return messages.module_paths_differ(table, cands, name, sympos, loaded, late)
