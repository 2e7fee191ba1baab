"""Find the symbol sources of the kernel a module is built for, without being told.

The target's headers directory (see `klp_ld.target`) names the release, and positions are only
right when counted against that kernel. So every source found here is for that release, each
records why it was chosen (for `--dry-run` and `--klp-print-sources`), and a source that belongs
to another kernel is an error naming both releases, never a silent fallback. When nothing is
found, the error lists every place looked at and why each did not do.

Where to look comes from `klp_ld.ksyms.system` (the machine, or a test's fake root); every file
is read through `klp_ld.ksyms.cache`, so a `make -j` of many modules parses a 100k-line
System.map once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from klp_ld.diag import Diagnostic, KlpLdError, error, fail
from klp_ld.ksyms.cache import load_cached
from klp_ld.ksyms.index import SymbolIndex
from klp_ld.ksyms.system import (
    builtin_modules,
    installed_modules,
    is_live_kallsyms,
    loaded_modules,
    running_release,
    system_path,
)
from klp_ld.ksyms.tables import SourceKind, SymbolSource
from klp_ld.names import VMLINUX, normalize_objname
from klp_ld.target import kernel_release, release_file

_RELEASE_IN_NAME = re.compile(r"^(?:System\.map|vmlinux|vmlinuz)-(.+)$")
_RELEASE_IN_DIR = re.compile(r"/lib/modules/([^/]+)/")

Role = str  # "primary", "cross-check" or "exports"


@dataclass(frozen=True, slots=True)
class FoundSource:
    """One source in use, the objects it is used for, and why it was picked."""

    path: str
    kind: SourceKind
    objnames: tuple[str, ...]
    role: Role
    reason: str
    source: SymbolSource

    def describe(self) -> str:
        objs = ", ".join(self.objnames) if self.objnames else "exports"
        return f"{objs}: {self.path} [{self.kind.value}, {self.role}]: {self.reason}"


@dataclass(frozen=True, slots=True)
class Discovery:
    """The sources for one target release; `index()` is what symbol resolution uses."""

    release: str | None
    headers_dir: str
    found: tuple[FoundSource, ...]

    def index(self) -> SymbolIndex:
        demoted = [(f.path, obj) for f in self.found if f.role == "cross-check" for obj in f.objnames]
        used: list[SymbolSource] = []
        for f in self.found:
            wanted = set(f.objnames)
            tables = tuple(t for t in f.source.tables if t.objname in wanted)
            if f.role == "exports":
                tables = ()
            used.append(SymbolSource(f.source.path, f.source.kind, tables, f.source.exports,
                                     f.source.notes, f.source.release))
        return SymbolIndex.from_sources(used, demoted)

    def report(self) -> list[str]:
        head = (f"target kernel release {self.release} (from {release_file(self.headers_dir)})"
                if self.release else "target kernel release unknown")
        return [head, *(f.describe() for f in self.found)]


@dataclass(frozen=True, slots=True)
class _Search:
    """What one discovery run found and what it looked at in vain."""

    found: list[FoundSource]
    errors: list[Diagnostic]
    missing: dict[str, Diagnostic] = field(default_factory=dict)  # objname -> its no-source error


def _release_from_path(path: str) -> str | None:
    match = _RELEASE_IN_NAME.match(os.path.basename(path))
    if match:
        return match.group(1)
    match = _RELEASE_IN_DIR.search(path)
    return match.group(1) if match else None


def _check_release(path: str, src: SymbolSource, release: str | None, running: str | None) -> None:
    """A source for another kernel would give positions of another kernel: refuse it, loudly."""
    if release is None:
        return
    if is_live_kallsyms(path):
        if running is not None and running != release:
            raise fail(f"this is the running kernel's symbol table, and the running kernel is "
                       f"{running}, but the headers build for {release}", obj=path)
        return
    theirs = src.release or _release_from_path(path)
    if theirs is not None and theirs != release:
        what = "vermagic" if src.release else "path"
        raise fail(f"belongs to kernel {theirs} (by its {what}), but the headers build for {release}",
                   obj=path)


def _live_kallsyms(use_cache: bool) -> tuple[SymbolSource | None, str]:
    """/proc/kallsyms if it shows real addresses, else why not."""
    path = system_path("/proc/kallsyms")
    if not os.path.exists(path):
        return None, f"{path}: not found"
    try:
        src = load_cached(path, SourceKind.KALLSYMS, use_cache=use_cache)
    except KlpLdError as exc:
        return None, f"{path}: {exc.diagnostics[0].message}"
    vm = src.table(VMLINUX)
    if vm is None or vm.values is None or not any(vm.values):
        return None, (f"{path}: addresses are hidden (run as root, or set kernel.kptr_restrict=0), "
                      "so positions cannot be checked")
    return src, ""


def _try_file(path: str, kind: SourceKind | None, use_cache: bool) -> tuple[SymbolSource | None, str]:
    if not os.path.isfile(path):
        return None, f"{path}: not found"
    try:
        return load_cached(path, kind, use_cache=use_cache), ""
    except KlpLdError as exc:
        return None, f"{path}: {exc.diagnostics[0].message}"


def _vmlinux_source(headers_dir: str, release: str, running: str | None, live: SymbolSource | None,
                    live_why: str, use_cache: bool) -> tuple[FoundSource | None, list[str]]:
    looked: list[str] = []
    kallsyms = system_path("/proc/kallsyms")
    if running != release:
        looked.append(f"{kallsyms}: the running kernel is {running or 'unknown'}, not {release}")
    elif live is None:
        looked.append(live_why)
    else:
        return FoundSource(kallsyms, SourceKind.KALLSYMS, (VMLINUX,), "primary",
                           f"the running kernel is {release} and its addresses are readable",
                           live), looked
    candidates: list[tuple[str, SourceKind | None, str]] = [
        (system_path(f"/boot/System.map-{release}"), SourceKind.SYSTEM_MAP, "the System.map installed for"),
        (system_path(f"/usr/lib/debug/boot/System.map-{release}"), SourceKind.SYSTEM_MAP,
         "the debug package's System.map for"),
        (os.path.join(headers_dir, "vmlinux"), SourceKind.VMLINUX, "the vmlinux in the headers of"),
        (system_path(f"/usr/lib/debug/boot/vmlinux-{release}"), SourceKind.VMLINUX,
         "the debug vmlinux for"),
        (system_path(f"/usr/lib/debug/lib/modules/{release}/vmlinux"), SourceKind.VMLINUX,
         "the debug vmlinux for"),
    ]
    for path, kind, why in candidates:
        src, failure = _try_file(path, kind, use_cache)
        if src is not None:
            return FoundSource(path, src.kind, (VMLINUX,), "primary", f"{why} {release}", src), looked
        looked.append(failure)
    return None, looked


def _search(headers_dir: str, objnames: Sequence[str], explicit: Sequence[str],
            use_cache: bool) -> tuple[str | None, _Search]:
    wanted = list(dict.fromkeys(normalize_objname(o) for o in objnames))
    found: list[FoundSource] = []
    errors: list[Diagnostic] = []
    no_source: dict[str, Diagnostic] = {}
    release_error: KlpLdError | None = None
    try:
        release: str | None = kernel_release(headers_dir)
    except KlpLdError as exc:
        if not explicit:
            raise
        release, release_error = None, exc
    running = running_release()

    covered: set[str] = set()
    for path in explicit:
        src = load_cached(path, use_cache=use_cache)
        _check_release(path, src, release, running)
        objs = src.objects()
        covered.update(objs)
        role = "exports" if src.kind is SourceKind.SYMVERS else "primary"
        found.append(FoundSource(path, src.kind, objs, role, "given with --klp-symbols", src))

    missing = [o for o in wanted if o not in covered]
    if release is None:
        if missing and release_error is not None:
            raise release_error
        return None, _Search(found, errors)

    live: SymbolSource | None = None
    live_why = ""
    if running == release:
        live, live_why = _live_kallsyms(use_cache)

    if VMLINUX in missing:
        src_found, looked = _vmlinux_source(headers_dir, release, running, live, live_why, use_cache)
        if src_found is not None:
            found.append(src_found)
        else:
            no_source[VMLINUX] = error(
                f"no symbols for vmlinux {release}: give --klp-symbols=PATH with a /proc/kallsyms "
                f"dump (as root), System.map or vmlinux of that kernel", code="no-symbol-source",
                notes=tuple(f"looked for {item}" for item in looked))
            errors.append(no_source[VMLINUX])

    modules = [o for o in missing if o != VMLINUX]
    if modules:
        files = installed_modules(release)
        builtin = builtin_modules(release)
        loaded = loaded_modules() if running == release else frozenset()
        for obj in modules:
            problems = _find_module(obj, release, files, builtin, loaded, live, running, use_cache, found)
            no_source.update((obj, p) for p in problems if p.code == "no-symbol-source")
            errors.extend(problems)

    return release, _Search(found, errors, no_source)


def _find_module(obj: str, release: str, files: dict[str, list[str]], builtin: frozenset[str],
                 loaded: frozenset[str], live: SymbolSource | None, running: str | None,
                 use_cache: bool, found: list[FoundSource]) -> list[Diagnostic]:
    """Add the sources for one module to `found`; return the errors (none when found)."""
    base = system_path(f"/lib/modules/{release}")
    if obj in builtin:
        return [error(f"{obj} is built into vmlinux in {release} (listed in {base}/modules.builtin): "
                      f"use vmlinux as its object", code="builtin-module")]
    paths = files.get(obj, [])
    live_table = live.table(obj) if live is not None and obj in loaded else None
    looked = [f"{base}/**/{obj}.ko{{,.xz,.zst,.gz}}" + (" (also spelled with '-')" if "_" in obj else "")]
    for path in paths:
        try:
            src = load_cached(path, SourceKind.MODULE, use_cache=use_cache)
        except KlpLdError as exc:
            looked.append(f"{path}: {exc.diagnostics[0].message}")
            continue
        if src.release is not None and src.release != release:
            return [error(f"belongs to kernel {src.release} (by its vermagic), but the headers build "
                          f"for {release}", obj=path, code="release-mismatch")]
        table = src.tables[0] if src.tables else None
        if table is None or table.objname != obj:
            named = table.objname if table is not None else "nothing"
            looked.append(f"{path}: its .modinfo names the module {named}, not {obj}")
            continue
        others = [p for p in paths if p != path]
        why = f"the module installed for {release}"
        if others:
            why += " (preferred over " + ", ".join(others) + ")"
        found.append(FoundSource(path, SourceKind.MODULE, (obj,), "primary", why, src))
        if live_table is not None and live is not None:
            found.append(FoundSource(live.path, SourceKind.KALLSYMS, (obj,), "cross-check",
                                     f"{obj} is loaded in the running kernel; its positions must agree",
                                     live))
        return []
    if live_table is not None and live is not None:
        found.append(FoundSource(live.path, SourceKind.KALLSYMS, (obj,), "primary",
                                 f"{obj} is loaded in the running kernel, but no .ko of it was found: "
                                 "only the already-loaded case can be checked", live))
        return []
    if running == release and live is not None:
        looked.append(f"{live.path}: {obj} is not loaded")
    return [error(f"no module file for {obj} in {release}: give --klp-symbols=PATH with its .ko, or "
                  f"check the object name", code="no-symbol-source",
                  notes=tuple(f"looked for {item}" for item in looked))]


def discover(headers_dir: str, objnames: Iterable[str] = (VMLINUX,), explicit: Sequence[str] = (),
             *, use_cache: bool = True) -> Discovery:
    """Find and parse the symbol sources for `objnames` of the headers' kernel release.

    Explicit sources (`--klp-symbols=PATH`) come first and win for every object they cover;
    the rest is searched in the order of how much each source can be trusted. Every object
    without a source is reported at once, each with the places that were looked at.
    """
    release, search = _search(headers_dir, list(objnames), explicit, use_cache)
    if search.errors:
        raise KlpLdError(*search.errors)
    return Discovery(release, headers_dir, tuple(search.found))


def discover_available(headers_dir: str, objnames: Iterable[str] = (VMLINUX,), explicit: Sequence[str] = (),
                       *, use_cache: bool = True
                       ) -> tuple[Discovery, dict[str, Diagnostic], list[Diagnostic]]:
    """Like `discover`, but returns what was found together with what was not, so that a link can
    go on with the objects that have sources and say exactly where it looked for the others.

    Returns (the sources found, objname -> why it has none, every other error).
    """
    release, search = _search(headers_dir, list(objnames), explicit, use_cache)
    others = [e for e in search.errors if e not in search.missing.values()]
    return Discovery(release, headers_dir, tuple(search.found)), dict(search.missing), others


def print_sources(headers_dir: str, objnames: Iterable[str] = (VMLINUX,),
                  explicit: Sequence[str] = (), *, use_cache: bool = True) -> list[str]:
    """Lines for `--klp-print-sources`: what would be used and why, and what is missing and where
    it was looked for. Never raises: printing the trouble is its purpose."""
    try:
        release, search = _search(headers_dir, list(objnames), explicit, use_cache)
    except KlpLdError as exc:
        return [line for d in exc.diagnostics for line in d.render().splitlines()]
    lines = Discovery(release, headers_dir, tuple(search.found)).report()
    lines.extend(line for d in search.errors for line in d.render().splitlines())
    return lines
