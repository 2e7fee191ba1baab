"""The wording of every symbol problem: what is wrong, what the kernel would say, what to write.

Kept apart from the counting in `klp_ld.ksyms.index` so that the rules read as rules; each
function here takes what the index found and returns the finished `SymbolProblem`. The texts are
final user wording, checked word for word by the tests.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from klp_ld.ksyms.resolution import Candidate, SymbolProblem
from klp_ld.ksyms.tables import ObjectTable, SourceKind
from klp_ld.names import VMLINUX

_SUFFIXED = re.compile(r"\.(?:isra|constprop|part|cold|llvm|lto_priv)\b|\.\d+$")


def copies(n: int) -> str:
    return f"{n} cop{'y' if n == 1 else 'ies'}"


def kernel_objname(objname: str) -> str:
    """How the loader prints the object in its messages: vmlinux is a NULL objname there."""
    return "(null)" if objname == VMLINUX else objname


def or_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def near_misses(name: str, names: Sequence[str]) -> list[str]:
    """Close spellings, first among names sharing the part before the first '.' (uncond.48011)."""
    stem = name.split(".", 1)[0]
    if stem:
        family = sorted({n for n in names if n.startswith(stem) and n != name})
        if family and len(family) <= 2000:
            close = difflib.get_close_matches(name, family, n=3, cutoff=0.6)
            if close:
                return close
    return difflib.get_close_matches(name, sorted(set(names)), n=3, cutoff=0.8)


def count_text(cands: Sequence[Candidate]) -> str:
    """`3 copies`, or for a module whose load orders see different counts, both counts."""
    core = sum(1 for c in cands if c.position is not None)
    if core == len(cands) or cands[0].objname == VMLINUX:
        return copies(len(cands))
    return f"{copies(core)}; {len(cands)} while {cands[0].objname} is still loading"


def order_notes(table: ObjectTable) -> tuple[str, ...]:
    """Caveats about how far positions counted from `table` can be trusted."""
    if table.kind is SourceKind.SYMBOLS_LIST:
        return (f"position counted in {table.order} from {table.source}; it is only as good as that "
                "order",)
    if table.kind is SourceKind.KALLSYMS and table.is_module:
        return (f"{table.source} only shows the loaded {table.objname}: the position for "
                f"{table.objname} loading after the patch could not be checked",)
    if table.values is not None and not any(table.values) and not table.is_module:
        return (f"{table.source} hides addresses; position counted in line order",)
    return ()


def object_not_found(objname: str, name: str, sympos: int, known: Sequence[str]) -> SymbolProblem:
    """No source covers `objname`; `known` are the objects that have symbols, sorted."""
    close = difflib.get_close_matches(objname, known, n=3, cutoff=0.75)
    message = f"no symbols for object {objname}: no symbol source covers it"
    if close:
        message += f"; did you mean {or_list(close)}?"
    shown = ", ".join(known[:8]) + (f" and {len(known) - 8} more" if len(known) > 8 else "")
    notes = (f"objects with symbols: {shown}",) if known else ()
    return SymbolProblem("object-not-found", objname, name, sympos, message, notes,
                         suggestions=tuple(close))


def symbol_not_found(table: ObjectTable, name: str, sympos: int,
                     elsewhere: Sequence[tuple[str, int]]) -> SymbolProblem:
    """`name` is not in `table`; `elsewhere` is (object, copies) for every other object defining it."""
    close = near_misses(name, table.names)
    message = f"{name} is not a symbol of {table.objname}"
    if close:
        message += f"; did you mean {or_list(close)}?"
    notes = [f"{name} is defined in {obj} ({copies(n)})" for obj, n in elsewhere]
    if _SUFFIXED.search(name):
        notes.append("compiler-made suffixes (.isra.N, .constprop.N, .part.N, .cold, numbered "
                     "static locals) differ between builds: take the name from the target "
                     "kernel's symbols, not from a rebuilt object")
    notes.append(f"symbols of {table.objname} from {table.source}")
    return SymbolProblem("symbol-not-found", table.objname, name, sympos, message, tuple(notes),
                         suggestions=tuple(close))


def sources_disagree(table: ObjectTable, other: ObjectTable, cands: Sequence[Candidate], name: str,
                     sympos: int, ours: int, theirs: int) -> SymbolProblem:
    """`table` and its cross-check `other` count `ours` and `theirs` copies of `name`."""
    what = "core copies" if table.is_module and table.full_known else "copies"
    return SymbolProblem(
        "sources-disagree", table.objname, name, sympos,
        f"symbol sources disagree about {name} in {table.objname}: {table.source} has "
        f"{ours} {what}, {other.source} has {theirs}; positions cannot be trusted",
        (f"{table.source}: {len(table)} symbols, {table.order}",
         f"{other.source}: {len(other)} symbols, {other.order}",
         "is the installed file the one the running kernel loaded?"),
        tuple(cands))


def zero_address(objname: str, name: str, sympos: int, cands: Sequence[Candidate]) -> SymbolProblem:
    """The chosen symbol is at address 0, which the loader takes for 'not found'."""
    return SymbolProblem(
        "zero-address", objname, name, sympos,
        f"{name} in {objname} is at address 0 (a per-CPU offset); the kernel treats address 0 "
        f"as 'not found' and will refuse the patch",
        (f"at load the kernel would say: symbol '{name}' not found in symbol table",),
        tuple(cands))


def pick_problem(kind: str, objname: str, cands: Sequence[Candidate], name: str, sympos: int,
                 table: ObjectTable, count: int, loading_count: int | None = None) -> SymbolProblem:
    """The kernel's two refusals, worded with what to write instead.

    `kind` is 'ambiguous' (position 0 with copies) or anything else for a position that does not
    exist. `count` is what the kernel counts (for a module: once loaded); `loading_count` is the
    count while a module is still loading, when it differs.
    """
    lines = tuple(c.sympos_line() for c in cands)
    order = f"positions counted in {table.order} from {table.source}"
    shown = copies(count)
    both_paths = loading_count is not None and loading_count != count
    loading = ""
    if both_paths:
        shown += f"; {loading_count} while {objname} is still loading"
        loading = f" ({loading_count} while it is still loading)"
    if kind == "ambiguous":
        if both_paths:
            valid = [c for c in cands if c.position is not None and c.position == c.full_position]
            fix = ("positions valid in both load orders: " + ", ".join(str(c.position) for c in valid)
                   if valid else "no position selects the same copy in both load orders")
        else:
            fix = f"give KLP_SYMPOS({name}, 1..{count})"
        return SymbolProblem(
            "sympos-ambiguous", objname, name, sympos,
            f"{name} is ambiguous in {objname} ({shown}); position 0 needs a unique name: {fix}",
            (*lines, order, f"at load the kernel would say: unresolvable ambiguity for symbol "
                            f"'{name}' in object '{kernel_objname(objname)}'"),
            tuple(cands), tuple(str(c.position) for c in cands if c.position is not None))
    return SymbolProblem(
        "sympos-not-found", objname, name, sympos,
        f"{name} has {copies(count)} in {objname}{loading}; position {sympos} does not exist",
        (*lines, order, f"at load the kernel would say: symbol position {sympos} for symbol "
                        f"'{name}' in object '{objname}' not found"),
        tuple(cands), tuple(str(c.position) for c in cands if c.position is not None))


def module_paths_differ(table: ObjectTable, cands: Sequence[Candidate], name: str, sympos: int,
                        loaded: Candidate | str, late: Candidate | str) -> SymbolProblem:
    """One position binds different symbols depending on whether the module loads first.

    `loaded` and `late` are what each load order picks: a candidate, or 'missing', 'ambiguous'
    or 'range'.
    """
    objname = table.objname
    core = [c for c in cands if c.position is not None]

    def describe(got: Candidate | str, count: int) -> str:
        if isinstance(got, Candidate):
            return f"selects {got.name} at {got.where()}"
        if got == "ambiguous":
            return f"is ambiguous ({copies(count)})"
        if got == "missing":
            return f"finds no {name}"
        return f"does not exist ({copies(count)})"

    both = [c for c in cands if c.position is not None and c.position == c.full_position]
    if len(core) == 1 and len(cands) == 1:
        fix = "position 0 selects the same symbol in both cases"
    elif both:
        fix = "positions valid for both: " + ", ".join(
            f"KLP_SYMPOS({name}, {c.position}) ({c.where()})" for c in both)
    else:
        fix = f"no position selects the same {name} in both cases"
    message = (f"KLP_SYMPOS({name}, {sympos}) means different symbols in module {objname}: if "
               f"{objname} is already loaded when the patch loads, it {describe(loaded, len(core))} "
               f"(the kernel counts only symbols kept after init); if {objname} loads after the "
               f"patch, it {describe(late, len(cands))} (the kernel also counts init and "
               f"non-allocated sections); {fix}")
    notes = (*(c.sympos_line() for c in cands),
             f"positions counted in {table.order} from {table.source}")
    suggestions = tuple(str(c.position) for c in both)
    return SymbolProblem("sympos-module-paths", objname, name, sympos, message, notes, tuple(cands),
                         suggestions)


def unannotated_ambiguous(name: str,
                          definitions: Sequence[tuple[str, Sequence[Candidate]]]) -> SymbolProblem:
    """An unannotated reference to a name that is not unique: every candidate, and how to settle it."""
    all_cands = tuple(c for _, cands in definitions for c in cands)
    if len(definitions) == 1 and not any(c.position is not None for c in all_cands):
        objname = definitions[0][0]
        sections = sorted({c.section or "?" for c in all_cands})
        message = (f"{name} is defined in {objname} only in {', '.join(sections)}, which the "
                   f"kernel frees or never loads: a patch cannot reach it once {objname} is loaded")
    else:
        where = ", ".join(f"{obj} ({count_text(cands)})" for obj, cands in definitions)
        message = (f"{name} is not exported and not annotated, and it is not unique: {where}; "
                   f"annotate it with KLP_SYMPOS in KLP_MODULE_RELOC(<object>)")
    notes = tuple(f"KLP_MODULE_RELOC({c.objname}): {c.sympos_line()}" for c in all_cands)
    return SymbolProblem("unannotated-ambiguous", definitions[0][0], name, 0, message, notes, all_cands)
