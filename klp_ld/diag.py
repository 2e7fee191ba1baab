"""Diagnostics in the shape GNU ld and lld use: `klp-ld: error: a.o: .text.f+0x1b: sym: message`.

Every failure a user can cause becomes a `Diagnostic`; stages raise `KlpLdError` carrying all of
them at once, so one run reports every problem instead of the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROG = "klp-ld"

# Names in messages come from the objects: a control character in one (a corrupt or hostile file)
# must neither break the one-line format nor reach the terminal as an escape sequence.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def printable(text: str) -> str:
    """`text` with C0/C1 control characters (newline and escape included) shown as `\\xNN`."""
    return text.translate(_CONTROL)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding, located as precisely as the stage that made it can."""

    severity: str
    message: str
    obj: str | None = None
    section: str | None = None
    offset: int | None = None
    symbol: str | None = None
    code: str = ""
    notes: tuple[str, ...] = field(default=())

    def location(self) -> str:
        parts = []
        if self.obj:
            parts.append(self.obj)
        if self.section is not None:
            parts.append(self.section if self.offset is None else f"{self.section}+{self.offset:#x}")
        if self.symbol:
            parts.append(self.symbol)
        return ": ".join(parts)

    def render(self) -> str:
        loc = self.location()
        head = f"{PROG}: {self.severity}: " + (f"{loc}: " if loc else "") + self.message
        return "\n".join([printable(head), *(f">>> {printable(note)}" for note in self.notes)])

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"severity": self.severity, "code": self.code, "message": self.message}
        for key in ("obj", "section", "offset", "symbol"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def error(message: str, *, code: str = "", notes: tuple[str, ...] = (), **where: Any) -> Diagnostic:
    """An error at `where` (obj, section, offset, symbol; each optional)."""
    return Diagnostic("error", message, code=code, notes=notes, **where)


def warning(message: str, *, code: str = "", notes: tuple[str, ...] = (), **where: Any) -> Diagnostic:
    return Diagnostic("warning", message, code=code, notes=notes, **where)


def note(message: str, **where: Any) -> Diagnostic:
    return Diagnostic("note", message, **where)


class KlpLdError(Exception):
    """Raised by a stage that cannot go on; carries every error it found."""

    def __init__(self, *diagnostics: Diagnostic) -> None:
        super().__init__("; ".join(d.render() for d in diagnostics))
        self.diagnostics = diagnostics


def fail(message: str, **where: Any) -> KlpLdError:
    """Shorthand for the common single-error case: `raise fail("bad thing", obj=path)`."""
    return KlpLdError(error(message, **where))
