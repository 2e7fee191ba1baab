"""What klp-ld decided and why: one line per decision for people, one JSON record for tools.

The JSON record (schema "klp-ld-report/1", one object per line, one line per invocation) is
appended under an exclusive lock with a single write, so concurrent links under `make -j` never
interleave. Field names are documented in README.md ("Reports").
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from klp_ld.annotations import Annotation
from klp_ld.diag import Diagnostic, printable
from klp_ld.rename import Rename

SCHEMA = "klp-ld-report/1"


def signed(value: int) -> str:
    """Addends as ld prints them in objdump -r: `-4`, `+0x10`; nothing for zero."""
    if value == 0:
        return ""
    sign = "-" if value < 0 else "+"
    magnitude = abs(value)
    return f"{sign}{magnitude}" if magnitude < 10 else f"{sign}{magnitude:#x}"


@dataclass(frozen=True, slots=True)
class SiteDecision:
    """One relocation site and what klp-ld does with it."""

    obj: str
    section: str
    offset: int
    reloc: str  # the type, as readelf names it
    symbol: str
    addend: int
    target: str
    reason: str

    def line(self) -> str:
        return (f"{self.obj}: {self.section}+{self.offset:#x} {self.reloc} "
                f"{self.symbol}{signed(self.addend)} -> {self.target} ({self.reason})")

    def as_json(self) -> dict[str, Any]:
        return {"obj": self.obj, "section": self.section, "offset": self.offset,
                "type": self.reloc, "symbol": self.symbol, "addend": self.addend,
                "target": self.target, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class SiteCheckRecord:
    """The outcome of one instruction-level site check, for the report."""

    obj: str
    section: str
    offset: int
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"obj": self.obj, "section": self.section, "offset": self.offset, "ok": self.ok,
                "detail": self.detail}


@dataclass(slots=True)
class Report:
    """Everything one invocation did; the pipeline fills it, the CLI prints it."""

    kind: str
    cwd: str
    argv: list[str]
    output: str | None
    dry_run: bool = False
    # whether anybody reads the per-site lines (a dry run, --klp-verbose, --klp-report): 10,000
    # sites cost a tenth of a second to describe, for nobody otherwise
    detailed: bool = True
    sources: list[str] = field(default_factory=list)
    annotations: list[tuple[str, Annotation]] = field(default_factory=list)
    renames: list[Rename] = field(default_factory=list)
    sites: list[SiteDecision] = field(default_factory=list)
    ld_command: list[str] = field(default_factory=list)
    ld_status: int | None = None
    removed_sections: list[str] = field(default_factory=list)
    checks: list[SiteCheckRecord] = field(default_factory=list)
    post_link: list[str] = field(default_factory=list)  # what kbuild does to the module next
    diagnostics: list[Diagnostic] = field(default_factory=list)
    status: str = "ok"

    def lines(self) -> list[str]:
        """The human plan: grouped by object, one decision a line."""
        out = [f"klp-ld: {self.kind} link" + (f" -> {self.output}" if self.output else "")]
        out.extend(f"klp-ld: symbols: {source}" for source in self.sources)
        objects = list(dict.fromkeys([obj for obj, _ in self.annotations] + [r.obj for r in self.renames]
                                     + [s.obj for s in self.sites]))
        for obj in objects:
            for o, ann in self.annotations:
                if o == obj:
                    where = ann.section if ann.section == ".symtab" else f"{ann.section}+{ann.offset:#x}"
                    out.append(f"{obj}: {ann.dialect} annotation at {where}: {ann.symbol} means "
                               f"{ann.identity.sym_obj} position {ann.identity.sympos}")
            out.extend(f"{obj}: rename {r.old} -> {r.new} ({r.reason})" for r in self.renames if r.obj == obj)
            out.extend(s.line() for s in self.sites if s.obj == obj)
        if self.ld_command:
            verb = "would run" if self.dry_run else "ran"
            out.append(f"klp-ld: {verb}: {' '.join(_shell_quote(a) for a in self.ld_command)}")
        out.extend(f"klp-ld: removed section {name}" for name in self.removed_sections)
        bad = [c for c in self.checks if not c.ok]
        if self.checks:
            out.append(f"klp-ld: validated {len(self.checks)} site(s), {len(bad)} problem(s)")
        out.extend(f"klp-ld: after the link: {line}" for line in self.post_link)
        # names come from the objects: escaped as in diagnostics, one decision stays one line
        return [printable(line) for line in out]

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "cwd": self.cwd,
            "argv": self.argv,
            "output": self.output,
            "dry_run": self.dry_run,
            "status": self.status,
            "sources": self.sources,
            "annotations": [{"obj": o, "symbol": a.symbol, "dialect": a.dialect, "section": a.section,
                             "offset": a.offset, "objname": a.identity.sym_obj,
                             "rela_objname": a.identity.rela_obj, "name": a.identity.name,
                             "sympos": a.identity.sympos} for o, a in self.annotations],
            "renames": [{"obj": r.obj, "old": r.old, "new": r.new, "reason": r.reason} for r in self.renames],
            "sites": [s.as_json() for s in self.sites],
            "ld_command": self.ld_command,
            "ld_status": self.ld_status,
            "removed_sections": self.removed_sections,
            "checks": [c.as_json() for c in self.checks],
            "post_link": self.post_link,
            "diagnostics": [d.as_json() for d in self.diagnostics],
        }


def _shell_quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "@%+=:,./-_" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


def append_json(path: str, report: Report) -> None:
    """Append one line to `path`; a lock and a single write keep parallel links apart."""
    line = (json.dumps(report.as_json(), sort_keys=True) + "\n").encode()
    # O_NONBLOCK: a FIFO put there after klp-ld checked the path fails at once instead of blocking
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        os.close(fd)
