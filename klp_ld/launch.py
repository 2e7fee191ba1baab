"""The entry point kbuild calls: classify cheaply, and hand anything that is not ours to ld.

Only `os` and `sys` are imported before the decision. A pass-through replaces this process with
the real linker (`execv`), so ld's output, messages and exit status reach kbuild unchanged.

The `klp-ld` command (wrappers/klp-ld, installed as is) starts Python with `-I -S`; site-packages,
pyelftools and capstone are loaded only once there is livepatch work. KLP_LD_TRACE_MODULES=FILE
writes the modules loaded when klp-ld hands a command to ld, one per line, so tests can check
that the pass-through path stays that small.
"""

from __future__ import annotations

import os
import sys

from klp_ld import cmdline, realld

TRACE_MODULES = "KLP_LD_TRACE_MODULES"


def _full_python() -> None:
    """The wrapper starts Python without `site` for speed; real work needs capstone and pyelftools.

    `site.main()` would also run every `.pth` file of the environment (an editable install's
    import hook, certifi's...), some 20 ms per link that klp-ld does not need. So the
    site-packages directories go on the path as they are, and only when that does not reach
    both libraries (a `.pth`-only install, a venv that includes the system's packages) does
    `site.main()` run after all.
    """
    if not sys.flags.no_site:
        return
    import site
    from importlib.util import find_spec

    dirs = site.getsitepackages() + ([] if sys.flags.no_user_site else [site.getusersitepackages()])
    sys.path.extend(d for d in dirs if d not in sys.path and os.path.isdir(d))
    if find_spec("capstone") is None or find_spec("elftools") is None:
        site.main()


def _trace_modules() -> None:
    path = os.environ.get(TRACE_MODULES)
    if path:
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write("".join(f"{name}\n" for name in sorted(sys.modules)))
        except OSError as exc:
            sys.stderr.write(f"klp-ld: warning: {TRACE_MODULES}: {exc.strerror or exc}\n")


def _complain(message: str) -> int:
    sys.stderr.write(f"klp-ld: error: {message}\n")
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    invoked_as = os.path.basename(argv[0]) if argv else "klp-ld"
    args = argv[1:]
    if args and args[0] == "check":
        _full_python()
        from klp_ld.cli import check_main

        return check_main(args[1:])
    if os.environ.get(realld.ACTIVE_MARKER):
        return _complain("the real linker resolved to klp-ld itself; set --klp-real-ld=PATH or KLP_LD_REAL")
    try:
        cwd = os.getcwd()
    except OSError as exc:
        return _complain(f"cannot read the working directory: {exc.strerror or exc}")
    try:
        cmd = cmdline.parse(args, os.environ, cwd, invoked_as)
    except cmdline.UsageError as exc:
        return _complain(str(exc))
    opts = cmd.options
    special = opts.help or opts.version or opts.print_include_dir or opts.print_sources
    kind = cmdline.PROBE if special else cmdline.classify(cmd)
    cmd = cmd.with_kind(kind)
    if kind in (cmdline.PROBE, cmdline.PASSTHROUGH) and not (special or opts.dry_run):
        try:
            own = realld.own_paths(sys.argv[0])
            path, argv0 = realld.find_real_ld(opts.real_ld, invoked_as, os.environ, own)
        except realld.RealLdError as exc:
            return _complain(str(exc))
        _trace_modules()
        failed = realld.exec_real_ld(path, [argv0, *cmd.ld_argv])
        return _complain(f"cannot run {path}: {failed.strerror}")
    _full_python()
    from klp_ld.cli import run

    try:
        return run(cmd)
    except Exception as exc:  # a bug of ours: still one line, and the cleanup already ran
        if os.environ.get("KLP_LD_DEBUG"):
            raise
        return _complain(f"internal error: {type(exc).__name__}: {exc} (KLP_LD_DEBUG=1 shows where)")


if __name__ == "__main__":
    sys.exit(main())
