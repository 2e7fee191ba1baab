"""Run the real linker on rewritten inputs, into a temporary output.

The command keeps every flag and the argument order; only the paths of rewritten inputs and the
output change. A response file that named a rewritten input is written anew, so the command line
stays as short as kbuild made it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from klp_ld.cmdline import LinkCommand, quote_response_arg


def rewrite_argv(cmd: LinkCommand, replaced: Mapping[int, str], output: str, tmpdir: str) -> list[str]:
    """The real ld's argv: `replaced` maps indices into `cmd.expanded` to new input paths."""
    subst = dict(replaced)
    if cmd.output_at is not None:
        index, prefix = cmd.output_at
        subst[index] = prefix + output
    argv: list[str] = []
    for top, original in enumerate(cmd.ld_argv):
        members = [i for i, arg in enumerate(cmd.expanded) if arg.origin == top]
        expanded_self = len(members) == 1 and cmd.expanded[members[0]].value == original
        if expanded_self:
            argv.append(subst.get(members[0], original))
            continue
        if not any(i in subst for i in members):
            argv.append(original)
            continue
        path = os.path.join(tmpdir, f"args-{top}.rsp")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write("".join(quote_response_arg(subst.get(i, cmd.expanded[i].value)) + "\n" for i in members))
        argv.append("@" + path)
    return argv


def run_ld(path: str, argv0: str, argv: list[str], cwd: str) -> int:
    """Run ld with kbuild's stdout and stderr, so its messages reach the user unchanged."""
    env = dict(os.environ)
    env["KLP_LD_ACTIVE"] = "1"
    try:
        return subprocess.run([argv0, *argv], executable=path, cwd=cwd, env=env, check=False).returncode
    except OSError as exc:
        raise OSError(f"cannot run {path}: {exc.strerror}") from exc
