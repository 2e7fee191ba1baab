"""Harvest livepatch annotations from one object, before `ld -r` merges anything.

Three dialects say which kernel symbol an undefined reference means:

- klp-convert's `KLP_MODULE_RELOC(obj)` + `KLP_SYMPOS(sym, pos)`: an array of packed
  `struct klp_module_reloc { void *sym; u32 sympos; }` (12 bytes) in `.klp.module_relocs.<obj>`.
  The symbol is named only by the 64-bit absolute relocation on `sym` (R_X86_64_64), and entries
  are not dense once objects are concatenated (each input section is 8-aligned), so records are
  found through their relocations, never by stride.
- SUSE's `KLP_RELOC_SYMBOL[_POS](lp_obj, sym_obj, sym[, pos])`: an asm label
  `.klp.sym.rela.<lp_obj>.<sym_obj>.<sym>.<pos>` (or `,<pos>`) on the extern declaration.
- A raw `.klp.sym.<obj>.<sym>,<pos>` reference written in the source.

Annotations are per object: the same name may mean another position in another object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from klp_ld.arch import arch_of
from klp_ld.diag import Diagnostic, error
from klp_ld.elf.consts import SHT_NOBITS, STB_WEAK
from klp_ld.elf.layout import LSB
from klp_ld.elf.model import ElfObject, Symbol
from klp_ld.names import MODULE_RELOCS, Identity, identity_problems, parse_identity

RECORD_SIZE = LSB.klp_module_reloc.size  # the same in either byte order
KLP_CONVERT = "klp-convert"
SUSE = "suse"
RAW = "raw"


@dataclass(frozen=True, slots=True)
class Annotation:
    """One harvested record: this object's undefined `symbol` means `identity`."""

    symbol: str
    identity: Identity
    dialect: str
    section: str
    offset: int
    # The symbol is already the weak identity klp-ld's partial link makes: decided and checked there.
    decided: bool = False


@dataclass(frozen=True, slots=True)
class Harvest:
    """Everything one object says about its references; `problems` are errors to report."""

    obj: str
    annotations: tuple[Annotation, ...]
    problems: tuple[Diagnostic, ...]


def harvest(obj: ElfObject) -> Harvest:
    """Read every annotation in `obj` and check it against the kernel's rules."""
    found: list[Annotation] = []
    problems: list[Diagnostic] = []
    _harvest_module_relocs(obj, found, problems)
    _harvest_named(obj, found, problems)
    problems.extend(_check_identities(obj.path, found))
    conflicts, found = _resolve_conflicts(obj.path, found)
    problems.extend(conflicts)
    return Harvest(obj.path, tuple(found), tuple(problems))


