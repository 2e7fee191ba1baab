"""What this machine says about kernels: the running release, its loaded modules, and the modules
installed for a release.

The search roots (`/proc`, `/boot`, `/lib/modules`, `/usr/lib/debug`) can be moved under a fake
tree for tests through the `KLP_LD_TEST_ROOT` environment variable only: an option would invite
users to point a build at the wrong kernel. Every system path klp-ld reads goes through
`system_path`, so that a test never sees the real machine.
"""

from __future__ import annotations

import os

from klp_ld.names import MODULE_SUFFIXES, module_name_from_file

TEST_ROOT_ENV = "KLP_LD_TEST_ROOT"


def _root() -> str:
    """Prefix for the system paths searched; empty except in tests."""
    return os.environ.get(TEST_ROOT_ENV, "").rstrip("/")


def system_path(path: str) -> str:
    """`path` (absolute) on this machine, or under the test root."""
    return _root() + path


def running_release() -> str | None:
    """`uname -r`, read from /proc so that tests can fake it along with the rest of /proc."""
    try:
        with open(system_path("/proc/sys/kernel/osrelease"), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None if _root() else os.uname().release


def loaded_modules() -> frozenset[str]:
    """Names of the modules loaded in the running kernel (first column of /proc/modules)."""
    try:
        with open(system_path("/proc/modules"), encoding="utf-8", errors="replace") as f:
            return frozenset(line.split(None, 1)[0] for line in f if line.strip())
    except OSError:
        return frozenset()


def is_live_kallsyms(path: str) -> bool:
    """Whether `path` is the running kernel's own /proc/kallsyms (by whatever name)."""
    try:
        return os.path.realpath(path) == os.path.realpath(system_path("/proc/kallsyms"))
    except OSError:
        return False


def installed_modules(release: str) -> dict[str, list[str]]:
    """objname -> module files of this release, the one modprobe would load first.

    modules.dep lists exactly the file depmod chose for each name; without it, a walk ranks
    `updates/` over `kernel/` over the rest, as depmod's default search order does.
    """
    base = system_path(f"/lib/modules/{release}")
    found: dict[str, list[str]] = {}
    dep = os.path.join(base, "modules.dep")
    try:
        with open(dep, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                rel = line.split(":", 1)[0].strip()
                if rel.endswith(MODULE_SUFFIXES):
                    path = rel if os.path.isabs(rel) else os.path.join(base, rel)
                    found.setdefault(module_name_from_file(rel), []).append(path)
        if found:
            return found
    except OSError:
        pass
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith(MODULE_SUFFIXES):
                found.setdefault(module_name_from_file(fn), []).append(os.path.join(dirpath, fn))

    def rank(path: str) -> tuple[int, str]:
        rel = os.path.relpath(path, base)
        return (0 if rel.startswith("updates/") else 1 if rel.startswith("kernel/") else 2, rel)

    for paths in found.values():
        paths.sort(key=rank)
    return found


def builtin_modules(release: str) -> frozenset[str]:
    """Modules built into vmlinux in this release (modules.builtin): their object is vmlinux."""
    try:
        with open(system_path(f"/lib/modules/{release}/modules.builtin"), encoding="utf-8",
                  errors="surrogateescape") as f:
            return frozenset(module_name_from_file(line.strip()) for line in f if line.strip())
    except OSError:
        return frozenset()
