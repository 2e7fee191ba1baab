"""Run the real linker on rewritten inputs, into temporary outputs, under the user's names.

`ld_command` is the one place that computes what ld will really run: the argument vector and the
response files to write, returned as data and written once. The command keeps every flag and the
argument order; only the rewritten arguments change (renamed inputs, the temporary output, side
outputs). A top-level `@file` whose expansion holds a rewritten argument is replaced by a new one
holding that whole expansion, so the command line stays as short as kbuild made it and the user's
response files are never written.

ld names its inputs and output in messages, `-Map` files and dependency files the way it was given
them: the temporary copies and the temporary output. `Renamer` turns those names back into the
user's, for ld's stdout and stderr as they stream and for the side outputs before they are
committed.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from klp_ld.cmdline import (
    LIVEPATCH_MARKERS,
    LinkCommand,
    find_library,
    mentions_livepatch,
    quote_response_arg,
)
from klp_ld.diag import Diagnostic, KlpLdError, error, fail
from klp_ld.realld import ACTIVE_MARKER


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


def write_response_files(command: LdCommand) -> None:
    for path, text in command.response_files:
        try:
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(text)
        except OSError as exc:
            raise fail(f"cannot write: {exc.strerror or exc}", obj=path) from None


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


def run_ld(path: str, argv0: str, command: LdCommand, cwd: str, renamer: Renamer | None = None) -> int:
    """Run ld; its messages reach the user with temporary names turned back into theirs.

    Whatever ends this function early (a signal turned into an exception, Ctrl-C) kills and reaps
    ld first: a linker that outlives klp-ld would keep writing into files being removed.
    """
    env = dict(os.environ)
    env[ACTIVE_MARKER] = "1"
    renamer = renamer or Renamer({})
    try:
        proc = subprocess.Popen([argv0, *command.argv], executable=path, cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise fail(f"cannot run {path}: {exc.strerror or exc}") from None
    try:
        _relay(proc, renamer)
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _relay(proc: subprocess.Popen[bytes], renamer: Renamer) -> None:
    """Copy ld's stdout and stderr to ours as they come, a whole line at a time (a name is never
    split between two reads)."""
    sinks: dict[int, tuple[BinaryIO | None, bytearray]] = {}
    with selectors.DefaultSelector() as selector:
        for source, sink in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
            if source is not None:
                fd = source.fileno()
                selector.register(fd, selectors.EVENT_READ)
                sinks[fd] = (getattr(sink, "buffer", None), bytearray())
        while sinks:
            for key, _ in selector.select():
                fd = int(key.fd)
                sink, pending = sinks[fd]
                chunk = os.read(fd, 65536)
                if chunk:
                    pending += chunk
                    cut = pending.rfind(b"\n") + 1
                    if cut:
                        sink = _emit(sink, renamer.apply(bytes(pending[:cut])))
                        del pending[:cut]
                    sinks[fd] = (sink, pending)
                    continue
                _emit(sink, renamer.apply(bytes(pending)))
                selector.unregister(fd)
                del sinks[fd]


def _emit(sink: BinaryIO | None, data: bytes) -> BinaryIO | None:
    """Write to our stream; a closed one (`klp-ld ... | head`) is dropped, ld still drained."""
    if sink is None or not data:
        return sink
    try:
        sink.write(data)
        sink.flush()
    except (OSError, ValueError):
        return None
    return sink


# ---------------------------------------------------------------------------------------------
# Libraries: `-l` archives are searched by ld, not given as inputs


def _annotated(data: bytes, name: str) -> bool:
    """Whether an object carries annotations klp-ld would have acted on (one it cannot read at all
    counts: klp-ld cannot tell that it does not)."""
    if not any(m in data for m in LIVEPATCH_MARKERS):
        return False
    from klp_ld.annotations import harvest
    from klp_ld.elf.read import read_elf

    try:
        found = harvest(read_elf(data, name))
    except KlpLdError:
        return True
    return bool(found.annotations) or bool(found.problems)


def annotated_libraries(cmd: LinkCommand) -> list[Diagnostic]:
    """`-l` libraries whose members carry livepatch annotations.

    Archives named as inputs have their members renamed like any object (prepare_inputs); a
    library ld finds by searching is not an input klp-ld can replace, and ld would pull its
    members in unrenamed, so that their annotations merge. Such a link is refused, naming the member.
    """
    from klp_ld.archive import is_archive_file, read_archive_file

    out: list[Diagnostic] = []
    for lib in cmd.libraries:
        path = find_library(lib.path, cmd.library_dirs, cmd.cwd)
        display = f"-l{lib.path}"
        if path is None or not is_archive_file(path, display) or not mentions_livepatch(path):
            continue
        archive = read_archive_file(path, os.path.relpath(path, cmd.cwd))
        bad = [m.display for m in archive.members if m.is_elf and _annotated(m.data, m.display)]
        if bad:
            out.append(error(f"library member {bad[0]} carries livepatch annotations: klp-ld renames "
                             "references in the objects and archives given as inputs, not in libraries "
                             "ld searches for, and ld would merge them; give the archive itself as an input",
                             obj=display, code="library-member",
                             notes=tuple(f"also {name}" for name in bad[1:4])))
    return out
