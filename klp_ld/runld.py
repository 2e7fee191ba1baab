"""Run the real linker: the response files `link.ld_command` computed, the child process, and its
messages relayed as they come with the user's names in place of klp-ld's temporary ones.

The I/O edge of the link step; what runs is decided in `klp_ld.link`.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from typing import BinaryIO

from klp_ld.diag import fail
from klp_ld.link import LdCommand, Renamer
from klp_ld.realld import ACTIVE_MARKER


def write_response_files(command: LdCommand) -> None:
    for path, text in command.response_files:
        try:
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(text)
        except OSError as exc:
            raise fail(f"cannot write: {exc.strerror or exc}", obj=path) from None


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
