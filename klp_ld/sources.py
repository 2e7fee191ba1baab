"""The target's symbols and export lists, read from their files: the I/O edge of resolution.

`klp_ld.resolve` holds annotations and references to what is loaded here and reads no file.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from operator import attrgetter

from klp_ld.diag import Diagnostic
from klp_ld.ksyms.cache import load_cached
from klp_ld.ksyms.discover import discover_available
from klp_ld.ksyms.index import SymbolIndex
from klp_ld.ksyms.tables import Export, SourceKind
from klp_ld.names import VMLINUX, module_name_from_file
from klp_ld.resolve import Resolver
from klp_ld.target import ExportPlan, Target, check_kernel_exports, plan_exports


@dataclass(frozen=True, slots=True)
class LoadedExports:
    exports: dict[str, Export]
    lines: tuple[str, ...]
    unknown: str | None


def load_exports(plan: ExportPlan, release: str | None) -> LoadedExports:
    """Read every planned export list; the kernel's must list vmlinux exports to count as one.

    A list the user gave stands in for a missing kernel list only if it lists vmlinux exports;
    a sibling module's list (KBUILD_EXTRA_SYMBOLS) never does.
    """
    exports: dict[str, Export] = {}
    lines: list[str] = []
    unknown = plan.unknown
    for f in plan.files:
        src = load_cached(f.path, SourceKind.SYMVERS)
        # by distinct module path (a few thousand), not by export (25,000 Python-level calls)
        per_module = Counter(map(attrgetter("module"), src.exports))
        in_vmlinux = sum(n for module, n in per_module.items() if module_name_from_file(module) == VMLINUX)
        if f.role == "kernel":
            check_kernel_exports(f.path, in_vmlinux, release)
        elif f.role == "given" and in_vmlinux:
            unknown = None
        for e in src.exports:
            exports.setdefault(e.name, e)
        lines.append(f"exports: {f.path} [{f.role}]: {len(src.exports)} symbols, {in_vmlinux} from vmlinux")
    return LoadedExports(exports, tuple(lines), unknown)


def find_resolver(symbol_paths: list[str], symvers: list[str], target: Target, cwd: str,
                  environ: Mapping[str, str], objnames: set[str], *,
                  discover_sources: bool = True) -> tuple[Resolver | None, list[Diagnostic]]:
    """The symbols to hold this link to, and what could not be found.

    With a kernel headers directory in sight, sources are looked up for its release only
    (explicit ones first); without one, or with discovery off, only the explicit sources count.
    An object without any source is a warning that says where klp-ld looked: its positions go
    unchecked, the build goes on. Exports come only from `plan_exports`, never from a guess.
    """
    loaded = load_exports(plan_exports(target, symvers, cwd, environ), target.release)
    explicit = [os.path.join(cwd, p) for p in symbol_paths]
    problems: list[Diagnostic] = []
    if not discover_sources or target.headers_dir is None:
        if not explicit:
            return None, []
        sources = [load_cached(p) for p in explicit]
        index = SymbolIndex.from_sources(sources)
        described = [f"{s.path} ({s.kind.value})" for s in sources]
    else:
        # vmlinux is always looked for, to resolve unannotated references; missing, it is worth a
        # warning only when an annotation names it.
        found, no_source, problems = discover_available(target.headers_dir, sorted(objnames | {VMLINUX}),
                                                        explicit)
        problems += [Diagnostic("warning", d.message + "; positions for it are not checked", d.obj,
                                d.section, d.offset, d.symbol, d.code, d.notes)
                     for objname, d in sorted(no_source.items()) if objname in objnames]
        if not found.found:
            return None, problems
        index = found.index()
        described = found.report()
    index = replace(index, exports={**index.exports, **loaded.exports})
    return Resolver(index, (*described, *loaded.lines), loaded.unknown), problems


def load_resolver(symbol_paths: list[str], symvers: list[str], cwd: str) -> Resolver | None:
    """The symbols `klp-ld check` holds a module to: only what the user names.

    A Module.symvers lying in the working directory is not taken for the kernel's: it is as
    likely the module's own.
    """
    if not symbol_paths and not symvers:
        return None
    paths = [os.path.join(cwd, p) for p in symbol_paths]
    loaded = [load_cached(p) for p in paths]
    described = [f"{s.path} ({s.kind.value})" for s in loaded]
    exports = load_exports(plan_exports(Target(None, None, "nothing"), symvers, cwd, {}), None)
    index = SymbolIndex.from_sources(loaded)
    index = replace(index, exports={**index.exports, **exports.exports})
    return Resolver(index, (*described, *exports.lines), exports.unknown)
