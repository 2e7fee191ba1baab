"""Hold every annotation to the target's symbol table, and resolve what the author left unsaid.

The kernel counts positions its own way (klp_find_object_symbol); a position that does not exist, or
position 0 for a name with copies, loads as a cryptic refusal or binds the wrong function. With
symbol sources at hand, klp-ld answers those questions at build time instead, and it resolves
unannotated references to names that are unique in exactly one object, while exports and the
module's own symbols stay ordinary references (modpost and `__versions` keep handling them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from klp_ld.annotations import Harvest
from klp_ld.arch import arch_of
from klp_ld.diag import Diagnostic, error, warning
from klp_ld.elf.consts import STB_WEAK
from klp_ld.elf.model import ElfObject
from klp_ld.ksyms.index import SymbolIndex
from klp_ld.ksyms.resolution import Resolved, SymbolProblem
from klp_ld.names import VMLINUX, Identity, parse_identity
from klp_ld.target import unknown_exports_error


@dataclass(frozen=True, slots=True)
class Resolver:
    """The target's symbols and exports, loaded once per invocation.

    `exports_unknown` says why the kernel's export list is not at hand; while it is set, no
    reference may be decided "not exported".
    """

    index: SymbolIndex
    sources: tuple[str, ...]
    exports_unknown: str | None
    # identity -> what the loader binds, and `2 of 5 in vmlinux` for decision lines: the objects
    # of one module name the same identities again and again
    _resolved: dict[Identity, tuple[Resolved | SymbolProblem, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def resolve(self, identity: Identity) -> tuple[Resolved | SymbolProblem, str]:
        known = self._resolved.get(identity)
        if known is None:
            outcome = self.index.resolve(identity.sym_obj, identity.name, identity.sympos)
            count = len(self.index.candidates(identity.sym_obj, identity.name))
            obj, pos = identity.sym_obj, identity.sympos or 1
            text = f"{pos} of {count} in {obj}" if count != 1 else f"unique in {obj}"
            known = self._resolved[identity] = (outcome, text)
        return known


def check_annotations(found: Harvest, resolver: Resolver) -> tuple[dict[str, str], list[Diagnostic]]:
    """Each annotation against the kernel's count; returns reason texts per symbol and problems."""
    reasons: dict[str, str] = {}
    problems: list[Diagnostic] = []
    for ann in found.annotations:
        ident = ann.identity
        if ann.decided:
            continue  # a partial link's output: held to the symbols when it was named
        if ident.sym_obj not in resolver.index.tables:
            continue  # no source covers that object; nothing to hold it to
        outcome, position = resolver.resolve(ident)
        offset = None if ann.section == ".symtab" else ann.offset
        if isinstance(outcome, SymbolProblem):
            diag = outcome.diagnostic(obj=found.obj, section=ann.section, offset=offset)
            problems.append(_with_symbol(diag, ann.symbol))
            continue
        reasons[ann.symbol] = position
        problems.extend(warning(note, code="sympos-note", symbol=ann.symbol, obj=found.obj,
                                section=ann.section, offset=offset) for note in _caveats(outcome))
    return reasons, problems


def _caveats(outcome: Resolved) -> tuple[str, ...]:
    return tuple(n for n in outcome.notes if "could not be checked" in n)


def _with_symbol(diag: Diagnostic, symbol: str) -> Diagnostic:
    return Diagnostic(diag.severity, diag.message, diag.obj, diag.section, diag.offset, symbol, diag.code,
                      diag.notes)


def resolve_unannotated(obj: ElfObject, found: Harvest, own: set[str],
                        resolver: Resolver) -> tuple[dict[str, tuple[Identity, str]], list[Diagnostic]]:
    """Unannotated undefined references of `obj`: unique non-exported names become identities."""
    wanted: dict[str, tuple[Identity, str]] = {}
    problems: list[Diagnostic] = []
    undecided: list[str] = []
    annotated = {a.symbol for a in found.annotations}
    linker_defined = arch_of(obj).linker_defined
    for sym in obj.symbols[1:]:
        name = sym.name
        if (not sym.is_undefined or not name or sym.bind == STB_WEAK or name in annotated
                or parse_identity(name) is not None or name.startswith(".klp.")
                or (linker_defined and name.startswith(linker_defined))):
            continue
        lookup = resolver.index.lookup_unannotated(name, own)
        if lookup.skipped is not None or lookup.export is not None:
            continue
        if resolver.exports_unknown is not None:
            if lookup.definitions:  # the kernel has it; only the export list could say how to reach it
                undecided.append(name)
            continue
        unique = lookup.unique()
        if unique is not None:
            objname = unique[0]
            wanted[name] = (Identity(objname, objname, name, 0),
                            f"not exported; unique in {objname}")
            continue
        problem = lookup.problem()
        if problem is not None:
            problems.append(_with_symbol(problem.diagnostic(obj=found.obj), name))
        elif not lookup.definitions:
            problems.append(error(f"{name} is not exported, not annotated, and no symbol source defines it",
                                  code="unresolved", obj=found.obj, symbol=name,
                                  notes=(f"symbol sources: {', '.join(resolver.sources)}",)))
    if undecided:
        problems.append(unknown_exports_error(resolver.exports_unknown or "", undecided, found.obj))
    return wanted, problems


def check_own_globals(obj: ElfObject, display: str, resolver: Resolver) -> list[Diagnostic]:
    """A patch global named like a vmlinux export captures the module's own calls to it
    (kpatch PR #661: the module's init then ran the replacement before it was relocated)."""
    out = []
    for sym in obj.symbols[1:]:
        if sym.is_undefined or sym.is_local or sym.section is None or not sym.name:
            continue
        export = resolver.index.export(sym.name)
        if export is not None and export.objname == VMLINUX:
            out.append(error(f"{display} defines global {sym.name}, also exported by vmlinux: the "
                             "module's own references would bind to it; make it static or rename it",
                             code="global-shadows-export", obj=display, symbol=sym.name))
    return out
