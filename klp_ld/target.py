"""The kernel a link builds for: its headers directory, its release, and what it exports.

Positions only mean something counted against the target kernel, and an unannotated reference
may only become a klp relocation when the target provably does not export it: an exported symbol
reached through a klp relocation loses its `__versions` entry and, if the "export list" was wrong,
calls into address 0. So every fact here comes from where kbuild itself takes it, and what cannot
be established is reported as unknown, never guessed.

kbuild gives LD three hints, and their reliability differs by kernel:
- `objtree` in the environment (exported by the top Makefile; relative to LD's working directory);
- the `-T .../module.lds` script of the final link (absolute since 6.13);
- the working directory, which was the headers directory for `M=` builds until 6.12. Since 6.13
  LD runs in the module's own directory, where `Module.symvers` is the *module's* export list,
  written by modpost: taking it for the kernel's turned `_printk` into a klp relocation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from klp_ld.diag import Diagnostic, KlpLdError, error, fail

_UTS_RELEASE = re.compile(r'^#define UTS_RELEASE "([^"\s]+)"', re.M)
_UTSRELEASE_H = os.path.join("include", "generated", "utsrelease.h")
_KERNEL_RELEASE = os.path.join("include", "config", "kernel.release")
# Where a module linker script sits below the headers directory, newest layout first.
_SCRIPT_HOMES = (("arch", "*", "module.lds"), ("scripts", "module.lds"))
KERNEL_SYMVERS = "Module.symvers"
# modpost's way of naming extra export lists (other out-of-tree modules' Module.symvers).
EXTRA_SYMBOLS_ENV = "KBUILD_EXTRA_SYMBOLS"


def release_file(headers_dir: str) -> str:
    """Where the release comes from: utsrelease.h when the headers have it, else kernel.release.

    Debian's 6.1 headers say `6.1.176` in include/config/kernel.release, while the kernel calls
    itself 6.1.0-50-amd64 (uname -r, /lib/modules, vermagic): UTS_RELEASE is what the kernel uses.
    """
    uts = os.path.join(headers_dir, _UTSRELEASE_H)
    return uts if os.path.isfile(uts) else os.path.join(headers_dir, _KERNEL_RELEASE)


def is_headers_dir(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in (_UTSRELEASE_H, _KERNEL_RELEASE))


def kernel_release(headers_dir: str) -> str:
    """The release the headers directory builds for: the only kernel whose symbols may be used."""
    path = release_file(headers_dir)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        raise fail(f"cannot tell the target kernel release: {exc.strerror or exc}", obj=path) from None
    if path.endswith(".h"):
        match = _UTS_RELEASE.search(text)
        if match is None:
            raise fail("has no #define UTS_RELEASE", obj=path)
        return match.group(1)
    release = text.strip()
    if not release or any(ch.isspace() for ch in release):
        raise fail(f"does not hold a kernel release: {release!r}", obj=path)
    return release


@dataclass(frozen=True, slots=True)
class Target:
    """The kernel this link builds for; both fields are None when nothing says which."""

    headers_dir: str | None
    release: str | None
    found_by: str

    def describe(self) -> str:
        if self.headers_dir is None:
            return "target kernel unknown (no kernel headers directory in sight)"
        return (f"target kernel release {self.release} (from {release_file(self.headers_dir)}, "
                f"found through {self.found_by})")


def _headers_of_script(script: str) -> str | None:
    """`<headers>/arch/x86/module.lds` or `<headers>/scripts/module.lds` -> `<headers>`."""
    parts = os.path.normpath(script).split(os.sep)
    for home in _SCRIPT_HOMES:
        tail = parts[-len(home):]
        if len(parts) > len(home) and all(h in ("*", p) for h, p in zip(home, tail, strict=True)):
            return os.sep.join(parts[:-len(home)]) or os.sep
    return None


def find_target(cwd: str, environ: Mapping[str, str], script: str | None = None) -> Target:
    """The headers directory and release, from every hint kbuild gives; hints that disagree are an error.

    Two hints naming different releases mean LD runs for one kernel with another's files, and
    whichever klp-ld picked, the positions or the exports would belong to the wrong kernel.
    """
    hints: list[tuple[str, str]] = []
    objtree = environ.get("objtree", "")
    if objtree:
        hints.append(("the objtree environment variable", os.path.join(cwd, objtree)))
    if script:
        headers = _headers_of_script(os.path.join(cwd, script))
        if headers is not None:
            hints.append((f"the linker script {script}", headers))
    hints.append(("the working directory", cwd))
    found: list[tuple[str, str, str]] = []
    for how, path in hints:
        if is_headers_dir(path):
            found.append((how, os.path.realpath(path), kernel_release(path)))
    if not found:
        return Target(None, None, "nothing")
    how, headers, release = found[0]
    for other_how, other_headers, other_release in found[1:]:
        if other_release != release:
            raise fail(f"{how} names kernel headers for {release} ({headers}), but {other_how} names "
                       f"headers for {other_release} ({other_headers}): which kernel is this link for?")
    return Target(headers, release, how)


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One Module.symvers in use, and why."""

    path: str
    role: str  # "kernel", "extra" (KBUILD_EXTRA_SYMBOLS) or "given" (--klp-symvers)


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """Which export lists to read for this target, or why the kernel's own is unknown.

    `unknown` is set when no list of the *kernel's* exports is at hand: deciding that a
    reference is not exported is then impossible, and the link must say so instead of guessing.
    """

    files: tuple[ExportFile, ...]
    unknown: str | None


