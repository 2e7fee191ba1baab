"""What the real linker runs on rewritten inputs, into temporary outputs, and how its words read.

`ld_command` is the one place that computes what ld will really run: the argument vector and the
response files to write, returned as data and written once. The command keeps every flag and the
argument order; only the rewritten arguments change (renamed inputs, the temporary output, side
outputs). A top-level `@file` whose expansion holds a rewritten argument is replaced by a new one
holding that whole expansion, so the command line stays as short as kbuild made it and the user's
response files are never written.

ld names its inputs and output in messages, `-Map` files and dependency files the way it was given
them: the temporary copies and the temporary output. `Renamer` turns those names back into the
user's, for ld's stdout and stderr as they stream and for the side outputs before they are
committed. Everything here is computed; `klp_ld.runld` writes the files and runs ld.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from klp_ld.cmdline import LinkCommand, quote_response_arg


@dataclass(frozen=True, slots=True)
class LdCommand:
    """What the real ld runs: `argv` after argv[0], and the response files it reads."""

    argv: tuple[str, ...]
    response_files: tuple[tuple[str, str], ...] = ()  # (path, text), written before ld starts
    names: Mapping[str, str] = field(default_factory=dict)  # temporary path -> the user's name


def ld_command(cmd: LinkCommand, replace: Mapping[int, str], tmpdir: str, *, prepend: Sequence[str] = (),
               names: Mapping[str, str] | None = None) -> LdCommand:
    """The real ld's command: `replace` maps indices into `cmd.expanded` to whole new arguments.

    `prepend` goes first (an `-o` for a command that has none: first, because ld ignores
    everything after `--`). Linear in the number of arguments.
    """
    members: dict[int, list[int]] = {}
    for index, arg in enumerate(cmd.expanded):
        members.setdefault(arg.origin, []).append(index)
    argv = list(prepend)
    files: list[tuple[str, str]] = []
    for top, original in enumerate(cmd.ld_argv):
        mine = members.get(top, [])
        if not any(i in replace for i in mine):
            argv.append(original)
        elif len(mine) == 1 and cmd.expanded[mine[0]].value == original and not original.startswith("@"):
            argv.append(replace[mine[0]])
        else:
            path = os.path.join(tmpdir, f"args-{top}.rsp")
            text = "".join(quote_response_arg(replace.get(i, cmd.expanded[i].value)) + "\n" for i in mine)
            files.append((path, text))
            argv.append("@" + path)
    return LdCommand(tuple(argv), tuple(files), dict(names or {}))


class Renamer:
    """Replace temporary paths by the user's names in text ld wrote.

    Every temporary path starts with one of a few anchors (klp-ld's temporary directory, the
    temporary output); the anchors are found with one regular expression and the path at each one
    is looked up by length, so thousands of renamed inputs cost no more than a few.
    """

    def __init__(self, names: Mapping[str, str], anchors: Iterable[str] = ()) -> None:
        self._names = {os.fsencode(k): os.fsencode(v) for k, v in names.items() if k}
        heads = {os.fsencode(a) for a in anchors if a}
        heads |= {k for k in self._names if not any(k.startswith(h) for h in heads)}
        self._lengths = sorted({len(k) for k in self._names}, reverse=True)
        ordered = sorted(heads, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(h) for h in ordered)) if ordered else None

    def __bool__(self) -> bool:
        return bool(self._names)

    def apply(self, data: bytes) -> bytes:
        if self._pattern is None:
            return data
        out: list[bytes] = []
        at = 0
        for match in self._pattern.finditer(data):
            start = match.start()
            if start < at:
                continue
            for length in self._lengths:
                replacement = self._names.get(data[start:start + length])
                if replacement is not None:
                    out.append(data[at:start])
                    out.append(replacement)
                    at = start + length
                    break
        out.append(data[at:])
        return b"".join(out)

    def text(self, value: str) -> str:
        return os.fsdecode(self.apply(os.fsencode(value)))


def display_argv(command: LdCommand, renamer: Renamer) -> list[str]:
    """The command as the user should read it: the temporary output under its final name."""
    return [renamer.text(a) for a in command.argv]


