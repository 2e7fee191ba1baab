"""Find the target kernel's symbol sources without being told, and cache what they say.

The target's headers directory (see `klp_ld.target`) names the kernel the module is built for.
Positions are only right when counted against that kernel, so
every source found here is for that release, each records why it was chosen (for `--dry-run`
and `--klp-print-sources`), and a source that belongs to another kernel is an error naming both
releases, never a silent fallback. When nothing is found, the error lists every place looked at
and why each did not do.

The search roots (`/proc`, `/boot`, `/lib/modules`, `/usr/lib/debug`) can be moved under a fake
tree for tests through the `KLP_LD_TEST_ROOT` environment variable only: an option would invite
users to point a build at the wrong kernel.

Parsed tables come through `klp_ld.symcache`, so a `make -j` of many modules parses a 100k-line
System.map once; a cached parse is used only for the very bytes it was made from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from klp_ld.diag import Diagnostic, KlpLdError, error, fail
from klp_ld.symbols import (
    VMLINUX,
    SourceKind,
    SymbolIndex,
    SymbolSource,
    normalize_objname,
)
from klp_ld.symcache import load_cached
from klp_ld.target import kernel_release, release_file

TEST_ROOT_ENV = "KLP_LD_TEST_ROOT"
_MODULE_EXTS = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
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


# ---------------------------------------------------------------------------------------------
# Environment


def _root() -> str:
    """Prefix for the system paths searched; empty except in tests."""
    return os.environ.get(TEST_ROOT_ENV, "").rstrip("/")


def _sys(path: str) -> str:
    return _root() + path


def running_release() -> str | None:
    """`uname -r`, read from /proc so that tests can fake it along with the rest of /proc."""
    try:
        with open(_sys("/proc/sys/kernel/osrelease"), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None if _root() else os.uname().release


def loaded_modules() -> frozenset[str]:
    """Names of the modules loaded in the running kernel (first column of /proc/modules)."""
    try:
        with open(_sys("/proc/modules"), encoding="utf-8", errors="replace") as f:
            return frozenset(line.split(None, 1)[0] for line in f if line.strip())
    except OSError:
        return frozenset()


# ---------------------------------------------------------------------------------------------
# Discovery


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


def _is_live_kallsyms(path: str) -> bool:
    try:
        return os.path.realpath(path) == os.path.realpath(_sys("/proc/kallsyms"))
    except OSError:
        return False


def _check_release(path: str, src: SymbolSource, release: str | None, running: str | None) -> None:
    """A source for another kernel would give positions of another kernel: refuse it, loudly."""
    if release is None:
        return
    if _is_live_kallsyms(path):
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
    path = _sys("/proc/kallsyms")
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
    kallsyms = _sys("/proc/kallsyms")
    if running != release:
        looked.append(f"{kallsyms}: the running kernel is {running or 'unknown'}, not {release}")
    elif live is None:
        looked.append(live_why)
    else:
        return FoundSource(kallsyms, SourceKind.KALLSYMS, (VMLINUX,), "primary",
                           f"the running kernel is {release} and its addresses are readable",
                           live), looked
    candidates: list[tuple[str, SourceKind | None, str]] = [
        (_sys(f"/boot/System.map-{release}"), SourceKind.SYSTEM_MAP, "the System.map installed for"),
        (_sys(f"/usr/lib/debug/boot/System.map-{release}"), SourceKind.SYSTEM_MAP,
         "the debug package's System.map for"),
        (os.path.join(headers_dir, "vmlinux"), SourceKind.VMLINUX, "the vmlinux in the headers of"),
        (_sys(f"/usr/lib/debug/boot/vmlinux-{release}"), SourceKind.VMLINUX,
         "the debug vmlinux for"),
        (_sys(f"/usr/lib/debug/lib/modules/{release}/vmlinux"), SourceKind.VMLINUX,
         "the debug vmlinux for"),
    ]
    for path, kind, why in candidates:
        src, failure = _try_file(path, kind, use_cache)
        if src is not None:
            return FoundSource(path, src.kind, (VMLINUX,), "primary", f"{why} {release}", src), looked
        looked.append(failure)
    return None, looked


def _module_files(release: str) -> dict[str, list[str]]:
    """objname -> module files of this release, the one modprobe would load first.

    modules.dep lists exactly the file depmod chose for each name; without it, a walk ranks
    `updates/` over `kernel/` over the rest, as depmod's default search order does.
    """
    base = _sys(f"/lib/modules/{release}")
    found: dict[str, list[str]] = {}
    dep = os.path.join(base, "modules.dep")
    try:
        with open(dep, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                rel = line.split(":", 1)[0].strip()
                if rel.endswith(_MODULE_EXTS):
                    path = rel if os.path.isabs(rel) else os.path.join(base, rel)
                    found.setdefault(_objname(rel), []).append(path)
        if found:
            return found
    except OSError:
        pass
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith(_MODULE_EXTS):
                found.setdefault(_objname(fn), []).append(os.path.join(dirpath, fn))

    def rank(path: str) -> tuple[int, str]:
        rel = os.path.relpath(path, base)
        return (0 if rel.startswith("updates/") else 1 if rel.startswith("kernel/") else 2, rel)

    for paths in found.values():
        paths.sort(key=rank)
    return found


def _objname(path: str) -> str:
    base = os.path.basename(path)
    for ext in sorted(_MODULE_EXTS, key=len, reverse=True):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return base.replace("-", "_")


def _builtin_modules(release: str) -> frozenset[str]:
    try:
        with open(_sys(f"/lib/modules/{release}/modules.builtin"), encoding="utf-8",
                  errors="surrogateescape") as f:
            return frozenset(_objname(line.strip()) for line in f if line.strip())
    except OSError:
        return frozenset()


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
        files = _module_files(release)
        builtin = _builtin_modules(release)
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
    base = _sys(f"/lib/modules/{release}")
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