def plan_exports(target: Target, given: Sequence[str], cwd: str,
                 environ: Mapping[str, str]) -> ExportPlan:
    """The kernel's Module.symvers from its headers, plus modpost's extras and the user's lists.

    A given list inside another release's headers directory is refused: its exports belong to
    another kernel. Whether a given list can stand in for a missing kernel list is decided once
    it is read (it must list vmlinux exports).
    """
    files: list[ExportFile] = []
    unknown: str | None = None
    if target.headers_dir is not None:
        kernel = os.path.join(target.headers_dir, KERNEL_SYMVERS)
        if os.path.isfile(kernel):
            files.append(ExportFile(kernel, "kernel"))
        else:
            unknown = f"{kernel} does not exist"
    else:
        unknown = ("no kernel headers directory was found (no objtree in the environment, no "
                   "module.lds script, no include/generated/utsrelease.h in the working directory)")
    for path in environ.get(EXTRA_SYMBOLS_ENV, "").split():
        files.append(ExportFile(os.path.join(cwd, path), "extra"))
    for path in given:
        full = os.path.join(cwd, path)
        home = os.path.dirname(os.path.realpath(full))
        if target.release is not None and is_headers_dir(home):
            theirs = kernel_release(home)
            if theirs != target.release:
                raise fail(f"belongs to kernel {theirs} (it sits in that kernel's headers), but this "
                           f"link builds for {target.release}", obj=path)
        files.append(ExportFile(full, "given"))
    return ExportPlan(tuple(files), unknown)


def unknown_exports_error(why: str, names: Sequence[str], obj: str | None) -> Diagnostic:
    """One error for every reference whose fate depends on an export list that is not at hand."""
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return error(f"cannot tell whether the target kernel exports {shown}: {why}; klp-ld does "
                 "not guess, because a klp relocation to an exported symbol loses its version check "
                 "and a wrong guess binds to address 0", code="exports-unknown", obj=obj,
                 notes=("give the kernel's export list with --klp-symvers=PATH (its Module.symvers), "
                        "or annotate each reference",))


def check_kernel_exports(path: str, vmlinux_exports: int, release: str | None) -> None:
    """An export list without a single vmlinux export is no kernel's: refuse to decide with it."""
    if vmlinux_exports == 0:
        raise KlpLdError(error(
            f"lists no vmlinux exports, so it is not the export list of kernel {release or '(unknown)'}"
            " (a module's own Module.symvers, written by modpost, looks like this)",
            code="exports-empty", obj=path))