def _harvest_module_relocs(obj: ElfObject, found: list[Annotation], problems: list[Diagnostic]) -> None:
    arch = arch_of(obj)
    record = obj.layout.klp_module_reloc
    for sec in obj.sections_named(MODULE_RELOCS):
        if sec.is_rela:
            continue
        objname = sec.name[len(MODULE_RELOCS):]
        rsec = obj.rela_for(sec)
        relocs = sorted(rsec.relocs, key=lambda r: r.offset) if rsec is not None else []
        where: dict[str, Any] = {"obj": obj.path, "section": sec.name}
        if sec.type == SHT_NOBITS and sec.size:
            problems.append(error("annotation section has no contents (SHT_NOBITS), so no positions",
                                  code="annotation-nobits", **where))
            continue
        if not relocs:
            if sec.size:
                problems.append(error("annotation section has records but no relocations naming their "
                                      "symbols", code="annotation-no-reloc", **where))
            continue
        covered = bytearray(sec.size)
        last_end = -1
        for rela in relocs:
            sym = rela.symbol
            at: dict[str, Any] = {**where, "offset": rela.offset}
            label = sym.name if sym is not None else None
            if rela.offset < last_end:
                problems.append(error("two relocations in one 12-byte annotation record",
                                      code="annotation-overlap", symbol=label, **at))
                continue
            if rela.type != arch.abs64:
                problems.append(error(f"annotation record relocation has type {arch.reloc_name(rela.type)}; "
                                      f"expected {arch.reloc_name(arch.abs64)} on the 'sym' field",
                                      code="annotation-bad-reloc", symbol=label, **at))
                continue
            if rela.offset + RECORD_SIZE > sec.size:
                problems.append(error(f"annotation record at {rela.offset:#x} is cut off: the section has "
                                      f"{sec.size:#x} bytes, a record needs {RECORD_SIZE}",
                                      code="annotation-truncated", symbol=label, **at))
                continue
            last_end = rela.offset + RECORD_SIZE
            covered[rela.offset:last_end] = _COVERED
            if sym is None or not sym.is_undefined or not sym.name:
                what = "nothing" if sym is None else (sym.display_name() or "a section")
                problems.append(error(f"annotation names {what}, which is defined in this object; "
                                      "KLP_SYMPOS must name an undefined (kernel) symbol",
                                      code="annotation-defined-target", symbol=label, **at))
                continue
            if rela.addend != 0:
                problems.append(error(f"annotation relocation has addend {rela.addend}; KLP_SYMPOS "
                                      "takes the symbol itself", code="annotation-bad-reloc",
                                      symbol=label, **at))
                continue
            _sym, sympos = record.unpack_from(sec.data, rela.offset)
            name = sym.name
            already = parse_identity(name)
            if already is not None:
                # The object was converted before (an `ld -r` output): the name says it all.
                found.append(Annotation(name, already, KLP_CONVERT, sec.name, rela.offset,
                                        sym.bind == STB_WEAK))
                continue
            found.append(Annotation(name, Identity(objname, objname, name, sympos), KLP_CONVERT,
                                    sec.name, rela.offset))
        stray = _first_uncovered(sec.data, covered)
        if stray is not None:
            problems.append(error("annotation data without a relocation naming its symbol (a record "
                                  "whose 'sym' is not a relocated pointer)", code="annotation-no-reloc",
                                  offset=stray // 4 * 4, **where))


_COVERED = b"\xff" * RECORD_SIZE


def _first_uncovered(data: bytes, covered: bytearray) -> int | None:
    """The first nonzero byte of `data` outside every record (`covered` is 0xff inside one)."""
    if not data:
        return None
    loose = int.from_bytes(data, "little") & ~int.from_bytes(covered, "little")
    return ((loose & -loose).bit_length() - 1) // 8 if loose else None


def _harvest_named(obj: ElfObject, found: list[Annotation], problems: list[Diagnostic]) -> None:
    for sym in _undefined(obj):
        identity = parse_identity(sym.name)
        if identity is None:
            if sym.name.startswith(".klp."):
                problems.append(error("undefined symbol looks like a livepatch identity but does not "
                                      "parse as .klp.sym.<obj>.<name>,<pos> or "
                                      ".klp.sym.rela.<lp_obj>.<sym_obj>.<name>.<pos>",
                                      code="identity-malformed", obj=obj.path, symbol=sym.name))
            continue
        dialect = SUSE if sym.name.startswith(".klp.sym.rela.") else RAW
        decided = sym.bind == STB_WEAK and sym.name == identity.link_name
        found.append(Annotation(sym.name, identity, dialect, ".symtab", 0, decided))


def _undefined(obj: ElfObject) -> list[Symbol]:
    return [s for s in obj.symbols[1:] if s.is_undefined and s.name]


def _check_identities(path: str, found: list[Annotation]) -> list[Diagnostic]:
    problems: list[Diagnostic] = []
    seen: set[tuple[str, Identity]] = set()
    for ann in found:
        if ann.decided or (ann.symbol, ann.identity) in seen:
            continue  # decided: checked by the partial link that named it
        seen.add((ann.symbol, ann.identity))
        ident = ann.identity
        where: dict[str, Any] = {"obj": path, "section": ann.section, "symbol": ann.symbol}
        if ann.section != ".symtab":
            where["offset"] = ann.offset
        problems.extend(error(message, code=code, **where) for code, message in identity_problems(ident))
    return problems


def _resolve_conflicts(path: str, found: list[Annotation]) -> tuple[list[Diagnostic], list[Annotation]]:
    """One object may name a symbol at one position only; report any other wish."""
    by_symbol: dict[str, list[Annotation]] = {}
    for ann in found:
        by_symbol.setdefault(ann.symbol, []).append(ann)
    problems = []
    kept = []
    for symbol, anns in by_symbol.items():
        identities = [anns[0].identity] if len(anns) == 1 else list(dict.fromkeys(a.identity for a in anns))
        if len(identities) > 1:
            wishes = ", ".join(f"{i.sym_obj} position {i.sympos}" for i in identities)
            first = anns[0]
            problems.append(error(f"{symbol} is annotated more than once with different meanings "
                                  f"({wishes}); one object can mean only one of them. Move the other "
                                  "use into its own object file", code="annotation-conflict",
                                  obj=path, section=first.section, symbol=symbol,
                                  notes=tuple(f"{a.section}+{a.offset:#x}: {a.identity.sym_obj} "
                                              f"position {a.identity.sympos}" for a in anns)))
            continue
        kept.append(anns[0])
    return problems, kept
