"""Find the real linker: the explicit setting, then `$CROSS_COMPILE` naming, then PATH.

klp-ld may itself be installed as `ld` (or linked as `ld.lld`), so every candidate that is klp-ld
is skipped, and an environment marker catches a loop that slips through anyway.
"""

from __future__ import annotations

import os

# Set in the real linker's environment; seeing it on entry means the "real" linker was klp-ld.
ACTIVE_MARKER = "KLP_LD_ACTIVE"
_LD_NAMES = ("ld", "ld.bfd", "ld.gold", "ld.lld")


class RealLdError(Exception):
    """No usable real linker; the message says what was searched."""


def own_paths(argv0: str) -> tuple[str, ...]:
    """The files that are klp-ld itself: how it was invoked, and the checkout's wrapper."""
    return (argv0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "wrappers", "klp-ld"))


def wanted_name(invoked_as: str) -> str:
    """Invoked as `ld.lld` (a symlink name) means the user wants lld; as `x86_64-linux-gnu-ld`, that."""
    base = os.path.basename(invoked_as)
    if base.endswith("klp-ld"):
        return "ld"
    if base in _LD_NAMES or base.endswith(("-ld", "-ld.bfd", "-ld.lld", "-ld.gold")):
        return base
    return "ld"


def is_klp_ld(path: str, own: frozenset[str]) -> bool:
    real = os.path.realpath(path)
    if real in own:
        return True
    try:
        with open(real, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"#!") and b"klp_ld" in head


def _search_path(name: str, environ: dict[str, str] | os._Environ[str], own: frozenset[str]) -> str | None:
    for directory in environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK) and not is_klp_ld(candidate, own):
            return candidate
    return None


def find_real_ld(explicit: str | None, invoked_as: str, environ: dict[str, str] | os._Environ[str],
                 own_paths: tuple[str, ...]) -> tuple[str, str]:
    """Return (path to execute, argv[0] to give it): ld names itself after argv[0] in messages."""
    own = frozenset(os.path.realpath(p) for p in own_paths if p)
    if explicit:
        path = explicit if os.sep in explicit else _search_path(explicit, environ, frozenset())
        if path is None or not os.access(path, os.X_OK):
            raise RealLdError(f"real linker '{explicit}' (--klp-real-ld / KLP_LD_REAL) is not an executable")
        if is_klp_ld(path, own):
            raise RealLdError(f"real linker '{explicit}' is klp-ld itself")
        return path, explicit
    name = wanted_name(invoked_as)
    tried = []
    cross = environ.get("CROSS_COMPILE", "")
    if cross and not name.startswith(cross):
        tried.append(cross + name)
    tried.append(name)
    for candidate in tried:
        found = _search_path(candidate, environ, own)
        if found:
            return found, candidate
    raise RealLdError(f"cannot find the real linker: no {' or '.join(tried)} on PATH other than klp-ld; "
                      "set --klp-real-ld=PATH or KLP_LD_REAL")


def exec_real_ld(path: str, argv: list[str]) -> OSError:
    """Replace this process with the real ld, as the caller would have run it; returns only the
    error when it cannot run.

    Python ignores SIGPIPE and SIGXFSZ from its start, and an exec keeps an ignored signal
    ignored: ld run by make has them at their defaults, so they go back to those. (`_signal`,
    already loaded, not `signal`: that one imports enum, 7 ms of a probe's time.)
    """
    _signal = __import__("_signal")  # loaded at start-up; its functions are signal's
    for signum in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(signum, _signal.SIG_DFL)
    os.environ[ACTIVE_MARKER] = "1"
    try:
        os.execv(path, argv)
    except OSError as exc:
        return exc
    raise AssertionError("execv returned")  # pragma: no cover


def gnu_ld_identity(path: str) -> tuple[str, str | None] | None:
    """(`2.40`, its default emulation) for GNU ld 2.40, from what `-V` says first; None for any
    other linker. The default emulation is the first one `-V` lists."""
    import subprocess

    try:
        done = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=30, check=False,
                              env={**os.environ, ACTIVE_MARKER: "1"})
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.splitlines()
    first = lines[0] if lines else ""
    if not first.startswith("GNU ld "):
        return None
    words = first.split()
    if not words or not words[-1][:1].isdigit():
        return None
    listed = [line.strip() for line in lines[1:] if line.startswith("   ") and line.strip()]
    return words[-1], (listed[0] if listed else None)
