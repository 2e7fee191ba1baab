"""What resolving `.klp.sym.<objname>.<name>,<sympos>` answers: the symbol the loader will bind,
or why it will not bind as written.

The answers carry final user wording (built in `klp_ld.ksyms.messages`), and each candidate can
write itself as the `KLP_SYMPOS()` line that selects it, because the fix for every problem is
a line to paste.
"""

from __future__ import annotations

from dataclasses import dataclass

from klp_ld.diag import Diagnostic, error


@dataclass(frozen=True, slots=True)
class Candidate:
    """One symbol the kernel would count for (objname, name).

    `position` is the kernel's count for vmlinux, and for a module that is already loaded when
    the patch arrives (core symbols only); `full_position` is the count for a module that loads
    after the patch (its whole `.symtab`). Either is None where that path does not see the
    symbol or the source cannot tell.
    """

    objname: str
    name: str
    position: int | None
    full_position: int | None
    address: int | None
    type: str
    source: str
    section: str | None = None
    core: bool = True
    file: str | None = None

    def where(self) -> str:
        """The symbol as an engineer recognises it: a kallsyms-like address, or section+offset."""
        if self.section is not None and self.address is not None:
            return f"{self.section}+{self.address:#x}"
        if self.address is not None:
            return f"{self.address:016x}"
        return "address unknown"

    def sympos_line(self) -> str:
        """A `KLP_SYMPOS()` initializer the author can paste, with what it selects as a comment.

        A module symbol the kernel only counts while the module is loading (init or
        non-allocated section) gets no initializer: no position reaches it in both load orders.
        """
        desc = f"{self.where()} {self.type}, {self.objname}"
        if self.file:
            desc += f", {self.file}"
        if self.position is None:
            return (f"no KLP_SYMPOS reaches this {self.name} once {self.objname} is loaded  /* {desc}; "
                    f"position {self.full_position} only while {self.objname} is still loading */")
        if self.full_position is not None and self.full_position != self.position:
            desc += f"; position {self.full_position} if {self.objname} loads after the patch"
        return f"KLP_SYMPOS({self.name}, {self.position})  /* {desc} */"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The symbol the kernel will bind for (objname, name, sympos), and any caveat to report."""

    candidate: Candidate
    sympos: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SymbolProblem:
    """Why (objname, name, sympos) would not bind as written; the texts are final user wording.

    `code` is one of: symbol-not-found, object-not-found, sympos-not-found, sympos-ambiguous,
    sympos-module-paths, sources-disagree, zero-address, unannotated-ambiguous.
    """

    code: str
    objname: str
    name: str
    sympos: int
    message: str
    notes: tuple[str, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    suggestions: tuple[str, ...] = ()

    def diagnostic(self, *, obj: str | None = None, section: str | None = None,
                   offset: int | None = None) -> Diagnostic:
        """The error as the caller prints it, located at the reference that asked for the symbol."""
        return error(self.message, code=self.code, obj=obj, section=section, offset=offset,
                     notes=self.notes)


Resolution = Resolved | SymbolProblem
